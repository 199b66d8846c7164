"""The group commit (manager/db/group_commit.py): units of many threads share one transaction, each in a
SAVEPOINT; a unit that fails is undone alone; wake-ups go out only once the batch is committed."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from collections.abc import Callable

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from caconnector.manager import audit
from caconnector.manager.db.group_commit import GroupCommitter
from caconnector.manager.db.models import AuditEvent
from caconnector.manager.runtime import Runtime
from caconnector.manager.services.wakeups import Wakeups, wake_after_commit


def _actions(runtime: Runtime) -> list[str]:
    with runtime.sessions() as session:
        return sorted(session.scalars(select(AuditEvent.action)))


def _record(runtime: Runtime, action: str) -> Callable[[Session], str]:
    def work(session: Session) -> str:
        audit.record(session, runtime.now(), "system", action, None)
        return action

    return work


def _queued(committer: GroupCommitter, count: int) -> None:
    deadline = time.monotonic() + 10
    while committer.queued() < count:
        assert time.monotonic() < deadline, "the callers did not queue"
        time.sleep(0.005)


def _in_threads(calls: list[Callable[[], object]]) -> tuple[list[threading.Thread], list[object]]:
    answers: list[object] = []

    def call(fn: Callable[[], object]) -> None:
        try:
            answers.append(fn())
        except Exception as exc:  # noqa: BLE001  (the test looks at what each caller got)
            answers.append(exc)

    threads = [threading.Thread(target=call, args=(fn,)) for fn in calls]
    for thread in threads:
        thread.start()
    return threads, answers


def test_callers_waiting_while_a_batch_runs_are_committed_together(runtime: Runtime) -> None:
    committer = GroupCommitter(runtime.sessions)
    go = threading.Event()

    def first(session: Session) -> str:
        go.wait(10)  # holds the lead while the others queue
        return _record(runtime, "first")(session)

    threads, answers = _in_threads([lambda: committer.run(first)])
    _queued(committer, 0)
    time.sleep(0.05)
    more, more_answers = _in_threads([functools.partial(committer.run, _record(runtime, a)) for a in "bcd"])
    _queued(committer, 3)
    go.set()
    for thread in threads + more:
        thread.join(10)
    assert answers == ["first"]
    assert sorted(map(str, more_answers)) == ["b", "c", "d"]
    assert _actions(runtime) == ["b", "c", "d", "first"]
    assert (committer.batches, committer.units) == (2, 4)  # the three waiting went in one commit


def test_a_failing_unit_is_undone_alone_and_its_caller_gets_the_error(runtime: Runtime) -> None:
    committer = GroupCommitter(runtime.sessions)
    go = threading.Event()

    def hold(session: Session) -> str:
        go.wait(10)
        return "held"

    def broken(session: Session) -> str:
        audit.record(session, runtime.now(), "system", "undone", None)
        session.flush()
        raise ValueError("this unit is refused")

    threads, _ = _in_threads([lambda: committer.run(hold)])
    time.sleep(0.05)
    more, answers = _in_threads(
        [
            lambda: committer.run(_record(runtime, "before")),
            lambda: committer.run(broken),
            lambda: committer.run(_record(runtime, "after")),
        ]
    )
    _queued(committer, 3)
    go.set()
    for thread in threads + more:
        thread.join(10)
    errors = [a for a in answers if isinstance(a, Exception)]
    assert [str(e) for e in errors] == ["this unit is refused"]
    assert _actions(runtime) == ["after", "before"]
    assert committer.units == 3  # hold, before, after (the batch of three committed two)


def test_a_batch_whose_commit_fails_is_retried_unit_by_unit(runtime: Runtime) -> None:
    committer = GroupCommitter(runtime.sessions)
    go = threading.Event()
    failed: list[bool] = []

    def fail_first_batch_commit(session: Session) -> None:
        if session.info.get("batch") and not session.in_nested_transaction() and not failed:
            failed.append(True)
            raise RuntimeError("commit refused once")

    event.listen(runtime.sessions, "before_commit", fail_first_batch_commit)

    def hold(session: Session) -> str:
        go.wait(10)
        return "held"

    def marked(action: str) -> Callable[[Session], str]:
        def work(session: Session) -> str:
            session.info["batch"] = True
            return _record(runtime, action)(session)

        return work

    threads, _ = _in_threads([lambda: committer.run(hold)])
    time.sleep(0.05)
    more, answers = _in_threads([functools.partial(committer.run, marked(a)) for a in "xy"])
    _queued(committer, 2)
    go.set()
    for thread in threads + more:
        thread.join(10)
    assert failed == [True]
    assert sorted(map(str, answers)) == ["x", "y"]
    assert _actions(runtime) == ["x", "y"]


class _Seen(Wakeups):
    """Records, for each wake, whether the change it announces is visible to another session."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(channel="test")
        self.runtime = runtime
        self.visible: dict[str, bool] = {}

    def notify(self, key: str, snapshot: object | None = None) -> None:
        with self.runtime.sessions() as other:
            count = other.scalar(select(func.count()).where(AuditEvent.action == key))
        self.visible[key] = bool(count)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_wakes_wait_for_the_batch_commit(runtime: Runtime) -> None:
    seen = _Seen(runtime)
    seen.attach(runtime.sessions)
    committer = GroupCommitter(runtime.sessions)
    go = threading.Event()

    def hold(session: Session) -> str:
        go.wait(10)
        return "held"

    def changed(action: str) -> Callable[[Session], str]:
        def work(session: Session) -> str:
            wake_after_commit(session, "test", action)
            return _record(runtime, action)(session)

        return work

    def undone(session: Session) -> str:
        wake_after_commit(session, "test", "undone")
        raise ValueError("undone")

    threads, _ = _in_threads([lambda: committer.run(hold)])
    time.sleep(0.05)
    more, _ = _in_threads(
        [
            lambda: committer.run(changed("one")),
            lambda: committer.run(undone),
            lambda: committer.run(changed("two")),
        ]
    )
    _queued(committer, 3)
    go.set()
    for thread in threads + more:
        thread.join(10)
    # Each announced change was committed when its wake went out; the undone unit's wake is spurious.
    assert seen.visible == {"one": True, "two": True, "undone": False}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_turned_off_each_unit_commits_at_once_on_its_own(runtime: Runtime) -> None:
    committer = GroupCommitter(runtime.sessions, max_batch=0)
    go = threading.Event()

    def hold(session: Session) -> str:
        go.wait(10)
        return "held"

    threads, answers = _in_threads([lambda: committer.run(hold)])
    time.sleep(0.05)
    # Not queued behind the unit that holds: committed while it still runs.
    assert committer.run(_record(runtime, "alone")) == "alone"
    assert _actions(runtime) == ["alone"]

    def undone(session: Session) -> str:
        _record(runtime, "undone")(session)
        session.flush()
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        committer.run(undone)
    go.set()
    for thread in threads:
        thread.join(10)
    assert answers == ["held"]
    assert _actions(runtime) == ["alone"]
    assert (committer.batches, committer.units) == (2, 2)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_unit_that_runs_another_is_refused_instead_of_waiting_for_itself(runtime: Runtime) -> None:
    committer = GroupCommitter(runtime.sessions)

    def nested(session: Session) -> str:
        return committer.run(_record(runtime, "inner"))

    with pytest.raises(RuntimeError, match="may not run another"):
        committer.run(nested)
    assert committer.run(_record(runtime, "after")) == "after"  # the committer is not left stuck
    assert _actions(runtime) == ["after"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_wake_hands_over_what_the_committed_change_left(runtime: Runtime) -> None:
    """The waiter of a key gets the snapshot its committed change named (a settled certificate: the
    enrollment's wait answers from it); a change without one wakes it without, and a rollback not at
    all."""
    wakeups = Wakeups(channel="test")
    wakeups.attach(runtime.sessions)
    snapshot = object()

    async def scenario() -> list[tuple[bool, object | None]]:
        seen = []
        with wakeups.subscribe("k") as waiter:
            for change in ("with", "without", "undone"):

                def work(session: Session, change: str = change) -> None:
                    wake_after_commit(session, "test", "k", snapshot if change == "with" else None)
                    if change == "undone":
                        raise ValueError(change)

                waiter.clear()
                with contextlib.suppress(ValueError):
                    await asyncio.to_thread(GroupCommitter(runtime.sessions).run, work)
                seen.append((await waiter.wait(0.5), waiter.snapshot))
        return seen

    assert asyncio.run(scenario()) == [(True, snapshot), (True, None), (False, None)]
