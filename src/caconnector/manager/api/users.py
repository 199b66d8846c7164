"""`/api/v1/users` and `/api/v1/apikeys`: who may use the API, with which keys; admin only.

A key is shown by its id and public prefix, never the key or its hash (the key is shown once, when it
is made: `ca-manager apikey create`). Revoking is audited and takes effect at the next request."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from caconnector.manager.api.params import PathKey, line_query
from caconnector.manager.auth import Admin
from caconnector.manager.problems import not_found
from caconnector.manager.runtime import runtime_of
from caconnector.manager.services import users as service
from caconnector.manager.services.errors import NotFound

router = APIRouter(tags=["users"])


class UserOut(BaseModel):
    id: str
    username: str
    role: str = Field(description="admin | operator | auditor")
    disabled: bool
    created_at: dt.datetime


class ApiKeyOut(BaseModel):
    id: str
    prefix: str = Field(description="the key's public part, after cak_ (the rest is never shown again)")
    username: str
    role: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


class Users(BaseModel):
    items: list[UserOut]


class ApiKeys(BaseModel):
    items: list[ApiKeyOut]


@router.get("/users", response_model=Users)
def list_users(request: Request, _caller: Admin) -> Users:
    """Every user, by name."""
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        return Users(items=[UserOut(**service.user_view(u)) for u in service.list_users(session)])


@router.get("/apikeys", response_model=ApiKeys, responses={404: {"description": "no user of that name"}})
def list_api_keys(
    request: Request,
    _caller: Admin,
    username: Annotated[str | None, line_query(128, "only this user's keys")] = None,
    revoked: Annotated[bool, Query(description="revoked keys too")] = False,
) -> ApiKeys:
    """Newest first."""
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        owner = None
        if username is not None:
            owner = service.find_user(session, username)
            if owner is None:
                raise not_found("user", username)
        rows = service.list_api_keys(session, owner, revoked=revoked)
        return ApiKeys(items=[ApiKeyOut(**service.api_key_view(k)) for k in rows])


@router.delete("/apikeys/{key_id}", response_model=ApiKeyOut)
def revoke_api_key(key_id: PathKey, request: Request, caller: Admin) -> ApiKeyOut:
    """Revoke a key: refused from the next request on. Revoking it again answers the same."""
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        try:
            row = service.find_api_key(session, key_id=key_id)
        except NotFound:  # the API names the key as the path did, not as the CLI hints
            raise not_found("API key", key_id) from None
        service.revoke_api_key(session, row, runtime.now(), actor=caller.actor)
        return ApiKeyOut(**service.api_key_view(row))
