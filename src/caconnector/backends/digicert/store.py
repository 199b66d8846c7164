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

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from caconnector.backends.errors import ConfigError, Transient

DATABASE_NAME = "digicert.sqlite"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS orders (request_id TEXT PRIMARY KEY, order_id TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS certificates (serial TEXT PRIMARY KEY, certificate_id TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS issuers (ca_id TEXT PRIMARY KEY, certificate_pem TEXT NOT NULL)",
)
_BUSY_TIMEOUT_SECONDS = 10.0


class DigicertStore:
    """The records of one digicert backend, in `<state_dir>/digicert.sqlite`. A connection per call."""

    def __init__(self, state_dir: Path, backend: str) -> None:
        self.path = state_dir / DATABASE_NAME
        self._backend = backend
        try:
            state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"backend {backend!r}: cannot create its state directory {state_dir}: {exc}"
            ) from None
        with self._connect() as db:
            for statement in _SCHEMA:
                db.execute(statement)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            db = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_SECONDS)
        except sqlite3.Error as exc:
            raise ConfigError(f"backend {self._backend!r}: cannot open {self.path}: {exc}") from None
        try:
            with db:
                yield db
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise Transient(f"backend {self._backend!r}: its state file is busy: {exc}") from None
            raise ConfigError(
                f"backend {self._backend!r}: its state file {self.path} is unusable: {exc}"
            ) from None
        except sqlite3.DatabaseError as exc:
            raise ConfigError(
                f"backend {self._backend!r}: its state file {self.path} is unusable: {exc}"
            ) from None
        finally:
            db.close()

    def _one(self, query: str, key: str) -> str | None:
        with self._connect() as db:
            row = db.execute(query, (key,)).fetchone()
        return None if row is None else str(row[0])

    def _put(self, table: str, columns: tuple[str, str], key: str, value: str) -> None:
        with self._connect() as db:
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
