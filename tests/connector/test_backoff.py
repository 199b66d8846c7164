"""Reconnection back-off: bounded, jittered, never a busy loop; counted over a fake clock and sleeper
injected into the real agent, against a real server that drops every connection."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.connector.peers import FakeManager, Peer, Request, Response
from tests.support import Result

from caconnector.connector.agent import Agent, AgentOptions
from caconnector.connector.agent_state import AgentStatus, read_state
from caconnector.connector.backoff import Backoff
from caconnector.connector.registration import register
from caconnector.connector.store import ConnectorStore

Run = Callable[..., Result]


def test_ceilings_double_up_to_the_cap_and_reset() -> None:
    backoff = Backoff(uniform=lambda low, high: high)
    assert [backoff.next_delay() for _ in range(9)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    backoff.reset()
    assert backoff.next_delay() == 1


def test_full_jitter_stays_within_floor_and_ceiling() -> None:
    rng = random.Random(7)  # noqa: S311 - jitter in a test, not cryptography
    backoff = Backoff(uniform=rng.uniform)
    delays = [backoff.next_delay() for _ in range(200)]
    assert all(0.5 <= d <= 60 for d in delays)
    assert len({round(d, 6) for d in delays[10:]}) > 100  # jittered, not a fixed schedule
    # Even a source that always draws the minimum cannot make it spin.
    assert Backoff(uniform=lambda low, high: 0.0).next_delay() == 0.5


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="floor"):
        Backoff(floor=0)


class FakeTime:
    """A monotonic clock that only moves when the agent sleeps; stops the agent after `limit` sleeps."""

    def __init__(self, limit: int) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.limit = limit
        self.agent: Agent | None = None
        self.on_sleep: Callable[[float], None] | None = None

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep is not None:
            self.on_sleep(seconds)
        if len(self.sleeps) >= self.limit and self.agent is not None:
            self.agent.stop()


def _agent(datadir: Path, clock: FakeTime, backoff: Backoff) -> Agent:
    agent = Agent(
        ConnectorStore(datadir),
        AgentOptions(poll_wait=0, log_to_stderr=False),
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        backoff=backoff,
    )
    clock.agent = agent
    return agent


def test_an_unreachable_manager_is_retried_with_back_off_never_busy(
    cli: Run, datadir: Path, manager: FakeManager
) -> None:
    assert cli("register", "-token", manager.add_token(), "-manager", manager.url).code == 0
    attempts: list[str] = []

    def drop(request: Request) -> Response | None:
        attempts.append(request.path)
        return None  # the connection closes without an answer

    with Peer(drop) as dead:
        # The same registration, pointed at a server that drops every connection.
        config = datadir / "config.toml"
        config.write_text(config.read_text().replace(manager.url, dead.url()))
        clock = FakeTime(limit=12)
        code = _agent(datadir, clock, Backoff(uniform=lambda low, high: high)).run()

    assert code == 0
    assert clock.sleeps == [1, 2, 4, 8, 16, 32, 60, 60, 60, 60, 60, 60]
    # One attempt per sleep: every failure is followed by a wait of at least the floor.
    assert len(attempts) == len(clock.sleeps)
    state = read_state(datadir)
    assert state is not None and state.state is AgentStatus.STOPPED
    assert state.last_error is not None and "cannot reach" in state.last_error


def test_retry_after_from_the_manager_is_honoured(cli: Run, datadir: Path, manager: FakeManager) -> None:
    assert cli("register", "-token", manager.add_token(), "-manager", manager.url).code == 0
    with Peer(lambda _: Response(503, b"", {"Retry-After": "45"})) as busy:
        config = datadir / "config.toml"
        config.write_text(config.read_text().replace(manager.url, busy.url()))
        clock = FakeTime(limit=3)
        _agent(datadir, clock, Backoff(uniform=lambda low, high: low)).run()
    assert clock.sleeps == [45, 45, 45]


def test_a_refused_connector_retries_every_minute_and_recovers_after_register_force(
    cli: Run, datadir: Path, manager: FakeManager
) -> None:
    assert cli("register", "-token", manager.add_token("edge-1"), "-manager", manager.url).code == 0
    manager.refusal = (403, "connector_expired")
    clock = FakeTime(limit=50)
    states: list[tuple[AgentStatus, str | None]] = []

    def restore_after_two(seconds: float) -> None:
        state = read_state(datadir)
        assert state is not None
        states.append((state.state, state.last_error))
        if len(clock.sleeps) == 2:
            # What an operator does after Restore in the manager: a new registration, in another process.
            manager.refusal = None
            register(ConnectorStore(datadir), manager.add_token("edge-1"), force=True)
        if len(clock.sleeps) >= 3 and clock.agent is not None:
            clock.agent.stop()

    clock.on_sleep = restore_after_two
    manager.poll_wait_cap = 0.1
    agent = _agent(datadir, clock, Backoff())
    assert agent.run() == 0

    assert clock.sleeps[:2] == [60, 60]
    status, error = states[0]
    assert status is AgentStatus.REFUSED
    assert error is not None and "connector_expired" in error and "restore it" in error
    # After register -force the new key is used without a restart: the manager saw the agent poll.
    assert manager.polls
    assert manager.goodbyes == 1
