"""The manager's public URL: how connectors reach it, for the install commands the CLI and the API print.

`serve` and `quickstart` record the URL they run with in the data directory (`DATADIR/public-url`), and
the CLI commands that print install commands read it back, so `connector add` after `quickstart -port
18443` prints port 18443. Why a file in the data directory and not a row in the database: the data
directory is already what every command on this host shares (the sealing key lives there too, and
several managers on one PostgreSQL database share it), a file needs no schema migration, and it can be
read without opening a database. Precedence: -public-url, then CA_MANAGER_PUBLIC_URL, then the recorded
URL, then http://127.0.0.1:8443.

Imports nothing heavy: the CLI reads it before it knows which command runs.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from pathlib import Path

FILE_NAME = "public-url"
MAX_LENGTH = 2048


def path_in(datadir: Path) -> Path:
    return datadir / FILE_NAME


def recorded(datadir: Path) -> str | None:
    """The URL recorded by the last `serve` or `quickstart` on this data directory, if any."""
    try:
        text = path_in(datadir).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if text and len(text) <= MAX_LENGTH and "\n" not in text else None


def record(datadir: Path, url: str) -> None:
    """Write whole under a temporary name, then rename: a reader sees the old URL or the new, never half."""
    if recorded(datadir) == url:
        return
    datadir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = path_in(datadir)
    temporary = path.with_name(f".{FILE_NAME}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(url + "\n")
        temporary.replace(path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
