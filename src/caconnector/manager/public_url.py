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

import ipaddress
from pathlib import Path

from caconnector.manager.files import write_private

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
    """A reader sees the old URL or the new, never half (see files.write_private)."""
    if recorded(datadir) != url:
        write_private(path_in(datadir), (url + "\n").encode())


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
