"""`/api/v1/cas`: the private CAs behind all backends, as their connectors last reported them."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import select, tuple_

from caconnector.manager.api.pagination import (
    DEFAULT_LIMIT,
    Cursor,
    Limit,
    Page,
    decode_cursor,
    encode_cursor,
)
from caconnector.manager.auth import READ, Principal, require_roles, runtime_of
from caconnector.manager.db.models import ManagedCA

router = APIRouter(prefix="/cas", tags=["cas"])

Reader = Annotated[Principal, Depends(require_roles(*READ))]


class CAOut(BaseModel):
    id: str
    backend: str = Field(description="the backend's id")
    ref: str = Field(description="the backend's own id for the CA (an ARN, a pool/CA path, a CA name)")
    name: str
    subject: str
    key_type: str
    serial: str
    not_after: dt.datetime | None
    state: str = Field(description="as the backend reports it; `absent` once the backend stops listing it")

    @classmethod
    def of(cls, ca: ManagedCA) -> CAOut:
        return cls(
            id=ca.id,
            backend=ca.backend_id,
            ref=ca.ca_ref,
            name=ca.name,
            subject=ca.subject,
            key_type=ca.key_type,
            serial=ca.serial,
            not_after=ca.not_after,
            state=ca.state,
        )


@router.get("", response_model=Page[CAOut])
def list_cas(
    request: Request,
    _caller: Reader,
    *,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    backend: Annotated[str | None, Query(max_length=32, description="only this backend's (id)")] = None,
) -> Page[CAOut]:
    query = select(ManagedCA).order_by(ManagedCA.name, ManagedCA.id).limit(limit + 1)
    if cursor:
        query = query.where(tuple_(ManagedCA.name, ManagedCA.id) > tuple(decode_cursor(cursor, str, str)))
    if backend is not None:
        query = query.where(ManagedCA.backend_id == backend)
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        rows = list(session.scalars(query))
        items = [CAOut.of(row) for row in rows[:limit]]
    last = rows[limit - 1] if len(rows) > limit else None
    return Page[CAOut](items=items, next_cursor=encode_cursor(last.name, last.id) if last else None)
