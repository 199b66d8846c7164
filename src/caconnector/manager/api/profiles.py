"""`/api/v1/profiles`: what may be requested through which backend. Administrators change them; anyone
may read them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from caconnector.manager.api.pagination import (
    DEFAULT_LIMIT,
    Cursor,
    Limit,
    Page,
)
from caconnector.manager.api.params import IdIn, LabelIn, NameIn, PathKey
from caconnector.manager.auth import Admin, Reader
from caconnector.manager.db.models import Profile
from caconnector.manager.runtime import runtime_of
from caconnector.manager.services import profiles as service
from caconnector.manager.services.profiles import CertType, ProfileFields
from caconnector.pki.keys import KEY_TYPES
from caconnector.protocol.text import Short

router = APIRouter(prefix="/profiles", tags=["profiles"])


_KEY_TYPES = f"key types the profile accepts: {', '.join(KEY_TYPES)}"


class ProfileIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: NameIn = Field(max_length=128, description="1-128 characters: letters, digits, space, . _ -")
    backend: IdIn = Field(description="the backend's id")
    ca: IdIn | None = Field(
        default=None, description="the CA's id; may be left out when the backend has one CA"
    )
    template: LabelIn | None = Field(default=None, description="the CA's template (AD CS, the local CA)")
    product: LabelIn | None = Field(default=None, description="the CA's product (DigiCert, Entrust)")
    organization: LabelIn | None = Field(
        default=None, description="the organization, by name or id, where the CA validates them"
    )
    cert_type: CertType = "server"
    terms_days: list[int] = Field(
        min_length=1, max_length=32, description="allowed terms; the first is the default"
    )
    key_types: list[Short] = Field(min_length=1, max_length=len(KEY_TYPES), description=_KEY_TYPES)


class ProfileUpdate(BaseModel):
    """Only the fields sent change; send null to clear ca, template, product or organization."""

    model_config = ConfigDict(extra="forbid")

    name: NameIn | None = Field(default=None, max_length=128)
    backend: IdIn | None = None
    ca: IdIn | None = None
    template: LabelIn | None = None
    product: LabelIn | None = None
    organization: LabelIn | None = None
    cert_type: CertType | None = None
    terms_days: list[int] | None = Field(default=None, min_length=1, max_length=32)
    key_types: list[Short] | None = Field(default=None, min_length=1, max_length=len(KEY_TYPES))


class ProfileOut(BaseModel):
    id: str
    name: str
    backend: str = Field(description="the backend's id")
    ca: str | None = Field(description="the CA's id; null: the backend's only CA")
    template: str | None
    product: str | None
    organization: str | None
    cert_type: str
    terms_days: list[int]
    key_types: list[str]
    created_at: dt.datetime

    @classmethod
    def of(cls, profile: Profile) -> ProfileOut:
        return cls(
            id=profile.id,
            name=profile.name,
            backend=profile.backend_id,
            ca=profile.ca_id,
            template=profile.template,
            product=profile.product,
            organization=profile.organization,
            cert_type=profile.cert_type,
            terms_days=profile.terms_days,
            key_types=profile.key_types,
            created_at=profile.created_at,
        )


# API field name -> ProfileFields field name, where they differ.
_RENAMED = {"backend": "backend_id", "ca": "ca_id"}
_NULLABLE = {"ca", "template", "product", "organization"}


def _changes(body: ProfileUpdate) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for name in body.model_fields_set:
        value = getattr(body, name)
        if value is None and name not in _NULLABLE:
            continue  # null for a required field means "unchanged"
        changes[_RENAMED.get(name, name)] = tuple(value) if isinstance(value, list) else value
    return changes


@router.post("", status_code=201, response_model=ProfileOut)
def create_profile(body: ProfileIn, request: Request, caller: Admin) -> ProfileOut:
    runtime = runtime_of(request)
    fields = ProfileFields(
        name=body.name,
        backend_id=body.backend,
        ca_id=body.ca,
        cert_type=body.cert_type,
        terms_days=tuple(body.terms_days),
        key_types=tuple(body.key_types),
        template=body.template,
        product=body.product,
        organization=body.organization,
    )
    with runtime.sessions.begin() as session:
        return ProfileOut.of(service.create_profile(session, fields, runtime.now(), caller.actor))


@router.get("", response_model=Page[ProfileOut])
def list_profiles(
    request: Request, _caller: Reader, *, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> Page[ProfileOut]:
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        page = service.list_profiles(session, limit=limit, cursor=cursor)
        return Page[ProfileOut](
            items=[ProfileOut.of(row) for row in page.items], next_cursor=page.next_cursor
        )


@router.get("/{profile_id}", response_model=ProfileOut)
def get_profile(profile_id: PathKey, request: Request, _caller: Reader) -> ProfileOut:
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        return ProfileOut.of(service.get_profile(session, profile_id))


@router.patch("/{profile_id}", response_model=ProfileOut)
def update_profile(profile_id: PathKey, body: ProfileUpdate, request: Request, caller: Admin) -> ProfileOut:
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        profile = service.get_profile(session, profile_id)
        service.update_profile(session, profile, _changes(body), runtime.now(), caller.actor)
        return ProfileOut.of(profile)


@router.delete("/{profile_id}", status_code=204, response_class=Response)
def delete_profile(profile_id: PathKey, request: Request, caller: Admin) -> Response:
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        service.delete_profile(session, service.get_profile(session, profile_id), runtime.now(), caller.actor)
    return Response(status_code=204)
