"""A backend's records between jobs (which order each request id made, what the CA answered), in one
small SQLite file in the backend's state directory. Several backend types keep such records; this is the
one way they open, version and write them.

Every write is one `BEGIN IMMEDIATE` transaction, so a crash leaves a whole row or none, and a
read-then-write (look up the request, then record the order) cannot interleave with another worker or
process. A connection per call: the file is small, and jobs of one backend run in several threads.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

from caconnector.backends.errors import ConfigError, Transient

# Another worker or process may hold the write lock for a moment; wait rather than fail.
BUSY_TIMEOUT_SECONDS = 10.0


class RecordStore:
    """Subclasses name their file, their schema (CREATE ... IF NOT EXISTS statements) and its version."""

    database_name: ClassVar[str]
    schema: ClassVar[tuple[str, ...]]
    schema_version: ClassVar[int]

    def __init__(self, state_dir: Path, backend: str) -> None:
        self.state_dir = state_dir
        self.path = state_dir / self.database_name
        self._backend = backend
        try:
            state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            # The records name orders and certificates (no secrets), but stay private to the connector.
            state_dir.chmod(0o700)
        except OSError as exc:
            raise ConfigError(
                f"backend {backend!r}: cannot use the state directory {state_dir}: {exc}"
            ) from None
        with self._transaction() as tx:
            version = tx.execute("PRAGMA user_version").fetchone()[0]
            if version > self.schema_version:
                raise ConfigError(
                    f"backend {backend!r}: {self.path} was written by a newer version (schema {version}); "
                    "upgrade caconnector"
                )
            for statement in self.schema:
                tx.execute(statement)
            tx.execute(f"PRAGMA user_version = {self.schema_version}")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        finally:
            connection.close()

    def _error(self, exc: sqlite3.Error) -> Exception:
        if isinstance(exc, sqlite3.OperationalError):
            # Locked, busy, disk full: the next attempt may well pass.
            return Transient(f"backend {self._backend!r}: its records in {self.path} are unavailable ({exc})")
        return ConfigError(f"backend {self._backend!r}: its records in {self.path} are unusable ({exc})")
