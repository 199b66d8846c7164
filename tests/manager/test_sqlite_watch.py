"""The SQLite watcher of parked polls (services.sqlite_watch): it reads the parked connectors' rows only
when the `access_changes` count moved (triggers of migration 0006), and then wakes exactly the polls of
the connectors deleted or given a new key since it last looked."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import delete, event, update

from caconnector.manager.db.models import Connector, new_id
from caconnector.manager.runtime import Runtime
from caconnector.manager.services.sqlite_watch import DeletionWatcher


def _registered_row(runtime: Runtime, name: str) -> str:
    connector_id = new_id()
    with runtime.sessions.begin() as session:
        session.add(
            Connector(id=connector_id, name=name, created_at=runtime.now(), public_key_pem=f"key of {name}")
        )
    return connector_id


class _Watched:
    """A watcher over a list of parked connector ids that records whom it woke and the connector
    rows it read."""

    def __init__(self, runtime: Runtime) -> None:
        if runtime.engine.dialect.name != "sqlite":
            pytest.skip("the watcher runs on SQLite only (PostgreSQL carries these changes with NOTIFY)")
        self.parked: list[str] = []
        self.woken: list[str] = []
        self.row_reads = 0
        self.watcher = DeletionWatcher(runtime.sessions, lambda: list(self.parked), self.woken.append)

        def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if statement.lstrip().upper().startswith("SELECT") and "FROM connectors" in statement:
                self.row_reads += 1

        event.listen(runtime.engine, "before_cursor_execute", count)

    def look(self) -> list[str]:
        self.woken.clear()
        self.watcher.look()
        return sorted(self.woken)


def test_rounds_without_a_delete_or_key_change_read_one_row_and_wake_nobody(runtime: Runtime) -> None:
    watched = _Watched(runtime)
    watched.parked = [_registered_row(runtime, f"dc{n}") for n in range(50)]
    assert watched.look() == []  # the first look notes every key
    assert watched.row_reads == 1
    with runtime.sessions.begin() as session:  # a change that is not about access: last_seen
        session.execute(update(Connector).values(last_seen=runtime.now()))
    for _ in range(5):
        assert watched.look() == []
    assert watched.row_reads == 1


def test_a_delete_or_a_new_key_wakes_that_connector_only(runtime: Runtime) -> None:
    watched = _Watched(runtime)
    kept, deleted, rekeyed = (_registered_row(runtime, name) for name in ("kept", "deleted", "rekeyed"))
    watched.parked = [kept, deleted, rekeyed]
    assert watched.look() == []

    with runtime.sessions.begin() as session:
        session.execute(delete(Connector).where(Connector.id == deleted))
    assert watched.look() == [deleted]

    with runtime.sessions.begin() as session:
        session.execute(update(Connector).where(Connector.id == rekeyed).values(public_key_pem="new key"))
    watched.parked = [kept, rekeyed]
    assert watched.look() == [rekeyed]
    assert watched.look() == []


def test_a_poll_parked_since_the_last_read_is_woken_when_the_count_moves(runtime: Runtime) -> None:
    """Its own standing was checked after it subscribed, but the count cannot say whose row changed
    since: it is woken too (a needless wake costs one empty claim), and noted from then on."""
    watched = _Watched(runtime)
    first, late = _registered_row(runtime, "first"), _registered_row(runtime, "late")
    watched.parked = [first]
    assert watched.look() == []
    watched.parked = [first, late]
    with runtime.sessions.begin() as session:
        session.execute(update(Connector).where(Connector.id == late).values(public_key_pem="replaced"))
    assert watched.look() == [late]
    assert watched.look() == []
