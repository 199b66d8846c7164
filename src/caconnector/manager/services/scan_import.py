"""Importing what a scan found at the CA: each certificate not yet known becomes an Issued certificate
with source `scan`.

Known means the same (CA, canonical serial), whoever put it there: an earlier scan, or the manager's
own request. The CA is the backend's CA whose certificate verifies the signature (the only CA when
that cannot be told). The insert itself skips a (CA, serial) that a concurrent import has just taken,
so two scans of one backend never fail each other's poll. The job's stored result becomes the counts,
not the certificates, which now live in their own rows.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import ValidationError
from sqlalchemy import or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, selectinload

from caconnector.manager import audit
from caconnector.manager.db.models import Certificate, Job, ManagedBackend, new_id
from caconnector.manager.services.issued import CAIndex, InvalidIssued, IssuedCertificate, read_issued_body
from caconnector.manager.services.states import CertStatus, Source
from caconnector.protocol.errors import JobErrorCode
from caconnector.protocol.messages import ErrorBody, JobOutcome, ScanBody

MAX_REPORTED_ERRORS = 5


def import_scan(session: Session, job: Job, now: dt.datetime) -> None:
    if job.outcome != JobOutcome.OK.value:
        return
    try:
        body = ScanBody.model_validate(job.result or {})
    except ValidationError as exc:
        error = ErrorBody(
            code=JobErrorCode.INVALID_RESULT,
            message=f"the connector's scan result is not valid ({exc.error_count()})",
        )
        job.outcome = JobOutcome.ERROR.value
        job.error = error.model_dump(mode="json")
        job.result = None
        return
    backend = session.scalar(
        select(ManagedBackend)
        .where(ManagedBackend.connector_id == job.connector_id, ManagedBackend.local_name == job.backend_name)
        .options(selectinload(ManagedBackend.cas))
    )
    counts: dict[str, Any] = {
        "found": len(body.certificates),
        "imported": 0,
        "already_known": 0,
        "invalid": 0,
    }
    errors: list[str] = []
    if backend is not None:
        known = _known(session, backend)
        cas = CAIndex(backend.cas)
        for item in body.certificates:
            try:
                issued = read_issued_body(item)
            except InvalidIssued as exc:
                counts["invalid"] += 1
                errors.append(str(exc))
                continue
            ca = cas.find(issued.certificate)
            key = (ca.id if ca is not None else None, issued.serial)
            if key in known or not _insert(session, backend, key[0], issued, now):
                counts["already_known"] += 1
            else:
                counts["imported"] += 1
            known.add(key)
        audit.record(
            session,
            now,
            f"connector:{job.connector.name}",
            "certificate.import",
            f"backend:{backend.id}",
            job=job.id,
            **counts,
        )
    job.result = {**counts, "errors": errors[:MAX_REPORTED_ERRORS]}


def _known(session: Session, backend: ManagedBackend) -> set[tuple[str | None, str]]:
    ca_ids = [ca.id for ca in backend.cas]
    rows = session.execute(
        select(Certificate.ca_id, Certificate.serial).where(
            or_(Certificate.backend_id == backend.id, Certificate.ca_id.in_(ca_ids)),
            Certificate.serial.is_not(None),
        )
    )
    return {(ca_id, serial) for ca_id, serial in rows if serial is not None}


def _insert(
    session: Session, backend: ManagedBackend, ca_id: str | None, issued: IssuedCertificate, now: dt.datetime
) -> bool:
    """Insert unless (CA, serial) is taken; True when inserted."""
    values = {
        "id": new_id(),
        "backend_id": backend.id,
        "ca_id": ca_id,
        "status": CertStatus.ISSUED.value,
        "source": Source.SCAN.value,
        "subject": issued.subject,
        "sans": issued.sans,
        "key_type": issued.key_type,
        "term_days": (issued.not_after - issued.not_before).days,
        "serial": issued.serial,
        "not_before": issued.not_before,
        "not_after": issued.not_after,
        "issued_at": issued.not_before,  # the CA's own record of when it issued is not on the wire
        "certificate_pem": issued.pem,
        "chain_pem": issued.chain_pem,
        "order_ref": issued.order_ref,
        "attempts": 0,
        "failures": 0,
        "created_at": now,
        "updated_at": now,
    }
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(Certificate)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["ca_id", "serial"])
        .returning(Certificate.id)
    )
    return session.scalar(statement) is not None
