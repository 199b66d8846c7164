"""When a connector counts as Connected: `connected_until` (see `services.status`).

A poll pushes it to the end of its wait plus the grace while it is open, and back to now plus the grace
when it answers (unless another poll pushed it further meanwhile); a goodbye pulls it to now, so a
cleanly stopped connector shows Disconnected at once.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Update, bindparam, case, or_, update
from sqlalchemy.orm import Session

from caconnector.manager.db.models import Connector
from caconnector.manager.db.types import UTCDateTime


def _extend(*, with_last_seen: bool) -> Update:
    current = Connector.connected_until
    until = bindparam("until", type_=UTCDateTime)
    values: dict[str, Any] = {
        "connected_until": case((or_(current.is_(None), current < until), until), else_=current)
    }
    if with_last_seen:
        values["last_seen"] = bindparam("seen_at", type_=UTCDateTime)
    return update(Connector).where(Connector.id == bindparam("connector_id")).values(values)


# Built once: every poll runs one of them, most polls two.
_EXTEND = _extend(with_last_seen=False)
_EXTEND_AND_SEEN = _extend(with_last_seen=True)


def extend_connected_until(
    session: Session, connector_id: str, until: dt.datetime, *, seen_at: dt.datetime | None = None
) -> None:
    """Connected until at least `until`. Never shortens: polls of one connector overlap (the agent
    reports a finished job with a short poll while its long poll waits), and the short one must not
    cut the long one's window. Writes the row even when nothing changes, so it always locks it.
    `seen_at`: also `last_seen`, in the same statement (a poll's contact, see channel_auth)."""
    parameters = {"connector_id": connector_id, "until": until}
    if seen_at is None:
        session.connection().execute(_EXTEND, parameters)
    else:
        session.connection().execute(_EXTEND_AND_SEEN, {**parameters, "seen_at": seen_at})


def disconnect(session: Session, connector_id: str, now: dt.datetime) -> None:
    """A goodbye: the connector stopped cleanly, so it is Disconnected at once."""
    session.execute(
        update(Connector).where(Connector.id == connector_id).values(connected_until=now),
        execution_options={"synchronize_session": False},
    )


def close_poll_window(session: Session, connector_id: str, opened: dt.datetime, until: dt.datetime) -> None:
    """Shorten the window a poll opened, unless something moved it since: a later poll of the same
    connector (whose window must stay) or a goodbye (which must not be undone)."""
    session.execute(
        update(Connector)
        .where(Connector.id == connector_id, Connector.connected_until == opened)
        .values(connected_until=until),
        execution_options={"synchronize_session": False},
    )
