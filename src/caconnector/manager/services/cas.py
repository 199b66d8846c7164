"""The CAs the connectors report, as the API lists them (their rows are written by services.inventory)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from caconnector.manager.db.models import ManagedCA
from caconnector.manager.services.pagination import Rows, paginate


def list_cas(
    session: Session, *, backend_id: str | None = None, limit: int | None = None, cursor: str | None = None
) -> Rows[ManagedCA]:
    """By name; the id breaks ties between CAs of the same name."""
    query = select(ManagedCA)
    if backend_id is not None:
        query = query.where(ManagedCA.backend_id == backend_id)
    return paginate(session, query, [ManagedCA.name, ManagedCA.id], limit, cursor)
