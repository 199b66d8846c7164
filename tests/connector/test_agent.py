"""The agent against a fake manager speaking the real wire, with the real local CA backend: inventory,
jobs and their results, redeliveries answered from the journal, backend changes reported without a
restart, a clean stop on SIGTERM, the log line per job, and status."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509
from tests.connector.peers import FakeManager
from tests.support import EXECUTABLE, Result

from caconnector.backends.base import EnrollRequest, Issued
from caconnector.connector import backend_admin
from caconnector.connector.agent import Agent, AgentOptions
from caconnector.connector.agent_state import AgentStatus, read_state
from caconnector.connector.jobs import error_body
from caconnector.connector.journal import Journal
from caconnector.connector.store import ConnectorStore
from caconnector.protocol.messages import JobKind, JobMessage, JobOutcome, JobResult
from caconnector.testing import make_csr_pem

Run = Callable[..., Result]


def _result(manager: FakeManager, job_id: str) -> JobResult:
    """The job's result. Results are sent until acknowledged, so the manager may see one more than once
    (a stop abandons a long poll that carried it): every copy must be the same."""
    results = manager.results_for(job_id)
    assert results, f"no result for job {job_id}"
    assert all(r == results[0] for r in results)
    return results[0]


@pytest.fixture
def registered(cli: Run, manager: FakeManager) -> FakeManager:
    """A connector registered with the fake manager, with one local CA backend."""
    assert cli("register", "-token", manager.add_token("edge-1"), "-manager", manager.url).code == 0
    assert cli("backend", "add", "-name", "LocalCA", "-type", "local").code == 0
    return manager


@contextmanager
def running(datadir: Path, **options: float) -> Iterator[Agent]:
    agent = Agent(ConnectorStore(datadir), AgentOptions(log_to_stderr=False, **options))  # type: ignore[arg-type]
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(agent.run()))
    thread.start()
    try:
        yield agent
    finally:
        agent.stop()
        thread.join(timeout=30)
        assert not thread.is_alive()
    assert codes == [0]


def test_run_once_reports_inventory_runs_an_enroll_job_and_says_goodbye(
    cli: Run, datadir: Path, registered: FakeManager
) -> None:
    job_id = registered.add_job("enroll", "LocalCA", csr_pem=make_csr_pem(), request_id="req-1")
    result = cli("run", "-once", "-pollwait", "1")
    assert result.code == 0, result.err

    [inventory] = registered.inventories
    [backend] = inventory["backends"]
    assert (backend["name"], backend["type"], backend["status"]) == ("LocalCA", "local", "Available")
    ca = x509.load_pem_x509_certificate(backend["cas"][0]["certificate_pem"].encode())

    job_result = _result(registered, job_id)
    assert job_result.outcome is JobOutcome.OK and job_result.result is not None
    certificate = x509.load_pem_x509_certificate(job_result.result["certificate_pem"].encode())
    certificate.verify_directly_issued_by(ca)
    assert registered.goodbyes == 1

    state = read_state(datadir)
    assert state is not None and state.state is AgentStatus.STOPPED and state.last_contact is not None
    log = (datadir / "logs" / "ca-connector.log").read_text()
    assert f"job {job_id} kind=enroll backend=LocalCA request=req-1 outcome=ok duration=" in log


def test_run_once_without_registration_exits_1(cli: Run) -> None:
    result = cli("run", "-once")
    assert result.code == 1
    assert "not registered" in result.err


def test_a_redelivered_job_is_answered_from_the_journal_without_running_again(
    datadir: Path, registered: FakeManager
) -> None:
    csr = make_csr_pem()
    with running(datadir, poll_wait=1):
        job_id = registered.add_job("enroll", "LocalCA", csr_pem=csr, request_id="req-7")
        assert registered.wait_for(lambda: bool(registered.results_for(job_id)))
        # The manager lost the answer and delivers the same job again.
        registered.add_job("enroll", "LocalCA", job_id=job_id, csr_pem=csr, request_id="req-7")
        assert registered.wait_for(lambda: len(registered.results_for(job_id)) >= 2)

    first, second = registered.results_for(job_id)[:2]
    assert first == second
    with Journal(datadir / "journal.sqlite") as journal:
        entry = journal.get(job_id)
    assert entry is not None and entry.attempts == 1
    log = (datadir / "logs" / "ca-connector.log").read_text()
    assert log.count(f"job {job_id} kind=enroll") == 1
    assert f"job {job_id} (enroll) was delivered again: answered from the journal" in log


def test_an_enroll_interrupted_by_a_crash_is_run_again_and_gets_the_same_certificate(
    datadir: Path, registered: FakeManager
) -> None:
    csr = make_csr_pem()
    # The previous agent took the job and the CA signed, then the process died before the result was
    # recorded: the journal says "running" for another run, and the local CA holds the certificate.
    job = JobMessage(
        id="j-crash",
        kind=JobKind.ENROLL,
        backend="LocalCA",
        lease_expires_at=dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
    )
    with Journal(datadir / "journal.sqlite") as journal:
        journal.begin(job, "a-dead-run")
    opened = backend_admin.open_backend(ConnectorStore(datadir), "LocalCA")
    issued = opened.backend.enroll(
        EnrollRequest(csr=x509.load_pem_x509_csr(csr.encode()), request_id="req-crash")
    )
    with running(datadir, poll_wait=1):
        registered.add_job("enroll", "LocalCA", job_id="j-crash", csr_pem=csr, request_id="req-crash")
        assert registered.wait_for(lambda: bool(registered.results_for("j-crash")))

    job_result = _result(registered, "j-crash")
    assert job_result.result is not None
    again = x509.load_pem_x509_certificate(job_result.result["certificate_pem"].encode())
    assert isinstance(issued, Issued)
    assert again.serial_number == issued.certificate.serial_number  # not signed twice


def test_a_backend_added_by_another_process_is_reported_without_restart(
    cli: Run, datadir: Path, registered: FakeManager
) -> None:
    with running(datadir, poll_wait=1):
        assert registered.wait_for(lambda: len(registered.inventories) == 1)
        added = cli("backend", "add", "-name", "Second", "-type", "local", "-keytype", "ed25519")
        assert added.code == 0
        assert registered.wait_for(lambda: len(registered.inventories) == 2)
        assert cli("backend", "remove", "-name", "LocalCA").code == 0
        assert registered.wait_for(lambda: len(registered.inventories) == 3)
    names = [[b["name"] for b in inventory["backends"]] for inventory in registered.inventories]
    assert names == [["LocalCA"], ["LocalCA", "Second"], ["Second"]]


def test_failures_are_error_bodies_never_tracebacks(datadir: Path, registered: FakeManager) -> None:
    jobs = {
        registered.add_job(
            "enroll", "LocalCA", csr_pem=make_csr_pem(), request_id="r-1", template="nope"
        ): "rejected",
        registered.add_job("enroll", "LocalCA", csr_pem="not a CSR", request_id="r-2"): "rejected",
        registered.add_job("enroll", "Missing", csr_pem=make_csr_pem(), request_id="r-3"): "config_error",
        registered.add_job("enroll", "LocalCA", request_id="r-4"): "invalid_job",
        registered.add_job("revoke", "LocalCA", serial="01ab"): "rejected",
        registered.add_job("collect", "LocalCA", order_ref="o-1", request_id="r-5"): "not_supported",
        registered.add_job("teleport", "LocalCA"): "not_supported",
    }
    checked = registered.add_job("check", "LocalCA")
    scanned = registered.add_job("scan", "LocalCA")
    with running(datadir, poll_wait=1):
        wanted = [*jobs, checked, scanned]
        assert registered.wait_for(lambda: all(registered.results_for(j) for j in wanted))

    for job_id, code in jobs.items():
        result = _result(registered, job_id)
        assert result.outcome is JobOutcome.ERROR and result.error is not None
        assert result.error.code == code, result.error
        assert "Traceback" not in result.error.message
    check = _result(registered, checked)
    assert check.result is not None and check.result["status"] == "Available"
    scan = _result(registered, scanned)
    assert scan.outcome is JobOutcome.OK and scan.result == {"certificates": []}


def test_an_unexpected_exception_travels_as_its_type_name_only() -> None:
    body = error_body(RuntimeError("password=hunter2 in a foreign message"))
    assert body.code == "internal_error"
    assert body.message == "the connector failed unexpectedly (RuntimeError); see the connector's log"


def test_a_second_agent_on_the_same_data_directory_is_refused(
    cli: Run, datadir: Path, registered: FakeManager
) -> None:
    with running(datadir, poll_wait=1):
        assert registered.wait_for(lambda: bool(registered.polls))
        second = cli("run", "-once")
    assert second.code == 1
    assert "already using data directory" in second.err


def test_status_shows_registration_agent_and_service(
    cli: Run, datadir: Path, registered: FakeManager
) -> None:
    assert cli("run", "-once", "-pollwait", "0").code == 0
    view = json.loads(cli("status", "-json").out)
    assert view["registered"] is True and view["name"] == "edge-1"
    assert view["manager_url"] == registered.url
    assert view["backends"] == [{"name": "LocalCA", "type": "local"}]
    assert view["agent"]["state"] == "stopped" and view["agent"]["last_contact"]
    assert view["service"]["running"] is False  # no service runs it here: `run` did
    text = cli("status").out
    assert "edge-1" in text and "stopped" in text


@pytest.mark.slow
def test_sigterm_finishes_says_goodbye_and_exits_0(datadir: Path, registered: FakeManager) -> None:
    env = {**os.environ, "CA_CONNECTOR_HOME": str(datadir)}
    with subprocess.Popen(
        [EXECUTABLE, "run", "-pollwait", "5"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as agent:
        try:
            assert registered.wait_for(lambda: bool(registered.polls), timeout=30)
            job_id = registered.add_job("enroll", "LocalCA", csr_pem=make_csr_pem(), request_id="r-term")
            assert registered.wait_for(lambda: bool(registered.results_for(job_id)), timeout=30)
            agent.send_signal(signal.SIGTERM)
            _, stderr = agent.communicate(timeout=30)
        finally:
            if agent.poll() is None:
                agent.kill()
    assert agent.returncode == 0, stderr
    assert registered.goodbyes == 1
    assert "ca-connector stopped" in stderr
    state = read_state(datadir)
    assert state is not None and state.state is AgentStatus.STOPPED


def test_agent_state_is_refused_while_the_manager_refuses(datadir: Path, registered: FakeManager) -> None:
    registered.refusal = (401, "connector_unknown")
    with running(datadir, poll_wait=1):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            state = read_state(datadir)
            if state is not None and state.state is AgentStatus.REFUSED:
                break
            time.sleep(0.05)
    assert state is not None and state.state is AgentStatus.REFUSED
    assert state.last_error is not None and "deleted from the manager" in state.last_error
    assert state.last_error.count("add it again") == 1  # one sentence, not the fix said twice
    assert registered.goodbyes == 0  # a refused connector does not say goodbye
