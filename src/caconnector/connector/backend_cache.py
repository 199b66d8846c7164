"""Opened backends kept for the next job, as long as their stored configuration is unchanged.

Opening a backend for every job (reading and decrypting the data directory, validating the config,
loading a CA key, setting up the local CA's store) cost several times the signing itself. The cache
keys on the data directory's files: `config.toml` and `secrets.json` are only ever replaced whole
(written aside and renamed), so their inode, size and mtime change with every commit, a `backend
update` from another process included. When they change the store is read again, and a backend whose
stored entry (type, options, secrets) differs is opened afresh; the others are kept.

Each worker thread keeps its own opened backends: a backend instance was always used by one job at a
time, and no backend type has to become safe for concurrent use to be cached.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from caconnector.connector import backend_admin
from caconnector.connector.store import ConnectorStore, StoredBackend

_FileVersion = tuple[int, int, int, int] | None  # (device, inode, size, mtime_ns), None when absent


def _file_version(path: Path) -> _FileVersion:
    try:
        found = path.stat()
    except FileNotFoundError:
        return None
    return (found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns)


@dataclass(frozen=True)
class _Snapshot:
    version: tuple[_FileVersion, _FileVersion]
    backends: Mapping[str, StoredBackend]


class BackendCache:
    """`stored(name)` and `open(name)` as backend_admin does them, read and opened only when changed."""

    def __init__(self, store: ConnectorStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None
        self._local = threading.local()

    def _version(self) -> tuple[_FileVersion, _FileVersion]:
        return (_file_version(self._store.config_path), _file_version(self._store.secrets_path))

    def backends(self) -> Mapping[str, StoredBackend]:
        """The stored backends, read again only when the data directory's files changed."""
        version = self._version()
        with self._lock:
            snapshot = self._snapshot
            if snapshot is None or snapshot.version != version:
                # Read the version before the files: a commit landing between the two makes the next
                # call read again, never keeps a stale snapshot under a new version.
                snapshot = _Snapshot(version, self._store.read().backends)
                self._snapshot = snapshot
            return snapshot.backends

    def stored(self, name: str) -> StoredBackend:
        stored = self.backends().get(name)
        if stored is None:
            # The store's own message (which names the configured backends and how to add one).
            return backend_admin.get_backend(self._store, name)
        return stored

    def open(self, name: str) -> backend_admin.OpenedBackend:
        """This thread's opened backend `name`, opened again if its stored entry changed."""
        stored = self.stored(name)
        opened: dict[str, backend_admin.OpenedBackend] = self._local.__dict__.setdefault("opened", {})
        current = opened.get(name)
        if current is not None and current.stored == stored:
            return current
        fresh = backend_admin.open_stored(self._store, stored)
        opened[name] = fresh
        return fresh

    def clear(self) -> None:
        """Forget the snapshot; every thread opens its backends again on next use."""
        with self._lock:
            self._snapshot = None
            self._local = threading.local()
