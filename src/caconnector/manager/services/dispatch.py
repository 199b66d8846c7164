"""Jobs for connectors: create them, hand them out under a lease, take their results back.

Delivery is at least once: a job whose lease runs out is handed out again, and a result that arrives
twice is applied once. Each state change is an UPDATE whose WHERE repeats the state it expects, so of
two concurrent polls (threads here, or other manager processes on PostgreSQL) only one can win.
What a result means for its certificate (issued, retry, give up) is the lifecycle's business: it is
called once, by the one transaction that marks the job done.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy import JSON, BindParameter, ColumnElement, Connection, and_, bindparam, or_, select, update
from sqlalchemy.orm import Session

from caconnector.manager.db.models import Connector, Job, new_id
from caconnector.manager.db.rows import insert_loaded
from caconnector.manager.db.types import UTCDateTime
from caconnector.manager.services import inventory, lifecycle
from caconnector.manager.services.limits import TooLong
from caconnector.manager.services.retry import RetryPolicy
from caconnector.manager.services.wakeups import job_created
from caconnector.protocol import messages
from caconnector.protocol.errors import JobErrorCode
from caconnector.protocol.text import clip

log = logging.getLogger(__name__)

# Kinds whose ok result is a BackendReport, applied to the backend's row.
_REPORTING_KINDS = frozenset({messages.JobKind.CHECK, messages.JobKind.INVENTORY})


class JobStatus(enum.StrEnum):
    QUEUED = "queued"  # waiting for a poll (or handed out before, and its lease ran out)
    LEASED = "leased"  # handed out; redelivered if no result comes before lease_expires_at
    DONE = "done"  # a result was stored


def create_job(
    session: Session,
    connector_id: str,
    kind: messages.JobKind,
    *,
    backend_name: str | None,
    payload: dict[str, Any],
    now: dt.datetime,
    certificate_id: str | None = None,
) -> Job:
    """A queued job. The connector's waiting poll wakes when the caller's transaction commits."""
    job = Job(
        id=new_id(),
        connector_id=connector_id,
        kind=kind.value,
        backend_name=backend_name,
        payload=payload,
        status=JobStatus.QUEUED.value,
        attempts=0,
        created_at=now,
        certificate_id=certificate_id,
    )
    insert_loaded(session, job)
    job_created(session, connector_id)
    return job


def _claimable(now: dt.datetime | BindParameter[dt.datetime]) -> ColumnElement[bool]:
    return or_(
        Job.status == JobStatus.QUEUED.value,
        and_(Job.status == JobStatus.LEASED.value, Job.lease_expires_at < now),
    )


_NOW = bindparam("now", type_=UTCDateTime)
_KEY_AND_CLAIMABLE = select(
    Connector.public_key_pem,
    select(Job.id)
    .where(Job.connector_id == bindparam("connector_id"), _claimable(_NOW))
    .limit(1)
    .scalar_subquery()
    .label("job"),
).where(Connector.id == bindparam("connector_id"))


def key_and_claimable(connection: Connection, connector_id: str, now: dt.datetime) -> tuple[str | None, bool]:
    """The connector's registered key (None when it is gone), and whether `claim_jobs` would find
    anything now: one Core statement on a plain connection, a read that takes no write lock (what a
    parked poll asks when its wait ends, nearly always to find nothing)."""
    row = connection.execute(_KEY_AND_CLAIMABLE, {"connector_id": connector_id, "now": now}).first()
    if row is None:
        return None, False
    return row.public_key_pem, row.job is not None


def claim_jobs(
    session: Session, connector_id: str, capacity: int, now: dt.datetime, lease: dt.timedelta
) -> list[Job]:
    """Lease up to `capacity` of the connector's jobs, oldest first: queued ones, and leased ones whose
    lease ran out (redelivery). Each claim counts as an attempt."""
    if capacity <= 0:
        return []
    parameters = {"connector_id": connector_id, "now": now, "capacity": capacity}
    ids = list(session.connection().execute(_CLAIM_CANDIDATES, parameters).scalars())
    if not ids:
        return []
    claimed = session.scalars(_CLAIM, {"ids": ids, "now": now, "new_lease_expires_at": now + lease}).all()
    return sorted(claimed, key=lambda job: (job.created_at, job.id))


# Built once (every poll runs them; building cost more than running). PostgreSQL: rows another
# transaction is claiming are skipped, not waited for. SQLite has no row locks (SQLAlchemy leaves FOR
# UPDATE out); its writers are serialised and the UPDATE re-checks that each job is still claimable, so
# a job raced away is simply not returned.
_CLAIM_CANDIDATES = (
    select(Job.id)
    .where(Job.connector_id == bindparam("connector_id"), _claimable(_NOW))
    .order_by(Job.created_at, Job.id)
    .limit(bindparam("capacity"))
    .with_for_update(skip_locked=True)
)
_CLAIM = (
    update(Job)
    .where(Job.id.in_(bindparam("ids", expanding=True)), _claimable(_NOW))
    .values(
        status=JobStatus.LEASED.value,
        attempts=Job.attempts + 1,
        lease_expires_at=bindparam("new_lease_expires_at", type_=UTCDateTime),
        delivered_at=_NOW,
    )
    .returning(Job)
    # Fresh values even for a job this session loaded before (the identity map would keep old ones).
    .execution_options(synchronize_session=False, populate_existing=True)
)
_STUCK = (
    select(Job.id)
    .where(
        Job.connector_id == bindparam("connector_id"),
        Job.status == JobStatus.LEASED.value,
        Job.lease_expires_at < _NOW,
        Job.attempts >= bindparam("max_deliveries"),
    )
    .with_for_update(skip_locked=True)
)


def give_up_undeliverable(
    session: Session, connector_id: str, now: dt.datetime, max_deliveries: int, policy: RetryPolicy
) -> list[str]:
    """Finish, as failed, the connector's jobs whose lease ran out after `max_deliveries` deliveries.

    At-least-once delivery would otherwise hand a job that stops the connector (a crash, a hang, a kill
    by the OOM killer) back to it forever, and its certificate would stay Requested with no word why.
    Returns the ids given up on."""
    parameters = {"connector_id": connector_id, "now": now, "max_deliveries": max_deliveries}
    given_up = []
    for job_id in session.connection().execute(_STUCK, parameters).scalars().all():
        error = messages.ErrorBody(
            code=JobErrorCode.UNDELIVERABLE,
            message=f"the connector took this job {max_deliveries} times without answering (it may stop "
            "while running it); given up: see the connector's log",
            retryable=False,
        )
        stored = session.scalar(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.LEASED.value, Job.lease_expires_at < now)
            .values(
                status=JobStatus.DONE.value,
                outcome=messages.JobOutcome.ERROR.value,
                error=error.model_dump(mode="json"),
                completed_at=now,
                lease_expires_at=None,
            )
            .returning(Job),
            execution_options={"synchronize_session": False, "populate_existing": True},
        )
        if stored is not None:
            log.warning("job %s (%s) given up after %d deliveries", job_id, stored.kind, max_deliveries)
            lifecycle.job_done(session, stored, now, policy)
            given_up.append(job_id)
    return given_up


def extend_leases(
    session: Session, connector_id: str, job_ids: Sequence[str], now: dt.datetime, lease: dt.timedelta
) -> None:
    """The connector is still working on these: push their redelivery back.

    Only leases with less than half their term left are rewritten: a busy connector lists its running
    jobs in every report, several a second, and rewriting each job row (payload and all) every time
    cost more than the results it stored. A lease so extended never has less than half a term left
    between two reports less than half a term apart (the agent reports every 15 s while busy)."""
    if not job_ids:
        return
    session.connection().execute(
        _EXTEND_LEASES,
        {
            "owner": connector_id,
            "ids": list(job_ids),
            "half_left": now + lease / 2,
            "new_lease_expires_at": now + lease,
        },
    )


_EXTEND_LEASES = (
    update(Job)
    .where(
        Job.connector_id == bindparam("owner"),
        Job.id.in_(bindparam("ids", expanding=True)),
        Job.status == JobStatus.LEASED.value,
        Job.lease_expires_at < bindparam("half_left", type_=UTCDateTime),
    )
    .values(lease_expires_at=bindparam("new_lease_expires_at", type_=UTCDateTime))
)


def store_results(
    session: Session,
    connector_id: str,
    results: Sequence[messages.JobResult],
    now: dt.datetime,
    policy: RetryPolicy,
) -> list[str]:
    """Store each result once; return the ids the connector may forget.

    Every result is acknowledged, including a duplicate (already stored: ignored) and one for a job
    this connector does not have (deleted meanwhile): keeping it would only make the connector send
    it forever.
    """
    unknown = [r.job_id for r in results if not _store_result(session, connector_id, r, now, policy)]
    if unknown:
        # One line per poll, however many results it carries: a connector cannot flood the log.
        log.warning(
            "connector %s sent %d result(s) for unknown jobs; ignored; first: %s",
            connector_id,
            len(unknown),
            clip(unknown[0]),
        )
    return [result.job_id for result in results]


# Built once: every result runs both (building a statement costs more than running it here). The
# bind parameters of the SET clause are named apart from the columns: SQLAlchemy keeps those names.
_JOB_CHECKS = select(Job.connector_id, Job.status, Job.kind, Job.backend_name).where(
    Job.id == bindparam("job_id")
)
_STORE_RESULT = (
    update(Job)
    .where(
        Job.id == bindparam("job_id"),
        Job.status.in_([JobStatus.LEASED.value, JobStatus.QUEUED.value]),
        Job.delivered_at.is_not(None),
    )
    .values(
        status=JobStatus.DONE.value,
        outcome=bindparam("new_outcome"),
        result=bindparam("new_result", type_=JSON),
        error=bindparam("new_error", type_=JSON),
        completed_at=bindparam("now", type_=UTCDateTime),
        lease_expires_at=None,
    )
    .returning(Job)
    # The job as stored, for the lifecycle (the identity map would keep values read before).
    .execution_options(synchronize_session=False, populate_existing=True)
)


def _store_result(
    session: Session, connector_id: str, result: messages.JobResult, now: dt.datetime, policy: RetryPolicy
) -> bool:
    """False when the job is not this connector's (unknown, or deleted meanwhile)."""
    # The few columns the checks need, not the job (its payload is read back by the UPDATE below), as
    # a Core read on the session's connection: no pending change of this session bears on a job's
    # status (results and claims change jobs with UPDATE statements, never through objects).
    job = session.connection().execute(_JOB_CHECKS, {"job_id": result.job_id}).one_or_none()
    if job is None or job.connector_id != connector_id:
        return False
    if job.status == JobStatus.DONE.value:
        return True  # a redelivered job's second answer: at least once in, exactly once applied
    outcome, body, error, report = _checked_outcome(job.kind, job.backend_name, result)
    stored = session.scalar(
        _STORE_RESULT,
        {
            "job_id": result.job_id,
            "new_outcome": outcome.value,
            "new_result": body,
            "new_error": error,
            "now": now,
        },
    )
    if stored is None:
        return True
    if isinstance(report, messages.InventoryReport):
        inventory.apply_inventory(session, connector_id, report, now)
    elif report is not None:
        inventory.apply_backend_report(session, connector_id, report, now, checked=True)
    lifecycle.job_done(session, stored, now, policy)
    return True


_Report = messages.BackendReport | messages.InventoryReport


def _checked_outcome(
    kind: str, backend_name: str | None, result: messages.JobResult
) -> tuple[messages.JobOutcome, dict[str, Any] | None, dict[str, Any] | None, _Report | None]:
    """(outcome, result, error, report to apply). A check, or an inventory of one backend, answers
    with that backend's report; an inventory of the whole connector with an InventoryReport. A
    malformed report becomes an error outcome, so the job shows what went wrong instead of a result
    nobody can read."""
    error = result.error.model_dump(mode="json") if result.error is not None else None
    if result.outcome is not messages.JobOutcome.OK or kind not in _REPORTING_KINDS:
        return result.outcome, result.result, error, None
    whole = kind == messages.JobKind.INVENTORY and not backend_name
    model: type[_Report] = messages.InventoryReport if whole else messages.BackendReport
    try:
        report = model.model_validate(result.result or {})
        if isinstance(report, messages.InventoryReport):
            inventory.check_inventory(report)
        else:
            inventory.check_backend_report(report)
    except ValidationError as exc:
        return _invalid(result, f"the connector's {kind} result is not a valid report: {_first(exc)}")
    except TooLong as exc:
        return _invalid(result, f"the connector's {kind} result is not a valid report: {exc}")
    if isinstance(report, messages.BackendReport) and backend_name and report.name != backend_name:
        # The manager asked about one backend; a report naming another is not an answer to it.
        return _invalid(
            result, f"asked about backend {backend_name!r}, the connector reported {clip(report.name)}"
        )
    return result.outcome, result.result, error, report


def _first(exc: ValidationError) -> str:
    """The first of a validation's errors, bounded: the message is stored and shown with the job."""
    errors = exc.errors(include_input=False, include_url=False)
    first = errors[0]
    where = ".".join(clip(str(part), 32) for part in first["loc"]) or "the result"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"


def _invalid(
    result: messages.JobResult, message: str
) -> tuple[messages.JobOutcome, dict[str, Any] | None, dict[str, Any] | None, None]:
    body = messages.ErrorBody(code=JobErrorCode.INVALID_RESULT, message=message)
    return messages.JobOutcome.ERROR, result.result, body.model_dump(mode="json"), None


def job_message(job: Job) -> messages.JobMessage:
    if job.lease_expires_at is None:
        raise ValueError(f"job {job.id} is not leased")
    return messages.JobMessage(
        id=job.id,
        kind=messages.JobKind(job.kind),
        backend=job.backend_name,
        payload=job.payload,
        attempt=job.attempts,
        lease_expires_at=job.lease_expires_at,
    )
