"""The local CA's state: the certificates it issued and its CRL number, in one SQLite file.

The CA's key and certificate live in the backend's (encrypted) config; this database holds only what the
CA has done since. Every change is one transaction, so a crash leaves either the whole row or none, and
the connector's journal can rely on `request_id` being issued at most once.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar, cast

from caconnector.backends.errors import ConfigError

DATABASE_NAME = "local-ca.sqlite"

# Bumped, with a migration, whenever the schema changes; a newer file is refused rather than misread.
SCHEMA_VERSION = 1

# One statement per item: `executescript` would commit the surrounding transaction on its own.
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS certificates (
        serial      TEXT PRIMARY KEY,  -- canonical serial (caconnector.pki.serial)
        der         BLOB NOT NULL,
        not_before  TEXT NOT NULL,     -- fixed-width UTC ISO 8601 text: text order is time order
        not_after   TEXT NOT NULL,
        subject     TEXT NOT NULL,     -- RFC 4514, for people reading the file
        issued_at   TEXT NOT NULL,
        request_id  TEXT UNIQUE,       -- NULL allowed, and several NULLs do not collide
        revoked_at  TEXT,
        reason      TEXT               -- a caconnector.pki.revocation.RevocationReason value
    )""",
    "CREATE INDEX IF NOT EXISTS certificates_issued_at ON certificates (issued_at, serial)",
    """CREATE TABLE IF NOT EXISTS ca_state (
        id          INTEGER PRIMARY KEY CHECK (id = 1),
        ca_serial   TEXT NOT NULL,
        crl_number  INTEGER NOT NULL
    )""",
)

# Another process (a second worker, the CLI) may hold the write lock for a moment; wait rather than fail.
_BUSY_TIMEOUT_SECONDS = 10.0
_SCAN_PAGE = 500

_T = TypeVar("_T")


@dataclass(frozen=True)
class CertificateRow:
    serial: str
    der: bytes
    issued_at: dt.datetime
    request_id: str | None
    revoked_at: dt.datetime | None
    reason: str | None


def timestamp(value: dt.datetime) -> str:
    """Fixed-width UTC text, so that SQLite's text comparison orders timestamps correctly."""
    if value.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_timestamp(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)


class DuplicateRequest(Exception):
    """`add` found the request_id already recorded (a concurrent call, or another process, was first).

    A signal from the store to the CA, never raised out of the backend.
    """


class LocalStore:
    """The SQLite state of one local CA, in `<state_dir>/local-ca.sqlite`.

    A connection is opened per call: SQLite connections are cheap, nothing leaks when a caller drops a
    half-read generator, and threads never share one. The lock serialises this process's writers;
    other processes are kept consistent by SQLite's own locking (`BEGIN IMMEDIATE`).
    """

    def __init__(self, state_dir: Path, ca_serial: str) -> None:
        self.path = state_dir / DATABASE_NAME
        self._lock = threading.Lock()
        self._initialise(ca_serial)

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so every transaction is explicit.
        return sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_SECONDS, isolation_level=None)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: committed on success, rolled back on any exception, connection closed."""
        with self._lock:
            connection = self._connect()
            try:
                # IMMEDIATE takes the write lock up front, so read-then-write sequences (CRL number,
                # duplicate checks) cannot interleave with another process.
                connection.execute("BEGIN IMMEDIATE")
                try:
                    yield connection
                except BaseException:
                    connection.execute("ROLLBACK")
                    raise
                connection.execute("COMMIT")
            finally:
                connection.close()

    def _read(self, query: str, parameters: tuple[object, ...]) -> list[tuple[object, ...]]:
        connection = self._connect()
        try:
            return connection.execute(query, parameters).fetchall()
        finally:
            connection.close()

    def _initialise(self, ca_serial: str) -> None:
        connection = self._connect()
        try:
            # WAL lets readers (scan, a CRL download) proceed while a writer signs; the mode is stored
            # in the file, so setting it once is enough, but doing it each open is harmless.
            connection.execute("PRAGMA journal_mode=WAL")
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ConfigError(
                    f"{self.path} was written by a newer version (schema {version}); upgrade caconnector"
                )
        finally:
            connection.close()
        with self._transaction() as tx:
            for statement in _SCHEMA:
                tx.execute(statement)
            tx.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            row = tx.execute("SELECT ca_serial FROM ca_state WHERE id = 1").fetchone()
            if row is None:
                tx.execute("INSERT INTO ca_state (id, ca_serial, crl_number) VALUES (1, ?, 0)", (ca_serial,))
            elif row[0] != ca_serial:
                # The CA is immutable per backend, so another serial means the directory was reused or
                # copied: mixing two CAs' records would publish a CRL for certificates it never issued.
                raise ConfigError(
                    f"{self.path} holds the records of CA {row[0]}, not of this backend's CA {ca_serial}; "
                    "give the backend its own state directory"
                )

    def add(
        self,
        *,
        serial: str,
        der: bytes,
        not_before: dt.datetime,
        not_after: dt.datetime,
        subject: str,
        issued_at: dt.datetime,
        request_id: str | None,
    ) -> None:
        """Record an issued certificate; raise `DuplicateRequest` if `request_id` is already recorded."""
        try:
            with self._transaction() as tx:
                tx.execute(
                    "INSERT INTO certificates"
                    " (serial, der, not_before, not_after, subject, issued_at, request_id)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        serial,
                        der,
                        timestamp(not_before),
                        timestamp(not_after),
                        subject,
                        timestamp(issued_at),
                        request_id,
                    ),
                )
        except sqlite3.IntegrityError:
            if request_id is not None and self.by_request_id(request_id) is not None:
                raise DuplicateRequest(request_id) from None
            raise

    def by_request_id(self, request_id: str) -> CertificateRow | None:
        rows = self._read(_SELECT_BY_REQUEST_ID, (request_id,))
        return _row(rows[0]) if rows else None

    def revoke(
        self, serial: str, revoked_at: dt.datetime, reason: str
    ) -> Literal["revoked", "already-revoked", "unknown"]:
        """Mark a certificate revoked, unless it already is (its first date and reason stay)."""
        with self._transaction() as tx:
            cursor = tx.execute(
                "UPDATE certificates SET revoked_at = ?, reason = ? WHERE serial = ? AND revoked_at IS NULL",
                (timestamp(revoked_at), reason, serial),
            )
            if cursor.rowcount:
                return "revoked"
            exists = tx.execute("SELECT 1 FROM certificates WHERE serial = ?", (serial,)).fetchone()
            return "already-revoked" if exists else "unknown"

    def with_next_crl_number(self, build: Callable[[int, list[CertificateRow]], _T]) -> _T:
        """Take the next CRL number and the revoked certificates, and run `build` in the same transaction.

        If `build` fails (signing, writing the published file) the number is not consumed, and two CRLs
        can never be made with the same number or be published out of order.
        """
        with self._transaction() as tx:
            # UPDATE then SELECT rather than UPDATE ... RETURNING, which needs SQLite 3.35 (2021).
            tx.execute("UPDATE ca_state SET crl_number = crl_number + 1 WHERE id = 1")
            number = int(tx.execute("SELECT crl_number FROM ca_state WHERE id = 1").fetchone()[0])
            rows = tx.execute(_SELECT_REVOKED).fetchall()
            return build(number, [_row(row) for row in rows])

    def crl_number(self) -> int:
        """The number of the last CRL made (0 before the first)."""
        return int(cast(int, self._read("SELECT crl_number FROM ca_state WHERE id = 1", ())[0][0]))

    def scan(self, since: dt.datetime | None = None) -> Iterator[CertificateRow]:
        """Every recorded certificate, oldest first.

        Read in pages, so no connection stays open between yields (the caller may never finish).
        """
        after = (timestamp(since) if since is not None else "", "")
        first = True
        while True:
            rows = self._read(_SELECT_FIRST_PAGE if first else _SELECT_NEXT_PAGE, (*after, _SCAN_PAGE))
            for raw in rows:
                yield _row(raw)
            if len(rows) < _SCAN_PAGE:
                return
            first = False
            after = (str(rows[-1][2]), str(rows[-1][0]))


# Queries spelled out in full (no string building), all returning the columns `_row` reads.
_SELECT_BY_REQUEST_ID = (
    "SELECT serial, der, issued_at, request_id, revoked_at, reason FROM certificates WHERE request_id = ?"
)
_SELECT_REVOKED = (
    "SELECT serial, der, issued_at, request_id, revoked_at, reason FROM certificates"
    " WHERE revoked_at IS NOT NULL ORDER BY revoked_at, serial"
)
# Keyset pagination on (issued_at, serial): stable even if rows are added while a scan runs.
_SELECT_FIRST_PAGE = (
    "SELECT serial, der, issued_at, request_id, revoked_at, reason FROM certificates"
    " WHERE (issued_at, serial) >= (?, ?) ORDER BY issued_at, serial LIMIT ?"
)
_SELECT_NEXT_PAGE = (
    "SELECT serial, der, issued_at, request_id, revoked_at, reason FROM certificates"
    " WHERE (issued_at, serial) > (?, ?) ORDER BY issued_at, serial LIMIT ?"
)


def _row(raw: tuple[object, ...]) -> CertificateRow:
    serial, der, issued_at, request_id, revoked_at, reason = raw
    # The schema guarantees these types (NOT NULL columns); the casts only tell mypy so.
    return CertificateRow(
        serial=cast(str, serial),
        der=cast(bytes, der),
        issued_at=_parse_timestamp(cast(str, issued_at)),
        request_id=request_id if isinstance(request_id, str) else None,
        revoked_at=_parse_timestamp(revoked_at) if isinstance(revoked_at, str) else None,
        reason=reason if isinstance(reason, str) else None,
    )
