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
from dataclasses import dataclass

from caconnector.backends.record_store import RecordStore

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


@dataclass(frozen=True)
class OrderRecord:
    request_id: str
    order_url: str
    csr_pem: str


class AcmeStore(RecordStore):
    """The records of one acme backend, in `<state_dir>/acme.sqlite`. A connection per call."""

    database_name = DATABASE_NAME
    schema = _SCHEMA
    schema_version = SCHEMA_VERSION

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
