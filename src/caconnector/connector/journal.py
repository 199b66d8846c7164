"""The job journal: `<datadir>/journal.sqlite`, job id -> state, kind, result, acknowledgement.

The manager delivers jobs at least once (a lease that expires means the job comes again), and the
connector can crash at any moment. The journal makes both harmless:

- A job is recorded as `running` before it starts and as `done` with its result (a JobResult, JSON)
  when it ends, in one SQLite transaction each.
- A redelivered job whose result is in the journal is **answered from the journal** and not run again:
  its result is marked unacknowledged, so the next poll carries it.
- A job found `running` that this agent process did not start was interrupted by a crash (or a kill).
  It is run again only if its kind is safe to repeat (`SAFE_TO_REPEAT`). Today every kind is:
    * `enroll` carries `request_id`, the idempotency source of every CA call: the local CA returns the
      certificate it already signed for that id, and the other backends derive the CA's idempotency key
      from it (AWS IdempotencyToken, GCP request_id/certificate_id, an order lookup by our reference at
      DigiCert and Entrust before ordering again). Running it twice never orders twice.
    * `collect`, `check`, `inventory`, `scan` only read.
    * `revoke` is idempotent: revoking a revoked certificate keeps the first date and reason.
  A kind added later that cannot promise this is left out of the set; an interrupted job of that kind
  is answered with the error `interrupted` (not retryable) so that a person looks at it.
- A job found `running` that this process did start is still running: it is neither started again nor
  answered (the next poll lists it in `running`, which extends its lease).
- Results stay until the manager acknowledges them (`PollResponse.acknowledged`), then are kept for
  `keep` (7 days) so a late redelivery is still answered from the journal, then pruned. A result the
  manager never acknowledges (a job deleted there) is dropped after `keep_unacknowledged` (30 days,
  the same horizon after which a silent connector expires).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from caconnector.protocol.errors import JobErrorCode
from caconnector.protocol.messages import ErrorBody, JobKind, JobMessage, JobOutcome, JobResult

JOURNAL_FILE = "journal.sqlite"
SCHEMA_VERSION = 1

SAFE_TO_REPEAT: frozenset[str] = frozenset(
    {JobKind.ENROLL, JobKind.COLLECT, JobKind.REVOKE, JobKind.SCAN, JobKind.CHECK, JobKind.INVENTORY}
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id          TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    backend         TEXT,
    state           TEXT NOT NULL CHECK (state IN ('running', 'done')),
    run_id          TEXT NOT NULL,      -- the agent process that started it
    attempts        INTEGER NOT NULL DEFAULT 1,
    result          TEXT,               -- JobResult JSON, once done
    acknowledged    INTEGER NOT NULL DEFAULT 0,
    started_at      TEXT NOT NULL,
    finished_at     TEXT,
    acknowledged_at TEXT
);
CREATE INDEX IF NOT EXISTS jobs_unacknowledged ON jobs (state, acknowledged);
"""


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(moment: dt.datetime) -> str:
    # One fixed-width UTC form, so that comparing the stored text compares the moments.
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds")


class JournalError(Exception):
    """The journal file cannot be used by this version."""


class Delivery(enum.Enum):
    """What to do with a job the manager delivered, given what the journal holds of it."""

    RUN = "run"  # start it (new, or interrupted and safe to repeat)
    ANSWERED = "answered"  # the journal holds its result; the next poll carries it
    RUNNING = "running"  # this process is running it already


@dataclass(frozen=True)
class Entry:
    job_id: str
    kind: str
    backend: str | None
    state: str
    attempts: int
    result: JobResult | None
    acknowledged: bool


class Journal:
    """One connection shared by the agent's threads under a lock (SQLite serialises writers anyway)."""

    def __init__(
        self,
        path: Path,
        *,
        now: Callable[[], dt.datetime] = _utcnow,
        keep: dt.timedelta = dt.timedelta(days=7),
        keep_unacknowledged: dt.timedelta = dt.timedelta(days=30),
        safe_to_repeat: frozenset[str] = SAFE_TO_REPEAT,
    ) -> None:
        self.path = path
        self.safe_to_repeat = safe_to_repeat
        self._now = now
        self.keep = keep
        self.keep_unacknowledged = keep_unacknowledged
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        try:
            self._initialise()
        except BaseException:
            self._db.close()
            raise

    def _initialise(self) -> None:
        self.path.chmod(0o600)  # results hold certificates and the names of their holders
        self._db.execute("PRAGMA journal_mode=WAL")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise JournalError(
                f"{self.path} was written by a newer ca-connector (journal schema {version}); "
                "upgrade ca-connector"
            )
        self._db.executescript(_SCHEMA)
        self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _stamp(self) -> str:
        return _iso(self._now())

    # ---- the job's life -----------------------------------------------------------------------------

    def begin(self, job: JobMessage, run_id: str) -> Delivery:
        """Decide what to do with a delivered job, and record it as running when it is to run."""
        with self._transaction() as db:
            row = db.execute("SELECT state, run_id FROM jobs WHERE job_id = ?", (job.id,)).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO jobs (job_id, kind, backend, state, run_id, started_at) "
                    "VALUES (?, ?, ?, 'running', ?, ?)",
                    (job.id, job.kind.value, job.backend, run_id, self._stamp()),
                )
                return Delivery.RUN
            state, owner = row
            if state == "done":
                # The manager asks again, so it did not store our result: send it again.
                db.execute(
                    "UPDATE jobs SET acknowledged = 0, acknowledged_at = NULL WHERE job_id = ?", (job.id,)
                )
                return Delivery.ANSWERED
            if owner == run_id:
                return Delivery.RUNNING
            if job.kind.value in self.safe_to_repeat:
                db.execute(
                    "UPDATE jobs SET run_id = ?, attempts = attempts + 1, started_at = ? WHERE job_id = ?",
                    (run_id, self._stamp(), job.id),
                )
                return Delivery.RUN
            result = JobResult(
                job_id=job.id,
                outcome=JobOutcome.ERROR,
                error=ErrorBody(
                    code="interrupted",
                    message=f"the connector stopped while running this {job.kind.value} job, and a "
                    "job of this kind is not safe to repeat; check the CA before submitting it again",
                ),
            )
            self._set_done(db, job.id, result)
            return Delivery.ANSWERED

    def finish(self, result: JobResult) -> None:
        """Record a job's result; it is reported with the next poll until acknowledged."""
        with self._transaction() as db:
            exists = db.execute("SELECT 1 FROM jobs WHERE job_id = ?", (result.job_id,)).fetchone()
            if exists is None:
                db.execute(
                    "INSERT INTO jobs (job_id, kind, state, run_id, started_at) "
                    "VALUES (?, '', 'done', '', ?)",
                    (result.job_id, self._stamp()),
                )
            self._set_done(db, result.job_id, result)

    def record_unreadable(self, job_id: str, problem: str) -> None:
        """Answer a job this version cannot read (an unknown kind, a malformed job) with an error."""
        self.finish(
            JobResult(
                job_id=job_id,
                outcome=JobOutcome.ERROR,
                error=ErrorBody(
                    code=JobErrorCode.NOT_SUPPORTED,
                    message=f"this version of ca-connector cannot read the job ({problem}); update it",
                ),
            )
        )

    def abandon(self, job_id: str) -> None:
        """Forget a job that was taken but never started (a stop came first): a redelivery runs it."""
        with self._transaction() as db:
            db.execute("DELETE FROM jobs WHERE job_id = ? AND state = 'running'", (job_id,))

    def _set_done(self, db: sqlite3.Connection, job_id: str, result: JobResult) -> None:
        db.execute(
            "UPDATE jobs SET state = 'done', result = ?, finished_at = ?, acknowledged = 0, "
            "acknowledged_at = NULL WHERE job_id = ?",
            (result.model_dump_json(), self._stamp(), job_id),
        )

    # ---- reporting ----------------------------------------------------------------------------------

    def unacknowledged(self, limit: int = 100) -> list[JobResult]:
        """Results to send with the next poll, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT result FROM jobs WHERE state = 'done' AND acknowledged = 0 "
                "ORDER BY finished_at, job_id LIMIT ?",
                (limit,),
            ).fetchall()
        return [JobResult.model_validate_json(row[0]) for row in rows]

    def acknowledge(self, job_ids: list[str]) -> None:
        if not job_ids:
            return
        stamp = self._stamp()
        with self._transaction() as db:
            db.executemany(
                "UPDATE jobs SET acknowledged = 1, acknowledged_at = ? WHERE job_id = ? AND state = 'done'",
                [(stamp, job_id) for job_id in job_ids],
            )

    def prune(self) -> int:
        """Delete acknowledged results older than `keep`, and unacknowledged ones older than
        `keep_unacknowledged`. Returns how many were deleted."""
        now = self._now()
        acknowledged_before = _iso(now - self.keep)
        finished_before = _iso(now - self.keep_unacknowledged)
        with self._transaction() as db:
            cursor = db.execute(
                "DELETE FROM jobs WHERE state = 'done' AND ("
                "(acknowledged = 1 AND acknowledged_at < ?) OR (acknowledged = 0 AND finished_at < ?))",
                (acknowledged_before, finished_before),
            )
            return cursor.rowcount

    def get(self, job_id: str) -> Entry | None:
        with self._lock:
            row = self._db.execute(
                "SELECT job_id, kind, backend, state, attempts, result, acknowledged "
                "FROM jobs WHERE job_id = ?",
                (job_id,),
            ).fetchone()
        if row is None:
            return None
        result = JobResult.model_validate_json(row[5]) if row[5] else None
        return Entry(row[0], row[1], row[2], row[3], row[4], result, bool(row[6]))
