"""Group commit: the writes of many requests in one transaction, made durable by one commit.

The hot paths (an enrollment, a connector's signed request, a poll that stores results and claims jobs)
each write a little and commit. With `durability=full` every commit is a flush to disk, and on SQLite
every writer also waits its turn for the one write lock (its busy handler sleeps between tries), so
the commits, not the work, bounded the throughput.

Each caller hands `run` a unit of work (a function of a Session) and blocks until the unit is committed,
or has failed. The first caller to find no batch running leads: it takes the units waiting (up to
`max_batch`), runs each in a SAVEPOINT of one transaction (a unit that raises is undone alone and its
caller gets the exception, as it would have from a transaction of its own), commits once, and hands each
caller its answer; then it passes the lead to the first caller that queued meanwhile. So a batch grows
with the load, and without load a unit runs at once, alone, in a transaction of its own as before: no
timer, no thread, no added delay.

Units run one after another in the batch's transaction, in the order they arrived: each sees the ones
before it, exactly as if they had committed one by one in that order. A unit must not wait for another
request, and must not act outside the database before its commit (a wake-up after commit is fine: the
after-commit hooks run once the batch commits). When the batch's commit fails (PostgreSQL: a deadlock or
a serialization failure with another manager process; SQLite: busy beyond its timeout), each of its units
is run again in a transaction of its own, so one unit's trouble costs the others a retry, never a write.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

from sqlalchemy.orm import Session, sessionmaker

T = TypeVar("T")

# Enough to take a busy manager's concurrent requests in one commit, few enough that one batch does not
# hold the write lock (and its callers' answers) for long.
MAX_BATCH = 64


class _Unit(Generic[T]):
    __slots__ = ("error", "finished", "result", "turn", "work")

    def __init__(self, work: Callable[[Session], T]) -> None:
        self.work = work
        self.turn = threading.Event()  # set when the unit is finished, or its caller is to lead
        self.finished = False
        self.result: T | None = None
        self.error: BaseException | None = None

    def answer(self) -> T:
        if self.error is not None:
            raise self.error
        return cast("T", self.result)


class GroupCommitter:
    """Runs units of work for many threads, committing them in batches (see the module's docstring)."""

    def __init__(self, sessions: sessionmaker[Session], max_batch: int = MAX_BATCH) -> None:
        """`max_batch`: the most units in one transaction; 0 runs each unit alone, not queued."""
        self._sessions = sessions
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Unit[Any]] = []
        self._leading = False  # a caller is running a batch; it passes the lead on when it is done
        self._running = threading.local()  # set in the thread that runs a batch, while it runs one
        self.batches = 0  # transactions committed, and the units committed in them (bench/, /metrics)
        self.units = 0

    def queued(self) -> int:
        """Units waiting for a batch (the one running not counted)."""
        with self._lock:
            return len(self._queue)

    def run(self, work: Callable[[Session], T]) -> T:
        """Run `work(session)` in a transaction shared with other callers' units; return what it returned,
        once committed, or raise what it raised (its writes undone)."""
        if getattr(self._running, "batch", False):
            # A unit that queued another would wait for its own batch to end: say so instead of hanging.
            raise RuntimeError("a unit of work may not run another through the group commit")
        if self._max_batch == 0:  # turned off (group_commit_max=0): a transaction of its own, at once
            with self._sessions.begin() as session:
                answer = work(session)
            with self._lock:
                self.batches += 1
                self.units += 1
            return answer
        unit = _Unit(work)
        with self._lock:
            self._queue.append(unit)
            lead = not self._leading
            self._leading = True
        if not lead:
            unit.turn.wait()
            if unit.finished:
                return unit.answer()
        # Leading: this caller's unit is first in the queue (the lead passes only to the first waiting).
        with self._lock:
            batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
        self._running.batch = True
        try:
            self._commit(batch)
        finally:
            self._running.batch = False
            with self._lock:
                if self._queue:
                    self._queue[0].turn.set()
                else:
                    self._leading = False
            for other in batch:
                if not other.finished:  # the leader was interrupted (a BaseException) mid-batch
                    other.error = RuntimeError("the write was interrupted before it was committed")
                    other.finished = True
                if other is not unit:
                    other.turn.set()
        return unit.answer()

    def _commit(self, batch: list[_Unit[Any]]) -> None:
        if len(batch) == 1:
            self._alone(batch[0])
            return
        try:
            with self._sessions.begin() as session:
                _take_write_lock(session)
                for unit in batch:
                    try:
                        with session.begin_nested():
                            unit.result = unit.work(session)
                    except Exception as exc:  # noqa: BLE001  (the unit's caller gets it, as from its own transaction)
                        unit.error = exc
        except Exception:  # noqa: BLE001  (the batch's commit failed: each unit is tried again on its own)
            for unit in batch:
                unit.result, unit.error = None, None
                self._alone(unit)
            return
        with self._lock:
            self.batches += 1
            self.units += sum(unit.error is None for unit in batch)
        for unit in batch:
            unit.finished = True

    def _alone(self, unit: _Unit[Any]) -> None:
        try:
            with self._sessions.begin() as session:
                _take_write_lock(session)
                unit.result = unit.work(session)
        except Exception as exc:  # noqa: BLE001  (handed to the unit's caller)
            unit.error = exc
        else:
            with self._lock:
                self.batches += 1
                self.units += 1
        unit.finished = True


def _take_write_lock(session: Session) -> None:
    """SQLite: take the write lock first (BEGIN IMMEDIATE). A unit reads before it writes; in a deferred
    transaction the write would then fail at once ("database is locked", no busy wait) whenever another
    connection wrote since the read began, which a batch of many units, a while open, makes likely."""
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        dbapi = connection.connection.dbapi_connection
        if dbapi is not None and not dbapi.in_transaction:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
