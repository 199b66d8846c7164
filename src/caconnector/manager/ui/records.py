"""Audit (who did what, when; filterable) and About (the manager's version, the connector it ships)."""

from __future__ import annotations

import datetime as dt
import json

from fastapi import APIRouter, Request
from starlette.responses import Response

from caconnector import __version__
from caconnector.manager import audit
from caconnector.manager.runtime import runtime_of
from caconnector.manager.ui.access import Viewer
from caconnector.manager.ui.render import page
from caconnector.protocol.version import PROTOCOL_VERSION

router = APIRouter()

PAGE_SIZE = 100


@router.get("/audit")
def audit_page(
    request: Request, _user: Viewer, actor: str = "", action: str = "", since: str = "", cursor: str = ""
) -> Response:
    runtime = runtime_of(request)
    query = {"actor": actor, "action": action, "since": since}
    rows: list[dict[str, object]] = []
    next_cursor = None
    error = None
    try:
        start = dt.date.fromisoformat(since) if since.strip() else None
        at = dt.datetime(start.year, start.month, start.day, tzinfo=dt.UTC) if start else None
        with runtime.sessions.begin() as session:
            found = audit.list_events(session, actor=actor.strip() or None, action=action.strip() or None,
                                      since=at, limit=PAGE_SIZE, cursor=cursor or None)  # fmt: skip
            rows = [
                {"at": e.at, "actor": e.actor, "action": e.action, "target": e.target or "",
                 "details": json.dumps(e.details, sort_keys=True, default=str) if e.details else ""}
                for e in found.items
            ]  # fmt: skip
            next_cursor = found.next_cursor
    except ValueError as exc:
        error = f"Since: a date as YYYY-MM-DD ({exc})" if since.strip() else str(exc)
    return page(request, "audit.html", 422 if error else 200, rows=rows, query=query,
                next_cursor=next_cursor, error=error)  # fmt: skip


@router.get("/about")
def about_page(request: Request, _user: Viewer) -> Response:
    # Manager and connector are one distribution: the connector this manager ships is its own version.
    return page(request, "about.html", connector_version=__version__, protocol=PROTOCOL_VERSION)
