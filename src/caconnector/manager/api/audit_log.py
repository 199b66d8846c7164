"""`/api/v1/audit`: who did what, when; newest first."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from sqlalchemy import select

from caconnector.manager.api.pagination import (
    DEFAULT_LIMIT,
    Cursor,
    Limit,
    Page,
    decode_cursor,
    encode_cursor,
)
from caconnector.manager.api.params import line_query
from caconnector.manager.auth import Reader
from caconnector.manager.db.models import AuditEvent
from caconnector.manager.runtime import runtime_of

router = APIRouter(prefix="/audit", tags=["audit"])


class AuditEventOut(BaseModel):
    id: int
    at: dt.datetime
    actor: str
    action: str
    target: str | None
    details: dict[str, Any]


@router.get("", response_model=Page[AuditEventOut])
def list_events(
    request: Request,
    _caller: Reader,
    *,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    actor: Annotated[str | None, line_query(200, 'e.g. "user:alice"')] = None,
    action: Annotated[str | None, line_query(64, 'e.g. "connector.add"')] = None,
    since: Annotated[
        dt.datetime | None, Query(description="only events at or after this time (ISO 8601; UTC if no zone)")
    ] = None,
) -> Page[AuditEventOut]:
    # Ordered by id, not time: ids increase with every insert and are unique, so the cursor is exact
    # even when several events share a timestamp.
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit + 1)
    if cursor:
        query = query.where(AuditEvent.id < decode_cursor(cursor, int)[0])
    if actor is not None:
        query = query.where(AuditEvent.actor == actor)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    if since is not None:
        query = query.where(AuditEvent.at >= (since if since.tzinfo else since.replace(tzinfo=dt.UTC)))
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        rows = list(session.scalars(query))
        items = [AuditEventOut.model_validate(row, from_attributes=True) for row in rows[:limit]]
    next_cursor = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return Page[AuditEventOut](items=items, next_cursor=next_cursor)
