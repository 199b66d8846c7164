"""The lifecycle exactly once, on SQLite and PostgreSQL: pending orders collected when the CA said,
retries that reuse the request id (so the CA issues once), permanent errors, late and duplicate answers,
redelivery after a lease runs out, scans that import each certificate once, the scheduler's claims,
and `wait` against a real server."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from cryptography import x509
from fastapi import FastAPI
from sqlalchemy import select
from tests.manager.conftest import Caller, FakeClock
from tests.manager.lifecycle_support import (
    API,
    Lab,
    certificate,
    count,
    create_profile,
    enroll,
    error,
    issued_body,
    jobs_of,
    make_csr,
    make_lab,
    ok,
    pending,
)
from tests.manager.live import live_server

from caconnector.backends.base import EnrollRequest
from caconnector.manager.app import create_app
from caconnector.manager.db.models import AuditEvent, Certificate
from caconnector.manager.runtime import Runtime, build_runtime
from caconnector.manager.services.dispatch import create_job
from caconnector.manager.services.retry import RetryPolicy
from caconnector.manager.services.scheduler import Scheduler, run_due
from caconnector.manager.settings import Settings
from caconnector.pki.csr import load_csr
from caconnector.pki.serial import canonical_serial
from caconnector.protocol.messages import JobKind


@pytest.fixture
def lab(runtime: Runtime, client: httpx.Client, tmp_path: Path) -> Lab:
    return make_lab(runtime, client, tmp_path)


@pytest.fixture
def profile(client: httpx.Client, admin: Caller, lab: Lab) -> dict[str, Any]:
    return create_profile(client, admin, lab)


@pytest.fixture
def frozen(runtime: Runtime, clock: FakeClock) -> FakeClock:
    """A clock that moves only when told, and a retry policy without jitter: exact times."""
    clock.advance(seconds=0)
    runtime.retry = RetryPolicy(jitter=0.0, rng=random.Random(0))  # noqa: S311 - jitter, not cryptography
    return clock


def due(runtime: Runtime) -> list[tuple[str, str | None]]:
    """One scheduler round now: (kind, certificate id) of each job it made."""
    with runtime.sessions.begin() as session:
        return [(job.kind, job.certificate_id) for job in run_due(session, runtime.now())]


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def requested(client: httpx.Client, caller: Caller, csr: str | None = None) -> str:
    response = enroll(client, caller, csr or make_csr()[0])
    assert response.status_code == 202, response.text
    certificate_id: str = response.json()["id"]
    return certificate_id


# ---- pending, retries, failures ----------------------------------------------------------------------


@pytest.mark.usefixtures("profile")
def test_a_pending_order_is_collected_when_the_ca_said_then_issued(
    client: httpx.Client, runtime: Runtime, frozen: FakeClock, operator: Caller, lab: Lab
) -> None:
    csr, _ = make_csr()
    certificate_id = requested(client, operator, csr)
    [job] = lab.take(client)
    lab.send(client, pending(job["id"], "order-17", "awaiting domain validation", retry_after=600))

    view = certificate(client, operator, certificate_id)
    assert (view["status"], view["order_ref"], view["reason"]) == (
        "Pending",
        "order-17",
        "awaiting domain validation",
    )
    assert at(view["next_attempt_at"]) == frozen.current + dt.timedelta(seconds=600)
    assert due(runtime) == []
    frozen.advance(seconds=599)
    assert due(runtime) == []
    frozen.advance(seconds=1)
    assert due(runtime) == [("collect", certificate_id)]
    assert due(runtime) == []  # claimed: the next round does not collect it again

    [collect] = lab.take(client)
    assert collect["payload"] == {"order_ref": "order-17", "request_id": certificate_id}
    issued = lab.ca.enroll(EnrollRequest(csr=load_csr(csr.encode()), request_id=certificate_id))
    lab.send(client, ok(collect["id"], issued_body(issued)))
    view = certificate(client, operator, certificate_id)
    assert (view["status"], view["attempts"], view["next_attempt_at"]) == ("Issued", 2, None)
    assert view["order_ref"] == "order-17"


@pytest.mark.usefixtures("profile")
def test_a_retryable_error_is_retried_with_the_same_request_id_and_the_ca_issues_once(
    client: httpx.Client, runtime: Runtime, frozen: FakeClock, operator: Caller, lab: Lab
) -> None:
    certificate_id = requested(client, operator)
    [first] = lab.take(client)
    # The CA issued, but the connector timed out waiting for it: the answer is a transient error.
    lost = lab.answer(first)
    lab.send(client, error(first["id"], "transient", "the CA did not answer in time", retryable=True))

    view = certificate(client, operator, certificate_id)
    assert view["status"] == "Requested"
    assert view["error"] == {
        "code": "transient",
        "message": "the CA did not answer in time",
        "retryable": True,
    }
    assert view["reason"] == "the CA did not answer in time; trying again"
    assert at(view["next_attempt_at"]) == frozen.current + dt.timedelta(seconds=5)
    assert due(runtime) == []
    frozen.advance(seconds=5)
    assert due(runtime) == [("enroll", certificate_id)]

    [second] = lab.take(client)
    assert second["id"] != first["id"]
    assert second["payload"] == first["payload"]  # the same request_id: the certificate's id
    lab.send(client, lab.answer(second))
    view = certificate(client, operator, certificate_id)
    assert (view["status"], view["attempts"], view["error"]) == ("Issued", 2, None)
    first_issue = x509.load_pem_x509_certificate(lost["result"]["certificate_pem"].encode())
    assert view["serial"] == canonical_serial(first_issue.serial_number)
    assert len(list(lab.ca.scan())) == 1  # ordered once


@pytest.mark.usefixtures("profile")
def test_a_rejection_fails_at_once_with_the_reason(
    client: httpx.Client, runtime: Runtime, frozen: FakeClock, operator: Caller, lab: Lab
) -> None:
    certificate_id = requested(client, operator, make_csr(dns=())[0])  # names no host: the CA refuses
    lab.work(client)

    view = certificate(client, operator, certificate_id)
    assert view["status"] == "Failed"
    assert view["error"] == {
        "code": "rejected",
        "message": "the CSR names no host: add a subjectAltName DNS or IP entry",
        "retryable": False,
    }
    assert view["reason"] == view["error"]["message"]
    frozen.advance(days=1)
    assert due(runtime) == []


@pytest.mark.usefixtures("profile")
def test_retries_give_up_after_max_attempts(
    client: httpx.Client, runtime: Runtime, frozen: FakeClock, operator: Caller, lab: Lab
) -> None:
    runtime.retry = RetryPolicy(max_attempts=3, jitter=0.0)
    certificate_id = requested(client, operator)
    for attempt in range(3):
        [job] = lab.take(client)
        lab.send(client, error(job["id"], "transient", f"503 number {attempt + 1}", retryable=True))
        frozen.advance(hours=1)
        due(runtime)

    view = certificate(client, operator, certificate_id)
    assert view["status"] == "Failed"
    assert view["error"] == {
        "code": "transient",
        "message": "gave up after 3 attempts: 503 number 3",
        "retryable": False,
    }
    assert [j.kind for j in jobs_of(runtime, certificate_id)] == ["enroll"] * 3


@pytest.mark.usefixtures("profile")
def test_a_certificate_for_another_key_fails_the_request(
    client: httpx.Client, operator: Caller, lab: Lab
) -> None:
    certificate_id = requested(client, operator)
    [job] = lab.take(client)
    other_csr, _ = make_csr()
    other = lab.ca.enroll(EnrollRequest(csr=load_csr(other_csr.encode()), request_id="someone-else"))
    lab.send(client, ok(job["id"], issued_body(other)))

    view = certificate(client, operator, certificate_id)
    assert view["status"] == "Failed"
    assert view["error"]["message"] == "the CA returned a certificate for another key"
    assert view["serial"] is None


@pytest.mark.usefixtures("profile")
def test_a_serial_another_request_holds_fails_the_second_request(
    client: httpx.Client, operator: Caller, lab: Lab
) -> None:
    csr, _ = make_csr()
    first, second = requested(client, operator, csr), requested(client, operator, csr)  # one key
    jobs = {job["payload"]["request_id"]: job for job in lab.take(client)}
    answer = lab.answer(jobs[first])
    lab.send(client, answer)
    # The CA answers the second request with the first's certificate: the same key, the same serial.
    lab.send(client, {**answer, "job_id": jobs[second]["id"]})

    issued = certificate(client, operator, first)
    assert issued["status"] == "Issued"
    view = certificate(client, operator, second)
    assert view["status"] == "Failed"
    assert view["error"]["message"] == (
        f"the CA returned serial {issued['serial']}, which another request of this manager already holds"
    )
    assert view["serial"] is None


# ---- exactly once ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("profile")
def test_a_late_answer_for_an_issued_certificate_changes_nothing(
    client: httpx.Client, runtime: Runtime, operator: Caller, lab: Lab
) -> None:
    certificate_id = requested(client, operator)
    lab.work(client)
    before = certificate(client, operator, certificate_id)
    with runtime.sessions.begin() as session:  # a stray second job for it, answered with another certificate
        create_job(
            session,
            lab.connector.connector_id,
            JobKind.ENROLL,
            backend_name="lab",
            payload={},
            now=runtime.now(),
            certificate_id=certificate_id,
        )
    [stray] = lab.take(client)
    other_csr, _ = make_csr()
    other = lab.ca.enroll(EnrollRequest(csr=load_csr(other_csr.encode()), request_id="stray"))
    lab.send(client, ok(stray["id"], issued_body(other)))

    assert certificate(client, operator, certificate_id) == before
    with runtime.sessions.begin() as session:
        issued = session.scalars(select(AuditEvent).where(AuditEvent.action == "certificate.issued")).all()
        assert len(issued) == 1


@pytest.mark.usefixtures("profile")
def test_a_redelivered_enroll_job_answered_twice_gives_one_certificate(
    client: httpx.Client, runtime: Runtime, frozen: FakeClock, operator: Caller, lab: Lab
) -> None:
    certificate_id = requested(client, operator)
    [first] = lab.take(client)
    frozen.advance(seconds=runtime.settings.lease_seconds + 1)  # the connector went quiet: redelivered
    [again] = lab.take(client)
    assert (again["id"], again["attempt"]) == (first["id"], 2)

    late = lab.answer(first)  # the first delivery, finishing late
    answer = lab.answer(again)  # the same request id: the CA hands back what it issued
    lab.send(client, answer)
    lab.send(client, late)

    assert count(runtime, Certificate) == 1
    view = certificate(client, operator, certificate_id)
    assert (view["status"], view["attempts"]) == ("Issued", 1)
    assert len(list(lab.ca.scan())) == 1


@pytest.mark.usefixtures("profile")
def test_a_job_its_connector_never_answers_is_given_up_after_max_deliveries(
    client: httpx.Client, runtime: Runtime, frozen: FakeClock, operator: Caller, lab: Lab
) -> None:
    certificate_id = requested(client, operator)
    deliveries = []
    for _ in range(runtime.settings.max_deliveries):
        [job] = lab.take(client)  # delivered, then the connector dies on it: no answer
        deliveries.append(job["attempt"])
        frozen.advance(seconds=runtime.settings.lease_seconds + 1)
    assert deliveries == list(range(1, runtime.settings.max_deliveries + 1))

    assert lab.take(client) == []  # not handed out a sixth time
    view = certificate(client, operator, certificate_id)
    assert view["status"] == "Failed"
    assert view["error"]["code"] == "undeliverable"
    assert view["error"]["retryable"] is False
    assert "without answering" in view["error"]["message"]
    assert due(runtime) == []  # and the scheduler does not order it again


# ---- scan --------------------------------------------------------------------------------------------


def scan(client: httpx.Client, caller: Caller, lab: Lab) -> dict[str, Any]:
    response = client.post(f"{API}/backends/{lab.backend_id}/scan", headers=caller.headers)
    assert response.status_code == 202, response.text
    job_id = response.json()["job"]["id"]
    [job] = lab.work(client)
    assert job["id"] == job_id
    result: dict[str, Any] = client.get(f"{API}/jobs/{job_id}", headers=caller.headers).json()["result"]
    return result


def test_a_scan_imports_what_the_manager_does_not_know_once(
    client: httpx.Client, runtime: Runtime, operator: Caller, lab: Lab, profile: Any
) -> None:
    ours = [requested(client, operator) for _ in range(2)]
    lab.work(client)
    elsewhere_csr, _ = make_csr(dns=("legacy.example.test",))
    elsewhere = lab.ca.enroll(EnrollRequest(csr=load_csr(elsewhere_csr.encode()), request_id="cli-1"))

    result = scan(client, operator, lab)
    assert result == {"found": 3, "imported": 1, "already_known": 2, "invalid": 0, "errors": []}
    serial = canonical_serial(elsewhere.certificate.serial_number)
    [imported] = client.get(
        f"{API}/certificates", params={"serial": serial}, headers=operator.headers
    ).json()["items"]
    assert imported["id"] not in ours
    assert (imported["source"], imported["status"], imported["profile"]) == ("scan", "Issued", None)
    assert (imported["backend"], imported["ca"]) == (lab.backend_id, lab.ca_id)
    assert imported["sans"] == ["DNS:legacy.example.test"]

    assert scan(client, operator, lab) == {
        "found": 3,
        "imported": 0,
        "already_known": 3,
        "invalid": 0,
        "errors": [],
    }
    assert count(runtime, Certificate) == 3
    renew = client.post(f"{API}/certificates/{imported['id']}/renew", json={}, headers=operator.headers)
    assert renew.status_code == 409
    assert "imported by a scan" in renew.json()["detail"]


@pytest.mark.usefixtures("profile")
def test_a_certificate_a_scan_found_first_gives_way_to_its_request(
    client: httpx.Client, runtime: Runtime, operator: Caller, lab: Lab
) -> None:
    certificate_id = requested(client, operator)
    [job] = lab.take(client)
    answer = lab.answer(job)  # issued at the CA; the answer is still on its way
    assert scan(client, operator, lab)["imported"] == 1
    lab.send(client, answer)

    assert count(runtime, Certificate) == 1
    view = certificate(client, operator, certificate_id)
    assert (view["status"], view["source"]) == ("Issued", "enroll")


# ---- the scheduler -----------------------------------------------------------------------------------


def pending_rows(runtime: Runtime, lab: Lab, n: int) -> list[str]:
    now = runtime.now()
    ids = []
    with runtime.sessions.begin() as session:
        for i in range(n):
            row = Certificate(
                backend_id=lab.backend_id,
                ca_id=lab.ca_id,
                status="Pending",
                source="enroll",
                subject=f"CN=host{i}",
                sans=[],
                key_type="ec-p256",
                chain_pem=[],
                order_ref=f"order-{i}",
                attempts=1,
                failures=0,
                next_attempt_at=now,
                created_at=now,
                updated_at=now,
            )
            session.add(row)
            session.flush()
            ids.append(row.id)
    return ids


@pytest.fixture
def other_process(settings: Settings) -> Iterator[Runtime]:
    other = build_runtime(settings)
    yield other
    other.close_wakeups()
    other.engine.dispose()


def test_two_managers_never_both_act_on_a_due_certificate(
    runtime: Runtime, other_process: Runtime, lab: Lab
) -> None:
    ids = pending_rows(runtime, lab, 40)

    def rounds(each: Runtime) -> list[str | None]:
        made = []
        for _ in range(20):
            with each.sessions.begin() as session:
                made += [job.certificate_id for job in run_due(session, each.now(), batch=3)]
        return made

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(rounds, [runtime, other_process, runtime, other_process]))
    made = [c for result in results for c in result]
    assert sorted(cast("list[str]", made)) == sorted(ids)  # each once, none twice


def test_the_scheduler_runs_in_the_background_and_stops_cleanly(runtime: Runtime, lab: Lab) -> None:
    [certificate_id] = pending_rows(runtime, lab, 1)

    async def main() -> None:
        scheduler = Scheduler(runtime, interval=0.05)
        scheduler.start()
        deadline = time.monotonic() + 10
        while not jobs_of(runtime, certificate_id):
            assert time.monotonic() < deadline, "the scheduler made no job"
            await asyncio.sleep(0.02)
        async with asyncio.timeout(5):
            await scheduler.stop()

    asyncio.run(main())
    assert [j.kind for j in jobs_of(runtime, certificate_id)] == ["collect"]


# ---- wait, against a real server ---------------------------------------------------------------------


@pytest.fixture
def server(app: FastAPI) -> Iterator[httpx.Client]:
    with live_server(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


@pytest.fixture
def served(server: httpx.Client, runtime: Runtime, admin: Caller, tmp_path: Path) -> Lab:
    """The lab on the real server, with profile `web`."""
    lab = make_lab(runtime, server, tmp_path)
    create_profile(server, admin, lab)
    return lab


def test_wait_answers_201_with_the_certificate_once_issued(
    server: httpx.Client, served: Lab, operator: Caller
) -> None:
    with served.serving(server):
        started = time.monotonic()
        response = enroll(server, operator, make_csr()[0], wait=20)
        elapsed = time.monotonic() - started

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "Issued"
    assert body["certificate"].startswith("-----BEGIN CERTIFICATE-----")
    assert body["chain"] == [served.ca_report()["certificate_pem"]]
    assert response.headers["location"] == f"/api/v1/certificates/{body['id']}"
    assert elapsed < 15  # woken by the result, not by the end of the wait


def test_wait_ends_with_202_when_no_connector_answers(
    server: httpx.Client, served: Lab, operator: Caller
) -> None:
    started = time.monotonic()
    response = enroll(server, operator, make_csr()[0], wait=0.5)
    assert time.monotonic() - started >= 0.5
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "Requested"
    assert response.json()["reason"] == "waiting for connector dc1 to take the request"
    too_long = enroll(server, operator, make_csr()[0], wait=121)
    assert too_long.status_code == 422


def test_wait_sees_a_result_stored_by_another_manager_process(
    server: httpx.Client, served: Lab, other_process: Runtime, operator: Caller
) -> None:
    """PostgreSQL: the job and then the result wake the other process through NOTIFY. SQLite (one
    manager process in production) has no such wake: the short polls and the wait's re-check carry it."""
    other_app = create_app(other_process.settings, runtime=other_process)
    with (
        live_server(other_app) as other_url,
        httpx.Client(base_url=other_url, timeout=30) as other,
        served.serving(other),
    ):
        response = enroll(server, operator, make_csr()[0], wait=20)
    assert response.status_code == 201, response.text


def test_revoke_can_wait_too(server: httpx.Client, served: Lab, operator: Caller) -> None:
    with served.serving(server):
        issued = enroll(server, operator, make_csr()[0], wait=20).json()
        response = server.post(
            f"{API}/certificates/{issued['id']}/revoke",
            json={"reason": "superseded", "wait": 20},
            headers=operator.headers,
        )
    assert response.status_code == 200, response.text
    assert response.json()["certificate"]["status"] == "Revoked"


# ---- what a connector may get wrong ------------------------------------------------------------------


@pytest.mark.usefixtures("profile")
def test_an_unreadable_certificate_fails_the_request_not_the_poll(
    client: httpx.Client, operator: Caller, lab: Lab
) -> None:
    certificate_id = requested(client, operator)
    [job] = lab.take(client)
    lab.send(
        client, ok(job["id"], {"certificate_pem": "-----BEGIN CERTIFICATE-----\nAAAA\n", "chain_pem": []})
    )

    view = certificate(client, operator, certificate_id)
    assert view["status"] == "Failed"
    assert view["error"]["code"] == "invalid_result"
    assert "not readable PEM" in view["error"]["message"]


def test_a_malformed_scan_result_becomes_the_jobs_error(
    client: httpx.Client, operator: Caller, lab: Lab
) -> None:
    response = client.post(f"{API}/backends/{lab.backend_id}/scan", headers=operator.headers)
    job_id = response.json()["job"]["id"]
    lab.work(client, lambda job: ok(job["id"], {"certificates": "all of them"}))

    job = client.get(f"{API}/jobs/{job_id}", headers=operator.headers).json()
    assert (job["status"], job["outcome"], job["error"]["code"]) == ("done", "error", "invalid_result")


def test_check_asks_for_a_check_and_an_absent_backend_cannot_be_scanned(
    client: httpx.Client, operator: Caller, lab: Lab
) -> None:
    check = client.post(f"{API}/backends/{lab.backend_id}/check", headers=operator.headers)
    assert check.status_code == 202, check.text
    assert check.json()["job"]["kind"] == "check"
    assert lab.connector.inventory(client, []).status_code == 204  # the connector stopped reporting it
    scan_absent = client.post(f"{API}/backends/{lab.backend_id}/scan", headers=operator.headers)
    assert scan_absent.status_code == 409
    assert "no longer reports backend 'lab'" in scan_absent.json()["detail"]
