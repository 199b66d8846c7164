"""`/api/v1/certificates`: enroll, follow, download, revoke and renew certificates.

`wait` holds an answer until the certificate is settled (issued, failed, revoked) or the wait ends.
The request subscribes to the certificate's wake-ups before it first looks, so a change made meanwhile
is not missed; the lifecycle wakes it after the change commits, in this process directly and from other
processes through PostgreSQL's NOTIFY (services.wakeups). A re-check every RECHECK_SECONDS is the
fallback for a notification lost while a LISTEN connection reconnects: it bounds the delay, never the
correctness.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Annotated, Any, TypeVar, cast

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session, object_session
from starlette.concurrency import run_in_threadpool

from caconnector.manager.api.jobs import JobOut
from caconnector.manager.api.pagination import (
    DEFAULT_LIMIT,
    Cursor,
    Limit,
    Page,
)
from caconnector.manager.api.params import NameIn, PathKey, line_query
from caconnector.manager.auth import Operator, Principal, Reader
from caconnector.manager.db.models import Certificate, Job, new_id
from caconnector.manager.problems import Problem
from caconnector.manager.runtime import Runtime, runtime_of
from caconnector.manager.services import certificates as service
from caconnector.manager.services import enrollment
from caconnector.manager.services.profiles import find_profile
from caconnector.manager.services.states import CertStatus, settled, status_at
from caconnector.manager.services.wakeups import Waiter
from caconnector.pki.csr import MAX_CSR_BYTES
from caconnector.pki.formats import OutputFormat, encode_certificate, media_type
from caconnector.protocol.text import line, text

router = APIRouter(prefix="/certificates", tags=["certificates"])


MAX_WAIT_SECONDS = 120.0
RECHECK_SECONDS = 2.0
# PEM is base64 (4/3) with line breaks: room for the largest CSR load_csr accepts, so it names the limit.
MAX_CSR_TEXT = MAX_CSR_BYTES * 2
_SUFFIX = {
    OutputFormat.PEM: ".pem",
    OutputFormat.PEM_CHAIN: ".fullchain.pem",
    OutputFormat.CHAIN: ".chain.pem",
    OutputFormat.DER: ".cer",
    OutputFormat.PKCS7: ".p7b",
}

T = TypeVar("T")
View = Callable[[Certificate, dt.datetime], T]


def _wait() -> Any:
    # A new FieldInfo for each model: pydantic completes a FieldInfo in place, so none is shared.
    return Field(
        default=0.0,
        ge=0,
        le=MAX_WAIT_SECONDS,
        description=f"seconds to hold the answer until the certificate is settled (max {MAX_WAIT_SECONDS:g})",
    )


class EnrollIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    profile: NameIn = Field(max_length=128, description="the profile's id or name")
    csr: Annotated[str, text(MAX_CSR_TEXT)] = Field(description="the certificate request, PEM")
    term_days: int | None = Field(
        default=None, ge=1, description="one of the profile's terms; default its first"
    )
    wait: float = _wait()


class RenewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    csr: Annotated[str, text(MAX_CSR_TEXT)] | None = Field(
        default=None, description="a new request; default the old one's (same key)"
    )
    term_days: int | None = Field(default=None, ge=1, description="default the old one's term")
    wait: float = _wait()


class RevokeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, line(64)] = Field(
        default="unspecified", description="RFC 5280 name: keyCompromise, superseded, ..."
    )
    wait: float = _wait()


class EnrollOut(BaseModel):
    id: str
    status: CertStatus
    reason: str | None = Field(default=None, description="why it is not issued (yet)")
    error: dict[str, Any] | None = Field(default=None, description="{code, message, retryable} of a failure")
    certificate: str | None = Field(default=None, description="the certificate, PEM, once issued")
    chain: list[str] | None = Field(default=None, description="its issuers, PEM, issuer first")


class CertificateOut(BaseModel):
    id: str
    status: CertStatus
    source: str = Field(description="enroll (requested here) | scan (found at the CA)")
    profile: str | None = Field(description="the profile's id")
    backend: str | None = Field(description="the backend's id")
    ca: str | None = Field(description="the CA's id")
    subject: str
    sans: list[str]
    key_type: str
    term_days: int | None
    serial: str | None = Field(description="canonical: lower-case hex, no separators")
    not_before: dt.datetime | None
    not_after: dt.datetime | None
    issued_at: dt.datetime | None
    order_ref: str | None
    reason: str | None
    error: dict[str, Any] | None = Field(description="{code, message, retryable} of the last failure")
    attempts: int = Field(description="answers received from the CA")
    next_attempt_at: dt.datetime | None = Field(description="when it is collected or tried again")
    renewed_from: str | None
    revocation_reason: str | None
    revoked_at: dt.datetime | None
    renewal_window: dict[str, Any] | None = Field(
        description="the CA's suggested renewal window {start, end, explanation_url} (RFC 9773)"
    )
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, certificate: Certificate, now: dt.datetime) -> CertificateOut:
        return cls(
            id=certificate.id,
            status=status_at(certificate, now),
            source=certificate.source,
            profile=certificate.profile_id,
            backend=certificate.backend_id,
            ca=certificate.ca_id,
            subject=certificate.subject,
            sans=certificate.sans,
            key_type=certificate.key_type,
            term_days=certificate.term_days,
            serial=certificate.serial,
            not_before=certificate.not_before,
            not_after=certificate.not_after,
            issued_at=certificate.issued_at,
            order_ref=certificate.order_ref,
            reason=service.reason_of(certificate, now),
            error=certificate.error,
            attempts=certificate.attempts,
            next_attempt_at=certificate.next_attempt_at,
            renewed_from=certificate.renewed_from_id,
            revocation_reason=certificate.revocation_reason,
            revoked_at=certificate.revoked_at,
            renewal_window=certificate.renewal_window,
            created_at=certificate.created_at,
            updated_at=certificate.updated_at,
        )


class RevokeStarted(BaseModel):
    certificate: CertificateOut
    job: JobOut


# ---- enroll and renew -------------------------------------------------------------------------------


@router.post(
    "",
    status_code=202,
    response_model=EnrollOut,
    responses={201: {"model": EnrollOut, "description": "issued within the wait"}},
)
async def enroll(body: EnrollIn, request: Request, response: Response, caller: Operator) -> EnrollOut:
    """201 with the certificate when it was issued within `wait`; 202 with its status otherwise."""
    runtime = runtime_of(request)
    # The id is chosen here so that the wait subscribes to the certificate's changes before it is
    # stored: the first answer (Requested) comes from the enrollment itself instead of a read back.
    certificate_id = new_id()
    with runtime.certificate_wakeups.subscribe(certificate_id) as waiter:
        first = await run_in_threadpool(_enroll, runtime, body, caller, certificate_id)
        answer = await _settle(request, waiter, certificate_id, body.wait, _enroll_answer, first)
    return _issued_answer(request, response, answer)


@router.post(
    "/{certificate_id}/renew",
    status_code=202,
    response_model=EnrollOut,
    responses={201: {"model": EnrollOut, "description": "issued within the wait"}},
)
async def renew(
    certificate_id: PathKey, body: RenewIn, request: Request, response: Response, caller: Operator
) -> EnrollOut:
    """A new request on the same profile, linked to this one (`renewed_from`)."""
    runtime = runtime_of(request)
    renewed_id = await run_in_threadpool(_renew, runtime, certificate_id, body, caller)
    return await _answer(request, response, renewed_id, body.wait)


def _enroll(
    runtime: Runtime, body: EnrollIn, caller: Principal, certificate_id: str
) -> tuple[EnrollOut | None, bool]:
    """The enrollment, and its answer as a first look: None when the request waits (it is Requested,
    and the wait looks again before it answers), which spares the words of a Requested answer (the
    connector's name: a query) that a waiting request never sends."""

    def work(session: Session) -> tuple[EnrollOut | None, bool]:
        profile = find_profile(session, body.profile)
        now = runtime.now()
        certificate = enrollment.enroll(
            session,
            profile,
            body.csr,
            body.term_days,
            now=now,
            actor=caller.actor,
            certificate_id=certificate_id,
        )
        done = settled(certificate)
        return (_enroll_answer(certificate, now) if done or body.wait <= 0 else None), done

    return runtime.writes.run(work)


def _renew(runtime: Runtime, certificate_id: PathKey, body: RenewIn, caller: Principal) -> str:
    with runtime.sessions.begin() as session:
        old = service.get_certificate(session, certificate_id)
        certificate = enrollment.renew(
            session, old, body.csr, body.term_days, now=runtime.now(), actor=caller.actor
        )
        return certificate.id


async def _answer(request: Request, response: Response, certificate_id: PathKey, wait: float) -> EnrollOut:
    answer = await _wait_until_settled(request, certificate_id, wait, _enroll_answer)
    return _issued_answer(request, response, answer)


def _issued_answer(request: Request, response: Response, answer: EnrollOut) -> EnrollOut:
    if answer.status is CertStatus.ISSUED:
        response.status_code = 201
        response.headers["Location"] = (
            f"{request.url.path.rsplit('/certificates', 1)[0]}/certificates/{answer.id}"
        )
    return answer


def _enroll_answer(certificate: Certificate, now: dt.datetime) -> EnrollOut:
    status = status_at(certificate, now)
    if status is CertStatus.ISSUED:
        return EnrollOut(
            id=certificate.id,
            status=status,
            certificate=certificate.certificate_pem,
            chain=list(certificate.chain_pem),
        )
    return EnrollOut(
        id=certificate.id, status=status, reason=service.reason_of(certificate, now), error=certificate.error
    )


# The views that read only the certificate's own columns (of a settled one: no connector's name), so
# they can answer from the object a committed change handed over, outside any session. A view that
# queries (a revocation's job) answers from a look.
_COLUMNS_ONLY: frozenset[View[Any]] = frozenset({_enroll_answer})


async def _wait_until_settled(request: Request, certificate_id: PathKey, wait: float, view: View[T]) -> T:
    runtime = runtime_of(request)
    with runtime.certificate_wakeups.subscribe(certificate_id) as waiter:
        return await _settle(request, waiter, certificate_id, wait, view, None)


async def _settle(  # noqa: PLR0917  (the wait's state, passed on from the two ways in)
    request: Request,
    waiter: Waiter,
    certificate_id: PathKey,
    wait: float,
    view: View[T],
    first: tuple[T | None, bool] | None,
) -> T:
    """Look, and wait for a change, until the certificate is settled or `wait` ran out; `first`, when
    given, is the first look (taken by the caller while already subscribed; its answer None when the
    caller left the answer to a later look)."""
    runtime = runtime_of(request)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        answer: T | None
        if first is None:
            waiter.clear()  # before looking: a change during the look wakes the next wait at once
            answer, done = await run_in_threadpool(_look, runtime, certificate_id, view)
        else:
            (answer, done), first = first, None
        remaining = deadline - loop.time()
        if done or remaining <= 0 or await request.is_disconnected():
            if answer is None:  # the first look left it to this one
                answer, done = await run_in_threadpool(_look, runtime, certificate_id, view)
            return cast("T", answer)  # a view's T never includes None: None is "not looked yet"
        woken = await waiter.wait(min(remaining, RECHECK_SECONDS))
        snapshot = waiter.snapshot
        if woken and view in _COLUMNS_ONLY and isinstance(snapshot, Certificate) and settled(snapshot):
            # Settled by a change this process committed, which handed over the certificate as it
            # committed it (lifecycle.job_done): the answer, without reading it back.
            return view(snapshot, runtime.now())


def _look(runtime: Runtime, certificate_id: PathKey, view: View[T]) -> tuple[T, bool]:
    with runtime.sessions.begin() as session:
        certificate = service.get_certificate(session, certificate_id)
        return view(certificate, runtime.now()), settled(certificate)


# ---- read -------------------------------------------------------------------------------------------


@router.get("", response_model=Page[CertificateOut])
def list_certificates(
    request: Request,
    _caller: Reader,
    *,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    status: Annotated[CertStatus | None, Query(description="only this status (Expired included)")] = None,
    profile: Annotated[str | None, line_query(32, "only this profile's (id)")] = None,
    backend: Annotated[str | None, line_query(32, "only this backend's (id)")] = None,
    serial: Annotated[str | None, line_query(128, "this serial, in any spelling")] = None,
) -> Page[CertificateOut]:
    """Newest first."""
    runtime = runtime_of(request)
    now = runtime.now()
    with runtime.sessions.begin() as session:
        page = service.list_certificates(
            session,
            now,
            status=status,
            profile_id=profile,
            backend_id=backend,
            serial=serial,
            limit=limit,
            cursor=cursor,
        )
        items = [CertificateOut.of(row, now) for row in page.items]
    return Page[CertificateOut](items=items, next_cursor=page.next_cursor)


@router.get("/{certificate_id}", response_model=CertificateOut)
def get_certificate(certificate_id: PathKey, request: Request, _caller: Reader) -> CertificateOut:
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        return CertificateOut.of(service.get_certificate(session, certificate_id), runtime.now())


@router.get(
    "/{certificate_id}/download",
    response_class=Response,
    responses={200: {"content": {media_type(f): {} for f in OutputFormat}}},
)
def download(
    certificate_id: PathKey,
    request: Request,
    _caller: Reader,
    fmt: Annotated[OutputFormat, Query(alias="format", description="pem, pem-chain, chain, der or pkcs7")] = (
        OutputFormat.PEM
    ),
) -> Response:
    """The certificate (and chain) in the asked format; 409 while nothing is issued."""
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        certificate = service.get_certificate(session, certificate_id)
        leaf, chain = service.stored_certificates(certificate)
        name = certificate.serial or certificate.id
    return Response(
        encode_certificate(leaf, chain, fmt),
        media_type=media_type(fmt),
        headers={"Content-Disposition": f'attachment; filename="{name}{_SUFFIX[fmt]}"'},
    )


# ---- revoke -----------------------------------------------------------------------------------------


@router.post("/{certificate_id}/revoke", status_code=202, response_model=RevokeStarted)
async def revoke(
    certificate_id: PathKey, body: RevokeIn, request: Request, response: Response, caller: Operator
) -> RevokeStarted:
    """202 while the revocation is on its way (the certificate Issued, `reason` "being revoked", the job
    not done yet); 200 when the CA revoked it within `wait` (the certificate Revoked, the job done).

    The certificate and its job are read in one transaction after the wait, so the answer is one moment's
    truth: never a Revoked certificate next to a job still queued."""
    runtime = runtime_of(request)
    job_id = await run_in_threadpool(_revoke, runtime, certificate_id, body.reason, caller)
    answer = await _wait_until_settled(request, certificate_id, body.wait, _revoke_answer(job_id))
    if answer.certificate.status is CertStatus.REVOKED:
        response.status_code = 200
    return answer


def _revoke(runtime: Runtime, certificate_id: PathKey, reason: str, caller: Principal) -> str:
    with runtime.sessions.begin() as session:
        certificate = service.get_certificate(session, certificate_id)
        job = service.request_revocation(session, certificate, reason, runtime.now(), caller.actor)
        return job.id


def _revoke_answer(job_id: str) -> View[RevokeStarted]:
    def view(certificate: Certificate, now: dt.datetime) -> RevokeStarted:
        session = object_session(certificate)
        job = session.get(Job, job_id) if session is not None else None
        if job is None:  # the job is made in the same transaction as the revocation: it exists
            raise Problem(409, "Conflict", f"the revoke job {job_id} is gone", code="conflict")
        return RevokeStarted(certificate=CertificateOut.of(certificate, now), job=JobOut.of(job))

    return view
