"""What the `digicert` backend remembers between jobs, in one small SQLite file in its state directory.

- Which order each request id placed: the first place a redelivered enroll looks (CertCentral has no
  idempotency key; the order's comments carry our request id for when this record was lost).
- Which certificate id each serial has: CertCentral revokes by certificate id, and finding one by serial
  otherwise means reading every order of the account.
- Which CA certificate issued for each CA id: CertCentral lists the CA ids a private product may use
  (`allowed_ca_certs`) but not their certificates, so check() shows the ones seen in issued chains.

Every write is one SQLite transaction, so a crash leaves a whole row or none. Nothing secret is kept.
"""

from __future__ import annotations

from caconnector.backends.record_store import RecordStore

DATABASE_NAME = "digicert.sqlite"
SCHEMA_VERSION = 1

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS orders (request_id TEXT PRIMARY KEY, order_id TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS certificates (serial TEXT PRIMARY KEY, certificate_id TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS issuers (ca_id TEXT PRIMARY KEY, certificate_pem TEXT NOT NULL)",
)


class DigicertStore(RecordStore):
    """The records of one digicert backend, in `<state_dir>/digicert.sqlite`. A connection per call."""

    database_name = DATABASE_NAME
    schema = _SCHEMA
    schema_version = SCHEMA_VERSION

    def _one(self, query: str, key: str) -> str | None:
        with self._transaction() as db:
            row = db.execute(query, (key,)).fetchone()
        return None if row is None else str(row[0])

    def _put(self, table: str, columns: tuple[str, str], key: str, value: str) -> None:
        with self._transaction() as db:
            db.execute(
                f"INSERT OR REPLACE INTO {table} ({columns[0]}, {columns[1]}) VALUES (?, ?)",  # noqa: S608  (fixed names)
                (key, value),
            )

    def order_of(self, request_id: str) -> str | None:
        return self._one("SELECT order_id FROM orders WHERE request_id = ?", request_id)

    def remember_order(self, request_id: str, order_id: str) -> None:
        self._put("orders", ("request_id", "order_id"), request_id, order_id)

    def certificate_of(self, serial: str) -> str | None:
        return self._one("SELECT certificate_id FROM certificates WHERE serial = ?", serial)

    def remember_certificate(self, serial: str, certificate_id: str) -> None:
        self._put("certificates", ("serial", "certificate_id"), serial, certificate_id)

    def issuer_of(self, ca_id: str) -> str | None:
        return self._one("SELECT certificate_pem FROM issuers WHERE ca_id = ?", ca_id)

    def remember_issuer(self, ca_id: str, certificate_pem: str) -> None:
        self._put("issuers", ("ca_id", "certificate_pem"), ca_id, certificate_pem)
