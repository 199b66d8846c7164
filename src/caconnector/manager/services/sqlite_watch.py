"""On SQLite, notice a waiting connector losing its access in another process.

PostgreSQL carries a delete's wake-up to every manager process with NOTIFY. SQLite has nothing like it,
and `ca-manager connector delete` runs in a process of its own, so one thread per server process looks
twice a second for a connector whose row went away or whose key changed, and wakes its polls; the woken
poll checks its standing itself and answers the refusal. A revoked connector is cut off within half a
second. It reads nothing while no poll waits. Otherwise each round reads one row, `access_changes`, a
count that triggers bump on every connector delete and key change (migration 0006), and reads the
parked connectors' rows only when that count moved: reading 5,000 parked connectors' rows twice a
second was a fifth to a third of an idle manager's CPU (bench/idle.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from caconnector.manager.db.models import AccessChanges, Connector

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 0.5


class DeletionWatcher:
    """A `wakeups.Listener`: started with the first wait, stopped with the Wakeups."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        keys: Callable[[], list[str]],
        on_change: Callable[[str], None],
        interval: float = INTERVAL_SECONDS,
    ) -> None:
        self._sessions = sessions
        self._keys = keys
        self._on_change = on_change
        self._interval = interval
        self._stopping = threading.Event()
        self._seen: dict[str, str | None] = {}  # connector id -> the key its row held last round
        self._changes: int | None = None  # access_changes.count when the rows were last read
        self._thread = threading.Thread(target=self._run, name="watch-connectors", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._interval + 5)

    def wait_listening(self, timeout: float) -> bool:
        """Always: the watcher needs no connection set up before it can see a change."""
        return True

    def _run(self) -> None:
        while not self._stopping.wait(self._interval):
            try:
                self.look()
            except SQLAlchemyError as exc:  # a locked or busy database: look again next round
                log.warning("cannot read the waiting connectors (%s); looking again shortly", exc)

    def look(self) -> None:
        """One round: wake the polls of every waiting connector whose row went away or changed key."""
        keys = self._keys()
        if not keys:
            self._seen.clear()
            self._changes = None
            return
        with self._sessions() as session:
            changes = session.scalar(select(AccessChanges.count).where(AccessChanges.id == 1))
            if changes is not None and changes == self._changes:
                # Nothing deleted and no key changed since the rows were read: a poll parked since then
                # checked its connector's standing after subscribing, so nobody needs waking.
                return
            found = session.execute(
                select(Connector.id, Connector.public_key_pem).where(Connector.id.in_(keys))
            )
            rows: dict[str, str | None] = dict(found.all())
        first_look = self._changes is None
        seen: dict[str, str | None] = {}
        for key in keys:
            current = rows.get(key)
            # On the first look a key is noted, not woken: its poll checked its standing after
            # subscribing. Later, the count moved, and a key parked since the last read may be what
            # changed: it is woken too (a needless wake costs one empty claim).
            changed = key in self._seen and self._seen[key] != current
            unknown = key not in self._seen and not first_look
            if current is None or changed or unknown:
                self._on_change(key)
            seen[key] = current
        self._seen = seen
        self._changes = changes
