"""What the `acme` backend remembers between jobs, in one small SQLite file in its state directory.

- The order each request id placed, recorded as soon as the CA created it and so before finalizing: a
  retry or a redelivered job resumes that order (ACME has no idempotency key; a second order would issue
  a second certificate). The CSR is kept with it, since `collect` gets only the order URL.
- Each certificate issued, by serial: ACME revokes a certificate by the certificate itself, not by its
  serial, and the revoke job carries only the serial.

Every write is one SQLite transaction, so a crash leaves a whole row or none.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from caconnector.backends.errors import ConfigError, Transient

DATABASE_NAME = "acme.sqlite"
SCHEMA_VERSION = 1

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS orders (
        request_id   TEXT PRIMARY KEY,
        order_url    TEXT NOT NULL UNIQUE,
        csr_pem      TEXT NOT NULL,
        recorded_at  TEXT NOT NULL      -- UTC ISO 8601
    )""",
    """CREATE TABLE IF NOT EXISTS certificates (
        serial       TEXT PRIMARY KEY,  -- canonical form, see caconnector.pki.serial
        order_url    TEXT NOT NULL,
        pem          TEXT NOT NULL
    )""",
)
# Another worker or process may hold the write lock for a moment; wait rather than fail.
_BUSY_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class OrderRecord:
    request_id: str
    order_url: str
    csr_pem: str


class AcmeStore:
    """The records of one acme backend, in `<state_dir>/acme.sqlite`. A connection per call."""

    def __init__(self, state_dir: Path, backend: str) -> None:
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
            for statement in _SCHEMA:
                tx.execute(statement)
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

    # ---- orders ------------------------------------------------------------------------------------

    def order_for_request(self, request_id: str) -> OrderRecord | None:
        with self._transaction() as tx:
            row = tx.execute(
                "SELECT order_url, csr_pem FROM orders WHERE request_id = ?", (request_id,)
            ).fetchone()
        return None if row is None else OrderRecord(request_id, str(row[0]), str(row[1]))

    def order(self, order_url: str) -> OrderRecord | None:
        with self._transaction() as tx:
            row = tx.execute(
                "SELECT request_id, csr_pem FROM orders WHERE order_url = ?", (order_url,)
            ).fetchone()
        return None if row is None else OrderRecord(str(row[0]), order_url, str(row[1]))

    def record_order(self, record: OrderRecord, now: dt.datetime) -> OrderRecord:
        """Remember what the request ordered; return the record kept, which is the first one if another
        worker recorded an order for the same request meanwhile."""
        with self._transaction() as tx:
            tx.execute(
                "INSERT OR IGNORE INTO orders (request_id, order_url, csr_pem, recorded_at)"
                " VALUES (?, ?, ?, ?)",
                (record.request_id, record.order_url, record.csr_pem, now.astimezone(dt.UTC).isoformat()),
            )
            row = tx.execute(
                "SELECT order_url, csr_pem FROM orders WHERE request_id = ?", (record.request_id,)
            ).fetchone()
        return OrderRecord(record.request_id, str(row[0]), str(row[1]))

    def count_orders(self) -> int:
        with self._transaction() as tx:
            return int(tx.execute("SELECT COUNT(*) FROM orders").fetchone()[0])

    # ---- certificates --------------------------------------------------------------------------------

    def record_certificate(self, serial: str, order_url: str, pem: str) -> None:
        with self._transaction() as tx:
            tx.execute(
                "INSERT OR IGNORE INTO certificates (serial, order_url, pem) VALUES (?, ?, ?)",
                (serial, order_url, pem),
            )

    def certificate(self, serial: str) -> str | None:
        with self._transaction() as tx:
            row = tx.execute("SELECT pem FROM certificates WHERE serial = ?", (serial,)).fetchone()
        return None if row is None else str(row[0])
