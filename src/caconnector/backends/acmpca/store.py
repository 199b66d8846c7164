"""What the `acmpca` backend remembers between jobs, in one small SQLite file in its state directory.

- Which certificate ARN each request id produced. AWS de-duplicates IssueCertificate by its
  idempotency token for about five minutes only; a job redelivered later (a lost result, a connector
  restarted after a long outage) must collect the certificate already ordered, not order another.
- The last audit report made for each CA. AWS allows one report per CA every 30 minutes, so a scan
  within that window reads the previous report instead of asking for a new one.

Every write is one SQLite transaction, so a crash leaves a whole row or none.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from caconnector.backends.record_store import RecordStore

DATABASE_NAME = "acmpca.sqlite"
SCHEMA_VERSION = 1

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS requests (
        request_id       TEXT PRIMARY KEY,
        certificate_arn  TEXT NOT NULL,
        recorded_at      TEXT NOT NULL   -- UTC ISO 8601
    )""",
    """CREATE TABLE IF NOT EXISTS audit_reports (
        ca_arn      TEXT PRIMARY KEY,
        report_id   TEXT NOT NULL,
        s3_key      TEXT NOT NULL,
        created_at  TEXT NOT NULL       -- UTC ISO 8601
    )""",
)


@dataclass(frozen=True)
class AuditReport:
    ca_arn: str
    report_id: str
    s3_key: str
    created_at: dt.datetime


class AcmpcaStore(RecordStore):
    """The records of one acmpca backend, in `<state_dir>/acmpca.sqlite`. A connection per call."""

    database_name = DATABASE_NAME
    schema = _SCHEMA
    schema_version = SCHEMA_VERSION

    # ---- requests ----------------------------------------------------------------------------------

    def certificate_arn(self, request_id: str) -> str | None:
        with self._transaction() as tx:
            row = tx.execute(
                "SELECT certificate_arn FROM requests WHERE request_id = ?", (request_id,)
            ).fetchone()
        return None if row is None else str(row[0])

    def record_request(self, request_id: str, certificate_arn: str, now: dt.datetime) -> str:
        """Remember what `request_id` ordered; return the ARN on record, which is the first one recorded
        if another worker got there first."""
        with self._transaction() as tx:
            tx.execute(
                "INSERT OR IGNORE INTO requests (request_id, certificate_arn, recorded_at) VALUES (?, ?, ?)",
                (request_id, certificate_arn, now.astimezone(dt.UTC).isoformat()),
            )
            row = tx.execute(
                "SELECT certificate_arn FROM requests WHERE request_id = ?", (request_id,)
            ).fetchone()
        return str(row[0])

    # ---- audit reports ------------------------------------------------------------------------------

    def audit_report(self, ca_arn: str) -> AuditReport | None:
        with self._transaction() as tx:
            row = tx.execute(
                "SELECT report_id, s3_key, created_at FROM audit_reports WHERE ca_arn = ?", (ca_arn,)
            ).fetchone()
        if row is None:
            return None
        return AuditReport(ca_arn, str(row[0]), str(row[1]), dt.datetime.fromisoformat(str(row[2])))

    def record_audit_report(self, report: AuditReport) -> None:
        with self._transaction() as tx:
            tx.execute(
                "INSERT OR REPLACE INTO audit_reports (ca_arn, report_id, s3_key, created_at)"
                " VALUES (?, ?, ?, ?)",
                (
                    report.ca_arn,
                    report.report_id,
                    report.s3_key,
                    report.created_at.astimezone(dt.UTC).isoformat(),
                ),
            )

    def forget_audit_report(self, ca_arn: str) -> None:
        with self._transaction() as tx:
            tx.execute("DELETE FROM audit_reports WHERE ca_arn = ?", (ca_arn,))
