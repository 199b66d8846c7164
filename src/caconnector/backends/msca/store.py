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
from pathlib import Path

from caconnector.backends.record_store import RecordStore

DATABASE_NAME = "msca.sqlite"
SCHEMA_VERSION = 1
TRUST_FILE = "web-trust.pem"

_SCHEMA = """CREATE TABLE IF NOT EXISTS requests (
    request_id     TEXT PRIMARY KEY,
    ca_request_id  INTEGER NOT NULL,
    recorded_at    TEXT NOT NULL   -- UTC ISO 8601
)"""


class MscaStore(RecordStore):
    """The records of one msca backend, in `<state_dir>/msca.sqlite`. A connection per call."""

    database_name = DATABASE_NAME
    schema = (_SCHEMA,)
    schema_version = SCHEMA_VERSION

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
