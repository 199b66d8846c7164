"""Everything a request handler or CLI command needs, built once per app from the settings: the
database, the clock, the sealing key. Passed explicitly; there are no module-level singletons."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from caconnector.manager.db.engine import make_engine, make_sessionmaker
from caconnector.manager.db.group_commit import MAX_BATCH, GroupCommitter
from caconnector.manager.key_file import load_or_create_box
from caconnector.manager.services.retry import RetryPolicy
from caconnector.manager.services.wakeups import CERTIFICATES_CHANNEL, JobWakeups, Wakeups, wakeups_for
from caconnector.manager.settings import Settings
from caconnector.pki.secretbox import SecretBox

if TYPE_CHECKING:  # the CLI builds a Runtime without loading the web framework
    from starlette.requests import Request

Clock = Callable[[], dt.datetime]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    box: SecretBox
    wakeups: JobWakeups  # wakes the long polls waiting for a connector's jobs
    clock: Clock = field(default=utcnow)
    # Wakes the API requests waiting (`wait`) for a certificate to be issued, fail or be revoked.
    certificate_wakeups: Wakeups = field(default_factory=lambda: Wakeups(channel=CERTIFICATES_CHANNEL))
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # The hot paths' writes (enroll, a connector's signed request, a poll), committed in batches.
    writes: GroupCommitter = field(init=False)

    def __post_init__(self) -> None:
        batch = self.settings.group_commit_max
        if batch is None:
            batch = MAX_BATCH if self.engine.dialect.name == "sqlite" else 0
        self.writes = GroupCommitter(self.sessions, batch)

    def now(self) -> dt.datetime:
        return self.clock()

    def start_listening(self, timeout: float) -> bool:
        """On PostgreSQL, open the LISTEN connections now (one per channel) and wait up to `timeout`
        seconds for them, so that the first polls are not woken for a second look when they start
        listening; True once both listen. Elsewhere nothing to open (SQLite's watcher starts with
        the first wait and needs no connection)."""
        if self.engine.dialect.name != "postgresql":
            return True
        deadline = time.monotonic() + timeout  # one wait for both, not one each
        # Each channel's listener is started even when the other is late.
        listening = [
            channel.listen(max(deadline - time.monotonic(), 0.0))
            for channel in (self.wakeups, self.certificate_wakeups)
        ]
        return all(listening)

    def close_wakeups(self) -> None:
        """Stop the PostgreSQL LISTEN threads, if any were started."""
        self.wakeups.close()
        self.certificate_wakeups.close()


def build_runtime(settings: Settings, clock: Clock = utcnow) -> Runtime:
    engine = make_engine(settings)
    sessions = make_sessionmaker(engine)
    wakeups = wakeups_for(engine)
    wakeups.attach(sessions)
    certificate_wakeups = wakeups_for(engine, CERTIFICATES_CHANNEL)
    certificate_wakeups.attach(sessions)
    return Runtime(
        settings,
        engine,
        sessions,
        load_or_create_box(settings),
        wakeups,
        clock,
        certificate_wakeups,
        RetryPolicy(max_attempts=settings.retry_max_attempts, base_seconds=settings.retry_base_seconds),
    )


def runtime_of(request: Request) -> Runtime:
    """The Runtime `create_app` put on the app: what an endpoint reaches the database and clock through."""
    runtime: Runtime = request.app.state.runtime
    return runtime
