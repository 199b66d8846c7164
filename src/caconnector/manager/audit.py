"""The audit log: one row per change, who did what to what, and when. Written in the same transaction
as the change it records, so neither exists without the other."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from caconnector.manager.db.models import AuditEvent


def record(
    session: Session,
    at: dt.datetime,
    actor: str,
    action: str,
    target: str | None = None,
    **details: Any,
) -> AuditEvent:
    event = AuditEvent(at=at, actor=actor, action=action, target=target, details=details)
    session.add(event)
    return event
