"""CA backends, the administrator's side: what status to show, rename, disable, ask for a check.

The rows come from the connectors' reports (services.inventory); only `name` and `disabled` are the
administrator's.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from caconnector.manager import audit
from caconnector.manager.db.models import Job, ManagedBackend
from caconnector.manager.services import jobs_factory
from caconnector.manager.services.errors import Conflict, Invalid, NotFound
from caconnector.manager.services.pagination import Rows, paginate
from caconnector.manager.services.status import ConnectorStatus, connector_status
from caconnector.manager.settings import Settings

OFFLINE = "Offline"
MAX_NAME = 200


def target(backend: ManagedBackend) -> str:
    return f"backend:{backend.id}"


def get_backend(session: Session, backend_id: str) -> ManagedBackend:
    backend = session.get(ManagedBackend, backend_id)
    if backend is None:
        raise NotFound(f"no backend with id {backend_id!r}")
    return backend


def backend_status(backend: ManagedBackend, now: dt.datetime, settings: Settings) -> str:
    """What the connector last reported, while the connector is there to vouch for it: a backend whose
    connector is not Connected, or that its connector no longer reports, is Offline."""
    if not backend.present:
        return OFFLINE
    if connector_status(backend.connector, now, settings) is not ConnectorStatus.CONNECTED:
        return OFFLINE
    return backend.reported_status


def update_backend(
    session: Session,
    backend: ManagedBackend,
    now: dt.datetime,
    actor: str,
    *,
    name: str | None = None,
    disabled: bool | None = None,
) -> ManagedBackend:
    changes: dict[str, object] = {}
    if name is not None and name != backend.name:
        if not name.strip() or name != name.strip() or len(name) > MAX_NAME:
            raise Invalid(
                f"invalid backend name {name!r}: 1-{MAX_NAME} characters, no leading or trailing space"
            )
        changes["name"] = {"from": backend.name, "to": name}
        backend.name = name
    if disabled is not None and disabled != backend.disabled:
        changes["disabled"] = disabled
        backend.disabled = disabled
    if changes:
        session.flush()
        audit.record(session, now, actor, "backend.update", target(backend), **changes)
    return backend


def _ensure_present(backend: ManagedBackend, what: str) -> None:
    if not backend.present:
        raise Conflict(
            f"connector {backend.connector.name!r} no longer reports backend {backend.local_name!r}; "
            f"nothing to {what}"
        )


def request_check(session: Session, backend: ManagedBackend, now: dt.datetime, actor: str) -> Job:
    """A `check` job for the backend's connector; its result updates the backend's status and CAs."""
    _ensure_present(backend, "check")
    job = jobs_factory.check(session, backend, now)
    audit.record(session, now, actor, "backend.check", target(backend), job=job.id)
    return job


def request_scan(session: Session, backend: ManagedBackend, now: dt.datetime, actor: str) -> Job:
    """A `scan` job: its result imports what the CA issued that the manager does not know yet (see
    services.scan_import); the job's result then holds the counts."""
    _ensure_present(backend, "scan")
    job = jobs_factory.scan(session, backend, now)
    audit.record(session, now, actor, "backend.scan", target(backend), job=job.id)
    return job


def list_backends(
    session: Session,
    *,
    connector_id: str | None = None,
    backend_type: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Rows[ManagedBackend]:
    """By name; names need not be unique (two connectors may each have a "corp-aws"): the id breaks ties."""
    query = select(ManagedBackend).options(
        selectinload(ManagedBackend.cas), selectinload(ManagedBackend.connector)
    )
    if connector_id is not None:
        query = query.where(ManagedBackend.connector_id == connector_id)
    if backend_type is not None:
        query = query.where(ManagedBackend.type == backend_type)
    return paginate(session, query, [ManagedBackend.name, ManagedBackend.id], limit, cursor)
