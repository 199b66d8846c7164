"""`/api/v1/connectors`: add, list, show, edit, restore and delete connectors.

Installation tokens are for administrators only: an auditor reading a Pending connector must not be
able to register a connector of their own with its token.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from caconnector.manager.api.pagination import (
    DEFAULT_LIMIT,
    Cursor,
    Limit,
    Page,
)
from caconnector.manager.api.params import CommentsIn, NameIn, PathKey, line_query
from caconnector.manager.auth import Admin, Principal, Reader
from caconnector.manager.db.models import Connector
from caconnector.manager.roles import Role
from caconnector.manager.runtime import runtime_of
from caconnector.manager.services import connectors as service
from caconnector.manager.services.downloads import package_url
from caconnector.manager.services.status import ConnectorStatus

router = APIRouter(prefix="/connectors", tags=["connectors"])


class ConnectorCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: NameIn = Field(description="1-128 characters: letters, digits, space, . _ -")
    comments: CommentsIn = Field(default="", description="free text for the administrators")


class ConnectorUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: NameIn | None = Field(default=None, description="the new name")
    comments: CommentsIn | None = Field(default=None, description="the new comments")


class ConnectorCreated(BaseModel):
    id: str
    name: str
    status: ConnectorStatus
    token: str = Field(description="the installation token: single use, shown to administrators only")
    token_expires_at: dt.datetime | None
    install_command: str = Field(description="what to run on the connector's host")
    package_url: str | None = Field(
        default=None, description="where to download the connector package (/downloads), when served"
    )


class ConnectorToken(BaseModel):
    token: str = Field(description="a new single-use token; the connector's key works until it is used")
    token_expires_at: dt.datetime | None
    install_command: str


class ConnectorOut(BaseModel):
    id: str
    name: str
    comments: str
    status: ConnectorStatus
    version: str | None
    outdated: bool | None = Field(
        default=None,
        description="older than the newest connector package this manager serves (/downloads); null: "
        "unknown (never registered, or no package served)",
    )
    hostname: str | None
    last_seen: dt.datetime | None
    registered_at: dt.datetime | None
    created_at: dt.datetime
    token_expires_at: dt.datetime | None
    # Only while the token can still be used, and only for administrators; left out otherwise.
    token: str | None = None
    install_command: str | None = None
    package_url: str | None = Field(
        default=None, description="with the token: where to download the connector package (/downloads)"
    )


@router.post("", status_code=201, response_model=ConnectorCreated)
def add_connector(body: ConnectorCreate, request: Request, caller: Admin) -> ConnectorCreated:
    runtime = runtime_of(request)
    now = runtime.now()
    with runtime.sessions.begin() as session:
        connector, token = service.add_connector(
            session,
            body.name,
            body.comments,
            now=now,
            settings=runtime.settings,
            box=runtime.box,
            actor=caller.actor,
        )
        return ConnectorCreated(
            id=connector.id,
            name=connector.name,
            status=ConnectorStatus.PENDING,
            token=token,
            token_expires_at=connector.token_expires_at,
            install_command=service.install_command(token, runtime.settings),
            package_url=package_url(runtime.settings),
        )


@router.get("", response_model=Page[ConnectorOut], response_model_exclude_unset=True)
def list_connectors(
    request: Request,
    _caller: Reader,
    *,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    status: Annotated[ConnectorStatus | None, Query(description="only connectors in this status")] = None,
    name: Annotated[str | None, line_query(128, "only names containing this")] = None,
) -> Page[ConnectorOut]:
    runtime = runtime_of(request)
    now = runtime.now()
    with runtime.sessions.begin() as session:
        page = service.list_connectors(
            session, now, runtime.settings, status=status, name_contains=name, limit=limit, cursor=cursor
        )
        items = [
            ConnectorOut.model_validate(
                service.connector_view(c, now, runtime.settings, runtime.box, with_token=False)
            )
            for c in page.items
        ]
    return Page[ConnectorOut](items=items, next_cursor=page.next_cursor)


# exclude_unset: `token` and `install_command` are left out, rather than null, when not shown.
@router.get("/{connector_id}", response_model=ConnectorOut, response_model_exclude_unset=True)
def get_connector(connector_id: PathKey, request: Request, caller: Reader) -> ConnectorOut:
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        connector = service.get_connector(session, connector_id)
        return _view(request, connector, caller)


@router.patch("/{connector_id}", response_model=ConnectorOut, response_model_exclude_unset=True)
def update_connector(
    connector_id: PathKey, body: ConnectorUpdate, request: Request, caller: Admin
) -> ConnectorOut:
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        connector = service.get_connector(session, connector_id)
        service.update_connector(
            session, connector, name=body.name, comments=body.comments, now=runtime.now(), actor=caller.actor
        )
        return _view(request, connector, caller)


@router.post("/{connector_id}/restore", response_model=ConnectorToken)
def restore_connector(connector_id: PathKey, request: Request, caller: Admin) -> ConnectorToken:
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        connector = service.get_connector(session, connector_id)
        token = service.restore_connector(
            session,
            connector,
            now=runtime.now(),
            settings=runtime.settings,
            box=runtime.box,
            actor=caller.actor,
        )
        return ConnectorToken(
            token=token,
            token_expires_at=connector.token_expires_at,
            install_command=service.token_command(connector, token, runtime.settings),
        )


@router.delete("/{connector_id}", status_code=204, response_class=Response)
def delete_connector(connector_id: PathKey, request: Request, caller: Admin) -> Response:
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        connector = service.get_connector(session, connector_id)
        service.delete_connector(session, connector, now=runtime.now(), actor=caller.actor)
    return Response(status_code=204)


def _view(request: Request, connector: Connector, caller: Principal) -> ConnectorOut:
    runtime = runtime_of(request)
    view = service.connector_view(
        connector, runtime.now(), runtime.settings, runtime.box, with_token=caller.role is Role.ADMIN
    )
    return ConnectorOut.model_validate(view)
