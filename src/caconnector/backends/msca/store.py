"""What the `msca` backend remembers between jobs, in one small SQLite file in its state directory:
which AD CS request id each of our request ids produced.

AD CS has no idempotency key: submitting the same request twice makes two requests at the CA (two
certificates, or two entries in the CA manager's queue). So the request id the CA assigns is recorded the
moment it is known, before the certificate is fetched, and a job that comes again collects by that id.

The Enrollment Agent key and certificate are not here: they are options of the backend (`-eakey`,
`-eacert`), sealed by the connector's store with every other secret.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from caconnector.backends.errors import ConfigError, Transient

DATABASE_NAME = "msca.sqlite"
SCHEMA_VERSION = 1
TRUST_FILE = "web-trust.pem"

_SCHEMA = """CREATE TABLE IF NOT EXISTS requests (
    request_id     TEXT PRIMARY KEY,
    ca_request_id  INTEGER NOT NULL,
    recorded_at    TEXT NOT NULL   -- UTC ISO 8601
)"""
_BUSY_TIMEOUT_SECONDS = 10.0


class MscaStore:
    """The records of one msca backend, in `<state_dir>/msca.sqlite`. A connection per call."""

    def __init__(self, state_dir: Path, backend: str) -> None:
        self.state_dir = state_dir
        self.path = state_dir / DATABASE_NAME
        self._backend = backend
        try:
            state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            state_dir.chmod(0o700)
        except OSError as exc:
            raise ConfigError(
                f"backend {backend!r}: cannot use the state directory {state_dir}: {exc}"
            ) from None
        with self._transaction() as tx:
            version = tx.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ConfigError(
                    f"backend {backend!r}: {self.path} was written by a newer version (schema {version}); "
                    "upgrade caconnector"
                )
            tx.execute(_SCHEMA)
            tx.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            connection = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_SECONDS, isolation_level=None)
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
            return Transient(f"backend {self._backend!r}: its records in {self.path} are unavailable ({exc})")
        return ConfigError(f"backend {self._backend!r}: its records in {self.path} are unusable ({exc})")

    def ca_request_id(self, request_id: str) -> int | None:
        with self._transaction() as tx:
            row = tx.execute(
                "SELECT ca_request_id FROM requests WHERE request_id = ?", (request_id,)
            ).fetchone()
        return None if row is None else int(row[0])

    def record(self, request_id: str, ca_request_id: int, now: dt.datetime) -> int:
        """Remember the CA's id for `request_id`; return the id on record (the first, if another worker
        recorded one meanwhile)."""
        with self._transaction() as tx:
            tx.execute(
                "INSERT OR IGNORE INTO requests (request_id, ca_request_id, recorded_at) VALUES (?, ?, ?)",
                (request_id, ca_request_id, now.astimezone(dt.UTC).isoformat()),
            )
            row = tx.execute(
                "SELECT ca_request_id FROM requests WHERE request_id = ?", (request_id,)
            ).fetchone()
        return int(row[0])

    def write_trust(self, pem: str | None) -> Path | None:
        """The -cacert certificates as a file requests can read (a CA certificate is not secret)."""
        path = self.state_dir / TRUST_FILE
        if pem is None:
            path.unlink(missing_ok=True)
            return None
        if not path.exists() or path.read_text() != pem:
            temporary = path.with_suffix(".tmp")
            temporary.write_text(pem)
            temporary.replace(path)
        return path
