"""The scheduler: makes the next job for each certificate whose `next_attempt_at` has come.

- Pending: a `collect` job for its order.
- Requested after a retryable error: the `enroll` job again, with the same payload and so the same
  `request_id` (the certificate's id): a CA that already issued answers with that certificate
  instead of issuing a second one.
- Issued, with a revocation retried after a retryable error: the `revoke` job again.

Due rows are claimed by one UPDATE that clears their `next_attempt_at`, so of two manager processes
only one acts on each row: on PostgreSQL the rows come from a `FOR UPDATE SKIP LOCKED` subquery (a row
another process is claiming is skipped, not waited for); SQLite serialises writers, and the UPDATE's
WHERE re-checks that the row is still due. The claim and the new job commit together, so a crash
between them loses nothing.

`run_due` does one round (the loop and tests call it); `Scheduler` runs it in the app's lifespan.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Sequence

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.orm import Session

from caconnector.manager import audit
from caconnector.manager.db.models import Certificate, Job
from caconnector.manager.runtime import Runtime
from caconnector.manager.services import jobs_factory
from caconnector.manager.services.states import CertStatus, target
from caconnector.manager.services.wakeups import certificate_changed
from caconnector.protocol.errors import JobErrorCode
from caconnector.protocol.messages import JobKind

log = logging.getLogger(__name__)

BATCH = 100  # rows claimed per round; the next round, a second later, takes the rest


def run_due(session: Session, now: dt.datetime, *, batch: int = BATCH) -> list[Job]:
    """Claim the certificates due at `now` and make their next jobs; return the jobs made."""
    due = (
        select(Certificate.id)
        .where(_due(now))
        .order_by(Certificate.next_attempt_at, Certificate.id)
        .limit(batch)
        .with_for_update(skip_locked=True)
    )
    claimed: Sequence[Certificate] = session.scalars(
        update(Certificate)
        .where(Certificate.id.in_(due.scalar_subquery()), _due(now))
        .values(next_attempt_at=None, updated_at=now)
        .returning(Certificate),
        execution_options={"synchronize_session": False, "populate_existing": True},
    ).all()
    jobs = []
    for certificate in sorted(claimed, key=lambda c: c.id):
        job = _next_job(session, certificate, now)
        if job is not None:
            jobs.append(job)
    return jobs


def _due(now: dt.datetime) -> ColumnElement[bool]:
    return and_(
        Certificate.next_attempt_at <= now,
        or_(
            Certificate.status.in_([CertStatus.REQUESTED.value, CertStatus.PENDING.value]),
            and_(
                Certificate.status == CertStatus.ISSUED.value,
                Certificate.revocation_reason.is_not(None),
                Certificate.revoked_at.is_(None),
            ),
        ),
    )


def _next_job(session: Session, certificate: Certificate, now: dt.datetime) -> Job | None:
    backend = certificate.backend
    if backend is None:
        _fail(session, certificate, now, "its backend is gone (its connector was deleted)")
        return None
    status = CertStatus(certificate.status)
    if status is CertStatus.PENDING and certificate.order_ref is not None:
        return jobs_factory.collect(session, backend, certificate, certificate.order_ref, now)
    if status is CertStatus.REQUESTED:
        previous = session.scalar(
            select(Job.payload)
            .where(Job.certificate_id == certificate.id, Job.kind == JobKind.ENROLL.value)
            .order_by(Job.created_at.desc(), Job.id.desc())
            .limit(1)
        )
        if previous is None:
            _fail(session, certificate, now, "its enroll job is gone (its connector was deleted)")
            return None
        return jobs_factory.enroll_again(session, backend, previous, certificate_id=certificate.id, now=now)
    if status is CertStatus.ISSUED and certificate.serial is not None:
        return jobs_factory.revoke(session, backend, certificate, certificate.serial, now)
    # A Pending certificate without an order: nothing to collect.
    _fail(session, certificate, now, "the CA gave no order reference to collect it by")
    return None


def _fail(session: Session, certificate: Certificate, now: dt.datetime, message: str) -> None:
    certificate.status = CertStatus.FAILED.value
    certificate.error = {"code": JobErrorCode.CONFIG_ERROR.value, "message": message, "retryable": False}
    certificate.updated_at = now
    audit.record(
        session,
        now,
        "system",
        "certificate.failed",
        target(certificate),
        code=JobErrorCode.CONFIG_ERROR.value,
    )
    certificate_changed(session, certificate.id)


class Scheduler:
    """`run_due` every `interval` seconds, in a worker thread, until stopped. One per app."""

    def __init__(self, runtime: Runtime, interval: float) -> None:
        self._runtime = runtime
        self._interval = interval
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="certificate-scheduler")

    async def stop(self) -> None:
        """Ends after the round in progress, if any (a round is short, and it is not cut off)."""
        self._stopping.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await asyncio.to_thread(self._round)
            except Exception:
                log.exception("the certificate scheduler's round failed; trying again")
            try:
                async with asyncio.timeout(self._interval):
                    await self._stopping.wait()
            except TimeoutError:
                pass

    def _round(self) -> None:
        runtime = self._runtime
        with runtime.sessions.begin() as session:
            jobs = run_due(session, runtime.now())
        if jobs:
            log.info("scheduler: made %d job(s) for due certificates", len(jobs))
