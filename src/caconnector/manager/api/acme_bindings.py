"""`/api/v1/acme-bindings`: the ACME server's External Account Bindings; `/api/v1/acme-orders`: the orders
ACME clients placed, each with its account and certificate; and `/api/v1/acme-profiles/{id}`:
whether a profile's ACME directory validates names outside a binding's domains. Administrators make
them; anyone may read them. The HMAC key is in the creation's answer only."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from caconnector.manager.acme import orders
from caconnector.manager.api.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from caconnector.manager.api.params import CommentsIn, NameIn, PathKey
from caconnector.manager.auth import Admin, Reader
from caconnector.manager.db.models import AcmeOrder
from caconnector.manager.runtime import runtime_of
from caconnector.manager.services import acme_bindings as service
from caconnector.manager.services.profiles import find_profile
from caconnector.protocol.text import LINE_PATTERN, line

DNS_NAME_MAX = 253

router = APIRouter(tags=["acme"])


class BindingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    profile: NameIn = Field(max_length=128, description="the profile's id or name")
    domains: list[Annotated[str, line(DNS_NAME_MAX, min_length=1)]] = Field(
        min_length=1, max_length=service.MAX_DOMAINS, description="exact names and *.example.com patterns"
    )
    comments: CommentsIn = Field(default="", description="free text for the administrators")


class BindingOut(BaseModel):
    id: str
    kid: str
    profile: str = Field(description="the profile's name")
    domains: list[str]
    directory_url: str
    comments: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None

    @classmethod
    def of(cls, view: dict[str, Any]) -> BindingOut:
        return cls(**view)


class NewBindingOut(BindingOut):
    hmac_key: str = Field(description="base64url; shown once, in this answer only")


class AcmeProfileIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    real_validation: bool = Field(description="validate names outside a binding's domains (http-01, dns-01)")


class AcmeProfileOut(BaseModel):
    profile: str
    real_validation: bool


class AcmeOrderOut(BaseModel):
    id: str
    account: str = Field(description="the ACME account's id (the audit log's actor acme:<id>)")
    binding: str = Field(description="the kid of the account's binding")
    profile: str
    status: str = Field(description="pending | ready | processing | valid | invalid")
    identifiers: list[str]
    certificate: str | None = Field(description="the certificate's id, once finalized")
    error: dict[str, Any] | None
    created_at: dt.datetime
    expires_at: dt.datetime

    @classmethod
    def of(cls, order: AcmeOrder) -> AcmeOrderOut:
        binding = order.account.binding
        return cls(
            id=order.id,
            account=order.account_id,
            binding=binding.kid,
            profile=binding.profile.name,
            status=order.status,
            identifiers=[str(i["value"]) for i in order.identifiers],
            certificate=order.certificate_id,
            error=order.error,
            created_at=order.created_at,
            expires_at=order.expires_at,
        )


@router.get("/acme-orders", response_model=Page[AcmeOrderOut])
def list_acme_orders(
    request: Request,
    _caller: Reader,
    *,
    certificate: Annotated[str | None, Query(max_length=64, pattern=LINE_PATTERN)] = None,
    account: Annotated[str | None, Query(max_length=64, pattern=LINE_PATTERN)] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[AcmeOrderOut]:
    """The orders ACME clients placed, with the account and the certificate each made."""
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        page = orders.list_orders(
            session, runtime.now(), certificate_id=certificate, account_id=account, limit=limit, cursor=cursor
        )
        return Page[AcmeOrderOut](
            items=[AcmeOrderOut.of(o) for o in page.items], next_cursor=page.next_cursor
        )


@router.post("/acme-bindings", status_code=201, response_model=NewBindingOut)
def create_binding(body: BindingIn, request: Request, caller: Admin) -> NewBindingOut:
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        profile = find_profile(session, body.profile)
        made = service.create_binding(
            session, profile, list(body.domains), box=runtime.box, now=runtime.now(), actor=caller.actor,
            comments=body.comments,
        )  # fmt: skip
        view = service.binding_view(made.binding, runtime.settings.public_url)
        return NewBindingOut(**view, hmac_key=made.hmac_key)


@router.get("/acme-bindings", response_model=Page[BindingOut])
def list_bindings(
    request: Request, _caller: Reader, *, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> Page[BindingOut]:
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        page = service.list_bindings(session, limit=limit, cursor=cursor)
        url = runtime.settings.public_url
        items = [BindingOut.of(service.binding_view(row, url)) for row in page.items]
        return Page[BindingOut](items=items, next_cursor=page.next_cursor)


@router.post("/acme-bindings/{binding_id}/revoke", response_model=BindingOut)
def revoke_binding(binding_id: PathKey, request: Request, caller: Admin) -> BindingOut:
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        binding = service.find_binding(session, binding_id)
        service.revoke_binding(session, binding, now=runtime.now(), actor=caller.actor)
        return BindingOut.of(service.binding_view(binding, runtime.settings.public_url))


@router.put("/acme-profiles/{profile_id}", response_model=AcmeProfileOut)
def set_acme_profile(
    profile_id: PathKey, body: AcmeProfileIn, request: Request, caller: Admin
) -> AcmeProfileOut:
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        profile = find_profile(session, profile_id)
        service.set_real_validation(
            session, profile, body.real_validation, now=runtime.now(), actor=caller.actor
        )
        return AcmeProfileOut(profile=profile.name, real_validation=body.real_validation)
