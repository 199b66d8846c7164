"""On SQLite, notice a waiting connector losing its access in another process.

PostgreSQL carries a delete's wake-up to every manager process with NOTIFY. SQLite has nothing like it,
and `ca-manager connector delete` runs in a process of its own, so one thread per server process looks
at the rows of the connectors whose polls are parked, twice a second, and wakes the polls of a connector
whose row went away or whose key changed; the woken poll checks its standing itself and answers the
refusal. It reads nothing while no poll waits, and one primary-key lookup per round otherwise: SQLite
managers serve a few connectors, and a revoked connector is cut off within half a second.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from caconnector.manager.db.models import Connector

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
        self._thread = threading.Thread(target=self._run, name="watch-connectors", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._interval + 5)

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
            return
        with self._sessions() as session:
            found = session.execute(
                select(Connector.id, Connector.public_key_pem).where(Connector.id.in_(keys))
            )
            rows: dict[str, str | None] = dict(found.all())
        seen: dict[str, str | None] = {}
        for key in keys:
            current = rows.get(key)
            # A new key is noted, not woken: its poll checked its standing after subscribing.
            if current is None or (key in self._seen and self._seen[key] != current):
                self._on_change(key)
            seen[key] = current
        self._seen = seen
