"""`/api/v1/backends`: the CA backends the connectors report, with the CAs behind them.

Each appears by itself once its connector reports it (no linking step); administrators may rename or
disable one, and anyone who may operate can ask its connector to check it again.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from caconnector.manager.api.cas import CAOut
from caconnector.manager.api.jobs import JobOut
from caconnector.manager.api.pagination import (
    DEFAULT_LIMIT,
    Cursor,
    Limit,
    Page,
)
from caconnector.manager.api.params import LabelIn, PathKey, line_query
from caconnector.manager.auth import (
    Admin,
    Operator,
    Reader,
)
from caconnector.manager.db.models import ManagedBackend
from caconnector.manager.runtime import Runtime, runtime_of
from caconnector.manager.services import backends as service

router = APIRouter(prefix="/backends", tags=["backends"])


class BackendOut(BaseModel):
    id: str
    name: str = Field(description="the display name; an administrator may change it")
    connector: str = Field(description="the connector's id")
    connector_name: str
    local_backend: str = Field(description="the backend's name on its connector")
    type: str
    status: str = Field(description="Available | Offline (Offline whenever its connector is not Connected)")
    error: str | None
    cas: list[CAOut]
    templates: list[Any]
    products: list[Any] = Field(description="what the CA lets one order: {id, name, type, ca_ids}")
    organizations: list[Any] = Field(
        description="{id, name, status, validated_until}: status `validated` when the CA issues for it"
    )
    disabled: bool
    present: bool = Field(description="false once the connector stops reporting it")
    reported_at: dt.datetime
    checked_at: dt.datetime | None


class BackendUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: LabelIn | None = Field(default=None, description="the new display name")
    disabled: bool | None = Field(default=None, description="a disabled backend takes no new requests")


class CheckStarted(BaseModel):
    job: JobOut


class ScanStarted(BaseModel):
    job: JobOut = Field(description="follow it at /jobs/{id}: once done, its result holds the counts")


def _view(runtime: Runtime, backend: ManagedBackend) -> BackendOut:
    return BackendOut(
        id=backend.id,
        name=backend.name,
        connector=backend.connector_id,
        connector_name=backend.connector.name,
        local_backend=backend.local_name,
        type=backend.type,
        status=service.backend_status(backend, runtime.now(), runtime.settings),
        error=backend.error,
        cas=[CAOut.of(ca) for ca in sorted(backend.cas, key=lambda ca: (ca.name, ca.id))],
        templates=backend.templates,
        products=backend.products,
        organizations=backend.organizations,
        disabled=backend.disabled,
        present=backend.present,
        reported_at=backend.reported_at,
        checked_at=backend.checked_at,
    )


@router.get("", response_model=Page[BackendOut])
def list_backends(
    request: Request,
    _caller: Reader,
    *,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    connector: Annotated[str | None, line_query(32, "only this connector's (id)")] = None,
    backend_type: Annotated[str | None, line_query(32, "only this backend type", alias="type")] = None,
) -> Page[BackendOut]:
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        page = service.list_backends(
            session, connector_id=connector, backend_type=backend_type, limit=limit, cursor=cursor
        )
        items = [_view(runtime, row) for row in page.items]
    return Page[BackendOut](items=items, next_cursor=page.next_cursor)


@router.get("/{backend_id}", response_model=BackendOut)
def get_backend(backend_id: PathKey, request: Request, _caller: Reader) -> BackendOut:
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        return _view(runtime, service.get_backend(session, backend_id))


@router.patch("/{backend_id}", response_model=BackendOut)
def update_backend(backend_id: PathKey, body: BackendUpdate, request: Request, caller: Admin) -> BackendOut:
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        backend = service.get_backend(session, backend_id)
        service.update_backend(
            session, backend, runtime.now(), caller.actor, name=body.name, disabled=body.disabled
        )
        return _view(runtime, backend)


@router.post("/{backend_id}/check", status_code=202, response_model=CheckStarted)
def check_backend(backend_id: PathKey, request: Request, caller: Operator) -> CheckStarted:
    """Ask the connector to check the backend again: status, CAs, templates (and CRLs) are refreshed."""
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        backend = service.get_backend(session, backend_id)
        job = service.request_check(session, backend, runtime.now(), caller.actor)
        return CheckStarted(job=JobOut.of(job))


@router.post("/{backend_id}/scan", status_code=202, response_model=ScanStarted)
def scan_backend(backend_id: PathKey, request: Request, caller: Operator) -> ScanStarted:
    """Import what the backend's CA has issued: each certificate not known yet becomes an Issued
    certificate with source `scan`."""
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        backend = service.get_backend(session, backend_id)
        return ScanStarted(job=JobOut.of(service.request_scan(session, backend, runtime.now(), caller.actor)))
