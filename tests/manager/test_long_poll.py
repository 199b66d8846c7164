"""The long poll against a real server (uvicorn in a thread): a waiting poll wakes when a job is created
(in process, and on PostgreSQL from another process through NOTIFY), the connector counts as Connected
while it waits, and concurrent polls never share a job."""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as dt
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, text
from tests.manager.connector_support import (
    FakeConnector,
    PollInBackground,
    add_job,
    assert_problem,
    backend_report,
    ca_report,
    connector_row,
    registered,
    status_of,
    wait_until_parked,
)
from tests.manager.live import live_server

from caconnector.manager.app import create_app
from caconnector.manager.db.models import ManagedBackend
from caconnector.manager.runtime import Runtime, build_runtime
from caconnector.manager.services import connectors
from caconnector.manager.services.status import ConnectorStatus
from caconnector.manager.services.wakeups import CHANNEL
from caconnector.manager.settings import Settings

LONG_WAIT = 10.0
# Loose on purpose: it tells a wake-up from the end of the wait; bench/dispatch.py measures the latency.
PROMPT = 2.0


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        datadir=tmp_path / "manager-data",
        database_url=database_url,
        poll_wait_seconds=30.0,
        heartbeat_grace_seconds=3.0,
    )


@pytest.fixture
def server(app: FastAPI) -> Iterator[httpx.Client]:
    with live_server(app) as url, httpx.Client(base_url=url) as client:
        yield client


@pytest.fixture
def other_process(settings: Settings) -> Iterator[Runtime]:
    """A second manager on the same database, with its own engine, sessions and wake-ups: as far as
    the first can tell, another process."""
    other = build_runtime(settings)
    yield other
    other.wakeups.close()
    other.engine.dispose()


def assert_woken_by(creator: Runtime, runtime: Runtime, server: httpx.Client) -> None:
    connector = registered(runtime, server)
    poll = PollInBackground(connector, server, LONG_WAIT)
    wait_until_parked(runtime, connector)
    time.sleep(0.3)

    created = time.perf_counter()
    job_id = add_job(creator, connector)
    body = poll.result()

    assert [job["id"] for job in body["jobs"]] == [job_id]
    assert poll.answered_at - created < PROMPT


def test_a_waiting_poll_wakes_when_a_job_is_created(runtime: Runtime, server: httpx.Client) -> None:
    assert_woken_by(runtime, runtime, server)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_job_created_by_another_process_wakes_the_poll(
    runtime: Runtime, server: httpx.Client, other_process: Runtime
) -> None:
    # Only NOTIFY can carry this wake: the other runtime's in-process wake-ups know no waiter.
    assert_woken_by(other_process, runtime, server)


def _listener_pids(runtime: Runtime) -> set[int]:
    """The sessions LISTENing on the job channel (the certificates' channel has a listener too)."""
    with runtime.engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND query = :listen AND pid <> pg_backend_pid()"
            ),
            {"listen": f'LISTEN "{CHANNEL}"'},
        )
        return {row[0] for row in rows}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_server_listens_before_its_first_poll(runtime: Runtime, server: httpx.Client) -> None:
    # Started by the first wait instead, the listener would listen only after that poll looked, and
    # its first resync would wake the poll for a second look.
    assert len(_listener_pids(runtime)) == 1


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_listener_reconnects_after_losing_its_connection(
    runtime: Runtime, server: httpx.Client, other_process: Runtime
) -> None:
    connector = registered(runtime, server)
    poll = PollInBackground(connector, server, LONG_WAIT)
    wait_until_parked(runtime, connector)
    [lost] = _listener_pids(runtime)
    with runtime.engine.connect() as connection:
        connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": lost})
    deadline = time.monotonic() + 5
    while not _listener_pids(runtime) - {lost}:
        assert time.monotonic() < deadline, "the listener did not reconnect"
        time.sleep(0.05)
    wait_until_parked(runtime, connector)  # the reconnection woke it to look again; it found nothing

    created = time.perf_counter()
    job_id = add_job(other_process, connector)
    assert [job["id"] for job in poll.result()["jobs"]] == [job_id]
    assert poll.answered_at - created < PROMPT


def test_a_poll_counts_as_connected_while_it_waits(runtime: Runtime, server: httpx.Client) -> None:
    connector = registered(runtime, server)
    grace = dt.timedelta(seconds=runtime.settings.heartbeat_grace_seconds)
    poll = PollInBackground(connector, server, LONG_WAIT)
    wait_until_parked(runtime, connector)

    assert status_of(runtime, connector.connector_id) is ConnectorStatus.CONNECTED
    waiting_until = connector_row(runtime, connector.connector_id).connected_until
    assert waiting_until is not None
    assert waiting_until > runtime.now() + dt.timedelta(seconds=LONG_WAIT - 1) + grace

    add_job(runtime, connector)
    assert len(poll.result()["jobs"]) == 1
    answered_until = connector_row(runtime, connector.connector_id).connected_until
    assert answered_until is not None
    assert answered_until <= runtime.now() + grace  # pulled back when it answered
    assert status_of(runtime, connector.connector_id) is ConnectorStatus.CONNECTED


def test_a_short_poll_does_not_cut_a_waiting_one_short(runtime: Runtime, server: httpx.Client) -> None:
    # The agent reports a finished job with a short poll (capacity 0) while its long poll waits.
    connector = registered(runtime, server)
    poll = PollInBackground(connector, server, LONG_WAIT)
    wait_until_parked(runtime, connector)
    waiting_until = connector_row(runtime, connector.connector_id).connected_until

    assert connector.poll(server, capacity=0).status_code == 200

    assert connector_row(runtime, connector.connector_id).connected_until == waiting_until
    add_job(runtime, connector)
    poll.result()
    assert status_of(runtime, connector.connector_id) is ConnectorStatus.CONNECTED


def test_an_empty_poll_answers_when_its_wait_ends(runtime: Runtime, server: httpx.Client) -> None:
    connector = registered(runtime, server)
    started = time.monotonic()
    assert PollInBackground(connector, server, wait=0.5).result()["jobs"] == []
    assert 0.5 <= time.monotonic() - started < PROMPT


def test_goodbye_during_a_poll_is_not_undone_by_its_end(runtime: Runtime, server: httpx.Client) -> None:
    connector = registered(runtime, server)
    poll = PollInBackground(connector, server, wait=1.0)
    wait_until_parked(runtime, connector)

    assert connector.goodbye(server).status_code == 204
    poll.result()

    assert status_of(runtime, connector.connector_id) is ConnectorStatus.DISCONNECTED


def test_a_poll_its_connector_gave_up_on_claims_nothing(runtime: Runtime, server: httpx.Client) -> None:
    connector = registered(runtime, server)
    with pytest.raises(httpx.ReadTimeout):
        connector.poll(server, wait=LONG_WAIT, timeout=0.5)
    # The server notices the hang-up and ends its side of the poll at once, not when LONG_WAIT runs out.
    deadline = time.monotonic() + 5
    while runtime.wakeups.waiting(connector.connector_id):
        assert time.monotonic() < deadline, "the abandoned poll did not end"
        time.sleep(0.01)

    add_job(runtime, connector)
    # Not leased to the poll nobody reads: the next poll gets it, on its first attempt.
    assert [job["attempt"] for job in connector.poll(server).json()["jobs"]] == [1]


def test_concurrent_inventories_of_one_connector_agree(runtime: Runtime, server: httpx.Client) -> None:
    connector = registered(runtime, server)
    report = [backend_report("LocalCA", cas=[ca_report("root")]), backend_report("corp-aws", type="acmpca")]
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(lambda _: connector.inventory(server, report).status_code, range(6)))
    assert codes == [204] * 6
    with runtime.sessions.begin() as session:
        assert sorted(session.scalars(select(ManagedBackend.local_name))) == ["LocalCA", "corp-aws"]


def test_concurrent_polls_never_share_a_job(
    runtime: Runtime, settings: Settings, server: httpx.Client, request: pytest.FixtureRequest
) -> None:
    connector = registered(runtime, server)
    job_ids = {add_job(runtime, connector) for _ in range(40)}
    workers = 8
    with contextlib.ExitStack() as stack:
        clients = [server]
        if runtime.engine.dialect.name == "postgresql":
            # Two manager processes on one database: claims must not overlap across them either.
            other: Runtime = request.getfixturevalue("other_process")
            url = stack.enter_context(live_server(create_app(settings, runtime=other)))
            clients.append(stack.enter_context(httpx.Client(base_url=url)))
        start = threading.Barrier(workers)

        def drain(index: int) -> list[str]:
            client = clients[index % len(clients)]
            start.wait()
            received: list[str] = []
            while jobs := connector.poll(client, capacity=3, wait=0, timeout=30).json()["jobs"]:
                received += [job["id"] for job in jobs]
            return received

        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            delivered = [job_id for batch in pool.map(drain, range(workers)) for job_id in batch]

    assert sorted(delivered) == sorted(job_ids)  # each exactly once


# ---- revoking access cuts off the polls a connector has open ------------------------------------------


def _delete(runtime: Runtime, connector: FakeConnector) -> None:
    with runtime.sessions.begin() as session:
        row = connectors.get_connector(session, connector.connector_id)
        connectors.delete_connector(session, row, now=runtime.now(), actor="admin")


def assert_cut_off_by_delete(deleter: Runtime, runtime: Runtime, server: httpx.Client) -> None:
    connector = registered(runtime, server)
    poll = PollInBackground(connector, server, LONG_WAIT)
    wait_until_parked(runtime, connector)

    deleted = time.perf_counter()
    _delete(deleter, connector)
    answer = poll.answer()

    assert_problem(answer, 401, "connector_unknown", "deleted from the manager", "register -token T -force")
    assert poll.answered_at - deleted < PROMPT
    # The parked poll got exactly what a new request gets.
    assert connector.poll(server).json() == answer.json()


def test_deleting_a_connector_refuses_its_waiting_poll_at_once(
    runtime: Runtime, server: httpx.Client
) -> None:
    assert_cut_off_by_delete(runtime, runtime, server)


def test_a_delete_in_another_process_refuses_the_waiting_poll(
    runtime: Runtime, server: httpx.Client, other_process: Runtime
) -> None:
    # `ca-manager connector delete` runs in a process of its own: NOTIFY carries the wake on
    # PostgreSQL, the SQLite watcher notices the row gone.
    assert_cut_off_by_delete(other_process, runtime, server)


def test_the_old_keys_waiting_poll_is_refused_once_the_restore_token_is_used(
    runtime: Runtime, server: httpx.Client
) -> None:
    old = registered(runtime, server)
    poll = PollInBackground(old, server, LONG_WAIT)
    wait_until_parked(runtime, old)

    with runtime.sessions.begin() as session:
        row = connectors.get_connector(session, old.connector_id)
        token = connectors.restore_connector(
            session, row, now=runtime.now(), settings=runtime.settings, box=runtime.box, actor="admin"
        )
    time.sleep(0.8)  # longer than a SQLite watcher round: a restore alone cuts nothing off
    assert runtime.wakeups.waiting(old.connector_id) == 1

    new = FakeConnector(runtime.clock)
    registered_at = time.perf_counter()
    assert new.register(server, token, force=True).status_code == 200
    answer = poll.answer()

    assert_problem(answer, 401, "signature_invalid", "key was replaced")
    assert poll.answered_at - registered_at < PROMPT
    assert_problem(old.poll(server), 401, "signature_invalid")
    assert new.poll(server).status_code == 200
