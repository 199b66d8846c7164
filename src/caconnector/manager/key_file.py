"""The manager's own sealing key (AES-256-GCM), for the copies of unused installation tokens.

Kept in a 0600 file in the data directory, or where CA_MANAGER_KEY_FILE points; several manager
processes sharing one PostgreSQL database must share this file too.
"""

from __future__ import annotations

import os
from pathlib import Path

from caconnector.manager.settings import Settings
from caconnector.pki.secretbox import KEY_SIZE, SecretBox, generate_key


class KeyFileError(Exception):
    pass


def key_path(settings: Settings) -> Path:
    override = os.environ.get("CA_MANAGER_KEY_FILE")
    return Path(override).expanduser() if override else settings.datadir / "manager-secret.key"


def load_or_create_box(settings: Settings) -> SecretBox:
    path = key_path(settings)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Written whole under a temporary name, then hard-linked into place: if two processes start at
        # once exactly one key wins, and nobody ever reads a half-written one.
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(generate_key())
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    if path.stat().st_mode & 0o077:
        raise KeyFileError(f"{path} is readable by others; run: chmod 600 {path}")
    key = path.read_bytes()
    if len(key) != KEY_SIZE:
        raise KeyFileError(f"{path} is not a {KEY_SIZE}-byte key; restore it from backup")
    return SecretBox(key)
