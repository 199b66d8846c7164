"""Certificates, the operator's side besides enrolling: find one, ask for its revocation, say why it
is where it is, and read the stored certificate back."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from caconnector.manager import audit
from caconnector.manager.db.models import Certificate, Job, ManagedBackend
from caconnector.manager.services import jobs_factory
from caconnector.manager.services.errors import Conflict, Invalid, NotFound
from caconnector.manager.services.pagination import Rows, paginate
from caconnector.manager.services.states import (
    CertStatus,
    revocation_in_progress,
    status_at,
    status_is,
    target,
)
from caconnector.pki.revocation import RevocationReason
from caconnector.pki.serial import canonical_serial


def get_certificate(session: Session, certificate_id: str) -> Certificate:
    certificate = session.get(Certificate, certificate_id)
    if certificate is None:
        raise NotFound(f"no certificate with id {certificate_id!r}")
    return certificate


def request_revocation(
    session: Session, certificate: Certificate, reason_text: str, now: dt.datetime, actor: str
) -> Job:
    """A revoke job for an Issued certificate. The reason is kept on the certificate from now on: it is
    what marks the revocation as asked for, and what a retry sends again."""
    try:
        reason = RevocationReason.parse(reason_text)
    except ValueError as exc:
        raise Invalid(str(exc), code="invalid_reason") from None
    status = status_at(certificate, now)
    if status is not CertStatus.ISSUED:
        raise Conflict(
            f"certificate {certificate.id} is {status.value}; only an Issued certificate can be revoked"
        )
    if revocation_in_progress(certificate):
        raise Conflict(
            f"certificate {certificate.id} is already being revoked ({certificate.revocation_reason})"
        )
    backend = certificate.backend
    if backend is None or certificate.serial is None:
        raise Conflict(f"certificate {certificate.id} has no backend to revoke it through any more")
    certificate.revocation_reason = reason.value
    certificate.error = None
    certificate.failures = 0
    certificate.next_attempt_at = None
    certificate.updated_at = now
    job = jobs_factory.revoke(session, backend, certificate, certificate.serial, now)
    audit.record(
        session, now, actor, "certificate.revoke", target(certificate), reason=reason.value, job=job.id
    )
    return job


def reason_of(certificate: Certificate, now: dt.datetime) -> str | None:
    """Why the certificate is where it is, in words, for anything that is not plainly done."""
    status = status_at(certificate, now)
    error = certificate.error or {}
    if status is CertStatus.PENDING:
        return certificate.pending_reason
    if status is CertStatus.FAILED:
        return str(error.get("message", "failed"))
    if status is CertStatus.REQUESTED:
        if error:
            return f"{error.get('message')}; trying again"
        connector = certificate.backend.connector.name if certificate.backend is not None else "?"
        return f"waiting for connector {connector} to take the request"
    if status is CertStatus.ISSUED and revocation_in_progress(certificate):
        return f"being revoked ({certificate.revocation_reason})"
    return None


def stored_certificates(certificate: Certificate) -> tuple[x509.Certificate, list[x509.Certificate]]:
    """The leaf and its chain; Conflict when nothing was issued."""
    if certificate.certificate_pem is None:
        raise Conflict(
            f"certificate {certificate.id} is {certificate.status}: there is no certificate to download yet",
            code="not_issued",
        )
    leaf = x509.load_pem_x509_certificate(certificate.certificate_pem.encode())
    chain = [x509.load_pem_x509_certificate(pem.encode()) for pem in certificate.chain_pem]
    return leaf, chain


def list_certificates(
    session: Session,
    now: dt.datetime,
    *,
    status: CertStatus | None = None,
    profile_id: str | None = None,
    backend_id: str | None = None,
    serial: str | None = None,
    expiring_before: dt.datetime | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Rows[Certificate]:
    """Newest first; `serial` in any spelling (Invalid when it is not a serial); `expiring_before`: only
    certificates whose validity ends by then (the web UI's "expiring within N days")."""
    query = (
        select(Certificate)
        # reason_of names a Requested certificate's connector: loaded with the page, not row by row.
        .options(selectinload(Certificate.backend).selectinload(ManagedBackend.connector))
    )
    if status is not None:
        query = query.where(status_is(status, now))
    if profile_id is not None:
        query = query.where(Certificate.profile_id == profile_id)
    if backend_id is not None:
        query = query.where(Certificate.backend_id == backend_id)
    if serial is not None:
        try:
            query = query.where(Certificate.serial == canonical_serial(serial))
        except ValueError as exc:
            raise Invalid(f"serial: {exc}") from None
    if expiring_before is not None:
        query = query.where(Certificate.not_after.is_not(None), Certificate.not_after <= expiring_before)
    order = [Certificate.created_at, Certificate.id]
    return paginate(session, query, order, limit, cursor, descending=True)
