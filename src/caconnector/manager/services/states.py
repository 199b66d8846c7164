"""A certificate's status, stored and derived, in one place; and its name in the audit log."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import ColumnElement, and_, or_

from caconnector.manager.db.models import Certificate


class CertStatus(enum.StrEnum):
    REQUESTED = "Requested"  # waiting for a connector to take the job, or for a retry
    PENDING = "Pending"  # the CA is waiting (approval, DCV, organization validation)
    ISSUED = "Issued"
    FAILED = "Failed"  # with a reason, and whether a retry can help
    REVOKED = "Revoked"
    EXPIRED = "Expired"  # never stored: an Issued certificate past its not_after


class Source(enum.StrEnum):
    ENROLL = "enroll"  # requested through the manager
    SCAN = "scan"  # found at the CA by a scan


IN_FLIGHT = (CertStatus.REQUESTED.value, CertStatus.PENDING.value)


def status_at(certificate: Certificate, now: dt.datetime) -> CertStatus:
    status = CertStatus(certificate.status)
    if status is CertStatus.ISSUED and certificate.not_after is not None and certificate.not_after <= now:
        return CertStatus.EXPIRED
    return status


def status_is(status: CertStatus, now: dt.datetime) -> ColumnElement[bool]:
    """The SQL condition for certificates whose status, derived at `now`, is `status`."""
    issued = Certificate.status == CertStatus.ISSUED.value
    if status is CertStatus.EXPIRED:
        return and_(issued, Certificate.not_after <= now)
    if status is CertStatus.ISSUED:
        return and_(issued, or_(Certificate.not_after.is_(None), Certificate.not_after > now))
    return Certificate.status == status.value


def revocation_in_progress(certificate: Certificate) -> bool:
    return certificate.revocation_reason is not None and certificate.revoked_at is None


def settled(certificate: Certificate) -> bool:
    """Nothing more will happen to it without someone asking: what a request's `wait` waits for."""
    return certificate.status not in IN_FLIGHT and not revocation_in_progress(certificate)


def target(certificate: Certificate) -> str:
    """The audit log's name for a certificate."""
    return f"certificate:{certificate.id}"
