"""Applying a finished job's result to its certificate: issued, pending, failed (or tried again later),
revoked; and a scan's result to the inventory.

Called by dispatch exactly once per job, in the transaction that marks the job done. Each transition
is guarded by the status it starts from (an enroll result only moves a Requested certificate, a
collect result a Pending one, a revoke result an Issued one being revoked), so a late or duplicate
answer can never change an Issued or Revoked certificate. What to do after an error is the retry
policy's decision (services.retry); the scheduler then makes the next job.
"""

from __future__ import annotations

import datetime as dt
import logging

from cryptography import x509
from pydantic import ValidationError
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, object_session

from caconnector.manager import audit
from caconnector.manager.db.models import Certificate, Connector, Job
from caconnector.manager.services import scan_import
from caconnector.manager.services.crls import apply_crl
from caconnector.manager.services.issued import CAIndex, InvalidIssued, read_issued
from caconnector.manager.services.retry import Fail, RetryPolicy
from caconnector.manager.services.states import CertStatus, Source, revocation_in_progress, settled, target
from caconnector.manager.services.wakeups import certificate_changed
from caconnector.pki.keys import public_keys_equal
from caconnector.protocol.errors import JobErrorCode
from caconnector.protocol.messages import ErrorBody, JobKind, JobOutcome, PendingBody, RevokeBody

log = logging.getLogger(__name__)

_EXPECTED = {JobKind.ENROLL: CertStatus.REQUESTED, JobKind.COLLECT: CertStatus.PENDING}


def job_done(session: Session, job: Job, now: dt.datetime, policy: RetryPolicy) -> None:
    """Apply `job`'s stored result (outcome, result, error) to what the job was for."""
    kind = JobKind(job.kind)
    if kind is JobKind.SCAN:
        scan_import.import_scan(session, job, now)
        return
    if job.certificate_id is None:
        return
    # FOR UPDATE on PostgreSQL: a concurrent change of the same certificate (a revocation asked for
    # meanwhile) waits for this one instead of overwriting it.
    certificate = session.get(Certificate, job.certificate_id, with_for_update=True)
    if certificate is None:
        return
    if kind in _EXPECTED:
        applied = _apply_issuance(session, certificate, job, now, policy)
    elif kind is JobKind.REVOKE:
        applied = _apply_revocation(session, certificate, job, now, policy)
    else:
        applied = False
    if applied:
        certificate.updated_at = now
        certificate_changed(session, certificate.id, certificate if settled(certificate) else None)


# ---- enroll and collect -----------------------------------------------------------------------------


def _apply_issuance(
    session: Session, certificate: Certificate, job: Job, now: dt.datetime, policy: RetryPolicy
) -> bool:
    kind = JobKind(job.kind)
    if certificate.status != _EXPECTED[kind].value:
        log.info(
            "certificate %s is %s; the %s job %s's late answer changes nothing",
            certificate.id,
            certificate.status,
            kind.value,
            job.id,
        )
        return False
    certificate.attempts += 1
    outcome = JobOutcome(job.outcome or JobOutcome.ERROR.value)
    if outcome is JobOutcome.OK:
        _issue(session, certificate, job, now)
    elif outcome is JobOutcome.PENDING:
        _pending(session, certificate, job, now, policy)
    else:
        _failed_try(session, certificate, job, now, policy)
    return True


def _issue(session: Session, certificate: Certificate, job: Job, now: dt.datetime) -> None:
    try:
        issued = read_issued(job.result)
    except InvalidIssued as exc:
        _unusable(session, certificate, job, now, f"unusable answer: {exc}")
        return
    if certificate.ca_id is None and certificate.backend is not None:
        ca = CAIndex(certificate.backend.cas).find(issued.certificate)
        certificate.ca_id = ca.id if ca is not None else None
    serial = issued.serial
    problem = None
    if certificate.csr_pem is not None and not _same_key(certificate.csr_pem, issued.certificate):
        problem = "the CA returned a certificate for another key"
    elif not _claim_serial(session, certificate, serial):
        problem = f"the CA returned serial {serial}, which another request of this manager already holds"
    if problem is not None:
        _unusable(session, certificate, job, now, problem)
        return
    certificate.status = CertStatus.ISSUED.value
    certificate.serial = serial
    certificate.subject = issued.subject  # the CA's, which may differ from what the CSR asked for
    certificate.sans = issued.sans
    certificate.key_type = issued.key_type
    certificate.not_before = issued.not_before
    certificate.not_after = issued.not_after
    certificate.issued_at = now
    certificate.certificate_pem = issued.pem
    certificate.chain_pem = issued.chain_pem
    certificate.order_ref = certificate.order_ref or issued.order_ref  # the order it was collected by
    certificate.renewal_window = issued.renewal_window
    certificate.pending_reason = None
    certificate.error = None
    certificate.failures = 0
    certificate.next_attempt_at = None
    audit.record(
        session, now, _actor(job), "certificate.issued", target(certificate), serial=serial, job=job.id
    )


# Built once (every issued certificate asks); a certificate with no CA known needs IS NULL, which a
# bound parameter cannot say.
_SERIAL_HOLDER = select(Certificate.id, Certificate.source).where(
    Certificate.ca_id == bindparam("ca_id"),
    Certificate.serial == bindparam("serial"),
    Certificate.id != bindparam("certificate_id"),
)
_SERIAL_HOLDER_NO_CA = select(Certificate.id, Certificate.source).where(
    Certificate.ca_id.is_(None),
    Certificate.serial == bindparam("serial"),
    Certificate.id != bindparam("certificate_id"),
)


def _claim_serial(session: Session, certificate: Certificate, serial: str) -> bool:
    """Make room for (CA, serial). A scan may have imported this very certificate between its issue and
    this answer: the imported copy gives way to the request, which has the profile and the history."""
    # Two columns, without flushing first (a Core read on the session's connection): this certificate's
    # pending changes (its attempts) bear on no other row, and a flush here would write this row twice
    # in one answer (now, and when it is issued).
    parameters = {"serial": serial, "certificate_id": certificate.id}
    if certificate.ca_id is None:
        holder = _SERIAL_HOLDER_NO_CA
    else:
        holder, parameters["ca_id"] = _SERIAL_HOLDER, certificate.ca_id
    other = session.connection().execute(holder, parameters).first()
    if other is None:
        return True
    if other.source != Source.SCAN.value:
        return False
    session.delete(session.get_one(Certificate, other.id))
    session.flush()  # before this row takes the serial, or the unique constraint would see both
    return True


def _same_key(csr_pem: str, certificate: x509.Certificate) -> bool:
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    return public_keys_equal(csr.public_key(), certificate.public_key())


def _pending(
    session: Session, certificate: Certificate, job: Job, now: dt.datetime, policy: RetryPolicy
) -> None:
    try:
        body = PendingBody.model_validate(job.result or {})
    except ValidationError:
        _unusable(session, certificate, job, now, "the connector's pending answer is unusable")
        return
    certificate.status = CertStatus.PENDING.value
    certificate.order_ref = body.order_ref
    certificate.pending_reason = body.reason
    certificate.error = None
    certificate.failures = 0
    certificate.next_attempt_at = policy.collect_at(body.retry_after, certificate.attempts, now)


def _failed_try(
    session: Session, certificate: Certificate, job: Job, now: dt.datetime, policy: RetryPolicy
) -> None:
    error = _error_of(job)
    certificate.failures += 1
    decision = policy.decide(error, certificate.failures, now)
    if isinstance(decision, Fail):
        _fail(session, certificate, job, now, code=decision.code, message=decision.reason)
        return
    # Still Requested (or Pending): the scheduler makes the next job at `next_attempt_at`.
    certificate.error = _error(error, retryable=True)
    certificate.next_attempt_at = decision.at


def _unusable(session: Session, certificate: Certificate, job: Job, now: dt.datetime, message: str) -> None:
    _fail(session, certificate, job, now, code=JobErrorCode.INVALID_RESULT, message=message)


def _fail(
    session: Session, certificate: Certificate, job: Job, now: dt.datetime, *, code: str, message: str
) -> None:
    certificate.status = CertStatus.FAILED.value
    certificate.error = {"code": code, "message": message, "retryable": False}
    certificate.next_attempt_at = None
    audit.record(session, now, _actor(job), "certificate.failed", target(certificate), code=code, job=job.id)


# ---- revoke -----------------------------------------------------------------------------------------


def _apply_revocation(
    session: Session, certificate: Certificate, job: Job, now: dt.datetime, policy: RetryPolicy
) -> bool:
    if certificate.status != CertStatus.ISSUED.value or not revocation_in_progress(certificate):
        log.info("certificate %s is not being revoked; revoke job %s changes nothing", certificate.id, job.id)
        return False
    outcome = JobOutcome(job.outcome or JobOutcome.ERROR.value)
    body = _revoke_body(job) if outcome is JobOutcome.OK else None
    if body is not None and body.requested is not None:
        # Not revoked yet: someone at the CA must approve the request. The certificate stays Issued,
        # says so, and a revocation can be asked for again (it would find the CA's request).
        certificate.revocation_reason = None
        certificate.error = {
            "code": "revocation_requested",
            "message": f"the CA holds the revocation as a request awaiting approval there: {body.requested}",
            "retryable": False,
        }
        certificate.failures = 0
        certificate.next_attempt_at = None
        audit.record(
            session, now, _actor(job), "certificate.revocation_requested", target(certificate), job=job.id
        )
        return True
    if outcome is JobOutcome.OK:
        certificate.status = CertStatus.REVOKED.value
        certificate.revoked_at = now
        certificate.error = None
        certificate.failures = 0
        certificate.next_attempt_at = None
        if certificate.ca is not None:
            apply_crl(certificate.ca, body.crl_der_b64 if body is not None else None, now)
        audit.record(
            session,
            now,
            _actor(job),
            "certificate.revoked",
            target(certificate),
            reason=certificate.revocation_reason,
            job=job.id,
        )
        return True
    error = _error_of(job)
    if outcome is JobOutcome.PENDING:
        error = ErrorBody(
            code=JobErrorCode.INVALID_RESULT, message="the connector answered a revoke job with pending"
        )
    certificate.failures += 1
    decision = policy.decide(error, certificate.failures, now)
    if isinstance(decision, Fail):
        # The certificate stays Issued; the revocation can be asked for again.
        certificate.revocation_reason = None
        certificate.error = {"code": decision.code, "message": decision.reason, "retryable": False}
        certificate.failures = 0
        certificate.next_attempt_at = None
        audit.record(
            session,
            now,
            _actor(job),
            "certificate.revoke_failed",
            target(certificate),
            code=decision.code,
            job=job.id,
        )
    else:
        certificate.error = _error(error, retryable=True)
        certificate.next_attempt_at = decision.at
    return True


def _revoke_body(job: Job) -> RevokeBody | None:
    """A revoke's answer, read once; None when it is not one (the revocation then stands without a CRL)."""
    try:
        return RevokeBody.model_validate(job.result or {})
    except ValidationError:
        return None


# ---- helpers ----------------------------------------------------------------------------------------


def _error_of(job: Job) -> ErrorBody | None:
    try:
        return ErrorBody.model_validate(job.error) if job.error else None
    except ValidationError:
        return None


def _error(error: ErrorBody | None, *, retryable: bool) -> dict[str, object]:
    if error is None:
        return {
            "code": JobErrorCode.TRANSIENT.value,
            "message": "the try ended without an answer",
            "retryable": retryable,
        }
    return {"code": error.code, "message": error.message, "retryable": retryable}


def _actor(job: Job) -> str:
    # The poll storing this result has the connector's row in its session already: get() finds it
    # there, where job.connector would query again (the job was loaded with populate_existing, which
    # its lazy loads inherit).
    session = object_session(job)
    connector = session.get(Connector, job.connector_id) if session is not None else None
    return f"connector:{(connector or job.connector).name}"
