"""The audit log: one row per change, who did what to what, and when. Written in the same transaction
as the change it records, so neither exists without the other."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from caconnector.manager.db.models import AuditEvent
from caconnector.manager.db.rows import insert_row
from caconnector.manager.services.pagination import Rows, paginate


def record(
    session: Session,
    at: dt.datetime,
    actor: str,
    action: str,
    target: str | None = None,
    **details: Any,
) -> None:
    # A Core INSERT in the session's transaction, not an object for the unit of work (db/rows.py): an
    # event is never read back or changed where it is written, and there is one for most requests.
    insert_row(session, AuditEvent, at=at, actor=actor, action=action, target=target, details=details)


def list_events(
    session: Session,
    *,
    actor: str | None = None,
    action: str | None = None,
    since: dt.datetime | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Rows[AuditEvent]:
    """Newest first. Ordered by id, not time: ids increase with every insert and are unique, so the
    cursor is exact even when several events share a timestamp."""
    query = select(AuditEvent)
    if actor is not None:
        query = query.where(AuditEvent.actor == actor)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    if since is not None:
        query = query.where(AuditEvent.at >= (since if since.tzinfo else since.replace(tzinfo=dt.UTC)))
    return paginate(session, query, [AuditEvent.id], limit, cursor, descending=True)
