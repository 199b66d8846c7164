"""Wake-ups for waiting requests: a job created for a connector wakes the polls waiting for it, and a
certificate whose lifecycle moved wakes the API requests waiting for it (`wait`). One class, two
channels: each `Wakeups` keys its waiters by a string (a connector id, a certificate id).

In one process, a waiting poll is an asyncio event on the server's event loop, and jobs are created in
worker threads, so a wake crosses over with `loop.call_soon_threadsafe`. Across processes (PostgreSQL),
the transaction that creates a job also calls `pg_notify`, which PostgreSQL delivers only when that
transaction commits; a listener thread in each process turns the notifications back into local wakes.

Revoking a connector's access (a delete, a key replaced by `register -force`) wakes its polls on the
same channel: a woken poll checks the connector's standing before it claims, and answers a refusal.
SQLite has no NOTIFY, and `ca-manager connector delete` runs in a process of its own, so there a
watcher thread (`sqlite_watch`) looks for the waiting connectors' rows going away.

A missed wake-up only delays a job until the poll's wait ends (the poll claims once more then), and a
spurious one costs one empty claim, so everything here errs on the side of waking too often.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Protocol

from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session, sessionmaker

from caconnector.manager.services.pg_listener import PostgresListener
from caconnector.manager.services.sqlite_watch import DeletionWatcher

CHANNEL = "caconnector_jobs"  # keys: connector ids
CERTIFICATES_CHANNEL = "caconnector_certificates"  # keys: certificate ids


def _pending(channel: str) -> str:
    """session.info key: the keys whose waiters to wake once the session's transaction commits."""
    return f"caconnector.wake.{channel}"


class Listener(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def wait_listening(self, timeout: float) -> bool: ...


# Builds the cross-process listener: (wake one connector's waiters, wake every waiter) -> Listener.
ListenerFactory = Callable[[Callable[[str], None], Callable[[], None]], Listener]


class Waiter:
    """One waiting poll. Created, cleared and awaited on the event loop; woken from any thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._event = asyncio.Event()
        self.waiting = False  # inside wait(): the poll found nothing and is parked
        # What the change that woke this waiter left, when it said (see `wake_after_commit`).
        self.snapshot: object | None = None

    def wake(self, snapshot: object | None = None) -> None:
        # The loop is gone only once the server has stopped, and with it everyone waiting.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._woken, snapshot)

    def _woken(self, snapshot: object | None) -> None:
        if snapshot is not None:
            self.snapshot = snapshot
        self._event.set()

    def clear(self) -> None:
        """Forget earlier wakes; call before looking for work, so a wake during the look is kept."""
        self._event.clear()
        self.snapshot = None

    async def wait(self, timeout: float) -> bool:
        """True when woken, False when the timeout passed first."""
        self.waiting = True
        try:
            async with asyncio.timeout(max(timeout, 0.0)):
                await self._event.wait()
        except TimeoutError:
            return False
        finally:
            self.waiting = False
        return True


def wake_after_commit(session: Session, channel: str, key: str, snapshot: object | None = None) -> None:
    """Record that this session's transaction changes something `key`'s waiters wait for: they wake in
    this process when the transaction commits (see `Wakeups.attach`), and on PostgreSQL in every other
    process too. `snapshot`: what the waiters of this process are handed with the wake (the changed
    row's object, as committed), so that they need not read it back; other processes read it."""
    pending: dict[str, object | None] = session.info.setdefault(_pending(channel), {})
    if snapshot is not None or key not in pending:
        pending[key] = snapshot
    if session.get_bind().dialect.name == "postgresql":
        # Queued with the transaction: delivered at commit, dropped on rollback, so a woken process
        # always finds the change visible.
        session.execute(select(func.pg_notify(channel, key)))


def job_created(session: Session, connector_id: str) -> None:
    """This transaction creates work for the connector: its waiting polls wake once it commits."""
    wake_after_commit(session, CHANNEL, connector_id)


def access_changed(session: Session, connector_id: str) -> None:
    """This transaction ends the connector's current access (deleted, or its key replaced): its parked
    polls wake once it commits, find the refusal a new request would get, and answer it."""
    wake_after_commit(session, CHANNEL, connector_id)


def certificate_changed(session: Session, certificate_id: str, settled: object | None = None) -> None:
    """This transaction moves the certificate on: requests waiting for it look again once it commits.
    `settled`: the certificate's object when this change settles it, handed to this process's waiters
    (the session does not expire it at commit), which answer from it instead of reading it back."""
    wake_after_commit(session, CERTIFICATES_CHANNEL, certificate_id, settled)


class Wakeups:
    """The waiters of one process on one channel, by key; thread-safe."""

    def __init__(self, listener_factory: ListenerFactory | None = None, channel: str = CHANNEL) -> None:
        self.channel = channel
        self._pending = _pending(channel)
        self._lock = threading.Lock()
        self._waiters: dict[str, set[Waiter]] = {}
        self._listener_factory = listener_factory
        self._listener: Listener | None = None

    def attach(self, sessions: sessionmaker[Session]) -> None:
        """Wake waiters after each commit of a session from `sessions` that marked their key."""
        event.listen(sessions, "after_commit", self._after_commit)
        event.listen(sessions, "after_rollback", self._after_rollback)

    def _after_commit(self, session: Session) -> None:
        # SQLAlchemy calls this for a SAVEPOINT released too (the group commit runs each unit in one):
        # nothing is visible to others until the outermost transaction commits.
        if session.in_nested_transaction():
            return
        for key, snapshot in session.info.pop(self._pending, {}).items():
            self.notify(key, snapshot)

    def _after_rollback(self, session: Session) -> None:
        # A unit undone to its SAVEPOINT keeps the other units' wakes (and its own: a spurious wake
        # costs one look); only the whole transaction's rollback drops them.
        if session.in_nested_transaction():
            return
        session.info.pop(self._pending, None)

    @contextlib.contextmanager
    def subscribe(self, key: str) -> Iterator[Waiter]:
        """A waiter for `key` (a connector's jobs, a certificate), registered for the duration of the
        block. Call on the event loop, before looking, so no change made meanwhile goes unnoticed."""
        waiter = Waiter(asyncio.get_running_loop())
        with self._lock:
            self._waiters.setdefault(key, set()).add(waiter)
            # Started on the first wait, if the server did not start it (`listen`): a manager nobody
            # polls (the CLI, a test without a server) holds no extra database connection.
            self._start_listener()
        try:
            yield waiter
        finally:
            with self._lock:
                waiters = self._waiters.get(key)
                if waiters is not None:
                    waiters.discard(waiter)
                    if not waiters:
                        del self._waiters[key]

    def listen(self, timeout: float) -> bool:
        """Start the listener now, not with the first wait, and wait up to `timeout` seconds until it
        listens; False if it did not in time (it goes on trying, as after a lost connection). The
        server calls this at start-up: a listener started by the first wait listens only after that
        poll has looked, so its first resync wakes every poll parked meanwhile for a second look."""
        with self._lock:
            listener = self._start_listener()
        return listener is None or listener.wait_listening(timeout)

    def _start_listener(self) -> Listener | None:
        """The listener, started if it was not (call holding the lock); None without a factory."""
        if self._listener is None and self._listener_factory is not None:
            self._listener = self._listener_factory(self.notify, self.notify_all)
            self._listener.start()
        return self._listener

    def notify(self, key: str, snapshot: object | None = None) -> None:
        with self._lock:
            waiters = list(self._waiters.get(key, ()))
        for waiter in waiters:
            waiter.wake(snapshot)

    def notify_all(self) -> None:
        with self._lock:
            waiters = [w for group in self._waiters.values() for w in group]
        for waiter in waiters:
            waiter.wake()

    def keys(self) -> list[str]:
        """The keys someone waits on now."""
        with self._lock:
            return list(self._waiters)

    def waiting(self, key: str) -> int:
        """How many waiters of `key` are parked (tests and benchmarks)."""
        with self._lock:
            return sum(waiter.waiting for waiter in self._waiters.get(key, ()))

    def close(self) -> None:
        """Stop the listener; a later wait starts a new one."""
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()


# The long polls' wake-ups: waiters keyed by connector id.
JobWakeups = Wakeups


def wakeups_for(engine: Engine, channel: str = CHANNEL) -> Wakeups:
    """In-process wake-ups, plus a LISTEN connection on PostgreSQL for what other processes change
    (opened on the first wait, so each channel costs a connection only once someone waits on it)."""
    if engine.dialect.name != "postgresql":
        if channel != CHANNEL:
            return Wakeups(channel=channel)
        sessions = sessionmaker(engine)
        # The watcher reads the keys of the very Wakeups it is built for (it starts with the first wait).
        wakeups = Wakeups(lambda on_notify, _: DeletionWatcher(sessions, wakeups.keys, on_notify), channel)
        return wakeups
    conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)

    def factory(on_notify: Callable[[str], None], on_resync: Callable[[], None]) -> Listener:
        return PostgresListener(conninfo, channel, on_notify, on_resync)

    return Wakeups(factory, channel)
