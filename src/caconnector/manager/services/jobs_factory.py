"""Every job the manager queues is made here, one function per kind, from typed arguments: the payload
a kind sends is written in one place, so two callers cannot build the same kind differently.

`dispatch.create_job` stores and announces a job; this module decides what goes in it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from caconnector.manager.db.models import Certificate, Job, ManagedBackend
from caconnector.manager.services.dispatch import create_job
from caconnector.protocol.jobs import CheckPayload
from caconnector.protocol.messages import CollectPayload, EnrollPayload, JobKind, RevokePayload, ScanPayload


def enroll(
    session: Session,
    backend: ManagedBackend,
    payload: EnrollPayload,
    *,
    certificate_id: str,
    now: dt.datetime,
) -> Job:
    return _queue(
        session, backend, JobKind.ENROLL, payload.model_dump(mode="json"), now, certificate_id=certificate_id
    )


def enroll_again(
    session: Session,
    backend: ManagedBackend,
    previous: dict[str, Any],
    *,
    certificate_id: str,
    now: dt.datetime,
) -> Job:
    """A retry of an enroll: the stored payload of the last try, sent as it was (same request id, so
    the CA sees the same request), not rebuilt from what the profile says today."""
    return _queue(session, backend, JobKind.ENROLL, previous, now, certificate_id=certificate_id)


def collect(
    session: Session, backend: ManagedBackend, certificate: Certificate, order_ref: str, now: dt.datetime
) -> Job:
    payload = CollectPayload(order_ref=order_ref, request_id=certificate.id)
    return _queue(
        session, backend, JobKind.COLLECT, payload.model_dump(mode="json"), now, certificate_id=certificate.id
    )


def revoke(
    session: Session, backend: ManagedBackend, certificate: Certificate, serial: str, now: dt.datetime
) -> Job:
    """Revoke `certificate` for the reason recorded on it (what a retry sends again, too)."""
    payload = RevokePayload(
        serial=serial,
        reason=certificate.revocation_reason or "unspecified",
        ca=certificate.ca.ca_ref if certificate.ca is not None else None,
    )
    return _queue(
        session, backend, JobKind.REVOKE, payload.model_dump(mode="json"), now, certificate_id=certificate.id
    )


def check(session: Session, backend: ManagedBackend, now: dt.datetime) -> Job:
    return _queue(session, backend, JobKind.CHECK, CheckPayload().model_dump(mode="json"), now)


def scan(session: Session, backend: ManagedBackend, now: dt.datetime) -> Job:
    return _queue(session, backend, JobKind.SCAN, ScanPayload().model_dump(mode="json"), now)


def _queue(
    session: Session,
    backend: ManagedBackend,
    kind: JobKind,
    payload: dict[str, Any],
    now: dt.datetime,
    *,
    certificate_id: str | None = None,
) -> Job:
    return create_job(
        session,
        backend.connector_id,
        kind,
        backend_name=backend.local_name,
        payload=payload,
        now=now,
        certificate_id=certificate_id,
    )
