"""`/api/v1/audit`: who did what, when; newest first."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from caconnector.manager import audit
from caconnector.manager.api.pagination import (
    DEFAULT_LIMIT,
    Cursor,
    Limit,
    Page,
)
from caconnector.manager.api.params import line_query
from caconnector.manager.auth import Reader
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
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        page = audit.list_events(session, actor=actor, action=action, since=since, limit=limit, cursor=cursor)
        items = [AuditEventOut.model_validate(row, from_attributes=True) for row in page.items]
    return Page[AuditEventOut](items=items, next_cursor=page.next_cursor)
