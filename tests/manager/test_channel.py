"""The connector channel on SQLite and PostgreSQL: registration, signed requests, inventory, the job
round trip through the poll, leases and liveness. Long polls that wait are in test_long_poll.py."""

from __future__ import annotations

import concurrent.futures
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import delete, select
from tests.manager.conftest import Caller, FakeClock
from tests.manager.connector_support import (
    FakeConnector,
    add_connector,
    assert_problem,
    backend_report,
    ca_report,
    connector_row,
    new_token,
    registered,
    status_of,
)
from tests.manager.live import live_server

from caconnector.manager.db.models import AuditEvent, Connector, Job, SeenRequest
from caconnector.manager.runtime import Runtime
from caconnector.manager.services.dispatch import create_job
from caconnector.manager.services.status import ConnectorStatus
from caconnector.protocol import messages

API = "/api/v1"


# ---- registration ------------------------------------------------------------------------------------


def test_register_binds_the_key_and_uses_the_token(client: TestClient, runtime: Runtime) -> None:
    connector = FakeConnector(runtime.clock)
    response = connector.register(client, add_connector(runtime, "dc1"), hostname="ca-host.corp")

    assert response.status_code == 200, response.text
    body = messages.RegisterResponse.model_validate(response.json())
    assert body.name == "dc1"
    assert body.poll_wait_seconds == runtime.settings.poll_wait_seconds
    assert body.inventory_interval_seconds == runtime.settings.inventory_interval_seconds
    row = connector_row(runtime, body.connector_id)
    assert row.token_used_at is not None
    assert row.token_sealed is None  # nothing left for the admin to see
    assert row.public_key_pem is not None
    assert row.public_key_pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert (row.hostname, row.version, row.protocol_version) == ("ca-host.corp", "0.1.0", "1.0")
    assert row.registered_at == row.last_seen
    assert status_of(runtime, body.connector_id) is ConnectorStatus.CONNECTED
    with runtime.sessions.begin() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "connector.register")).one()
        assert (event.actor, event.target) == ("connector:dc1", f"connector:{body.connector_id}")

    hello = connector.hello(client)
    assert hello.status_code == 200, hello.text
    assert hello.json()["connector_id"] == body.connector_id
    assert hello.json()["name"] == "dc1"


def test_a_token_is_single_use(client: TestClient, runtime: Runtime) -> None:
    token = add_connector(runtime, "dc1")
    assert FakeConnector(runtime.clock).register(client, token).status_code == 200

    again = FakeConnector(runtime.clock).register(client, token, force=True)
    assert_problem(
        again, 409, "token_used", "a failed install needs a new token", "connector restore -name dc1"
    )


def test_concurrent_registrations_with_one_token_let_exactly_one_win(app: Any, runtime: Runtime) -> None:
    token = add_connector(runtime, "dc1")
    with live_server(app) as url, httpx.Client(base_url=url) as client:

        def attempt(_: int) -> int:
            return FakeConnector(runtime.clock).register(client, token).status_code

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            codes = sorted(pool.map(attempt, range(8)))
    assert codes == [200] + [409] * 7


def test_an_unknown_token_is_refused(client: TestClient, runtime: Runtime) -> None:
    add_connector(runtime, "dc1")
    response = FakeConnector(runtime.clock).register(client, "cat_not-a-token")
    assert_problem(response, 401, "token_invalid")


def test_an_expired_token_is_refused(client: TestClient, runtime: Runtime, clock: FakeClock) -> None:
    token = add_connector(runtime, "dc1")
    clock.advance(hours=25)
    response = FakeConnector(runtime.clock).register(client, token)
    assert_problem(response, 401, "token_expired", "connector restore -name dc1")


def test_bad_registrations_leave_the_token_usable(client: TestClient, runtime: Runtime) -> None:
    token = add_connector(runtime, "dc1")
    connector = FakeConnector(runtime.clock)

    old_major = connector.register(client, token, protocol_version="2.0")
    assert_problem(old_major, 400, "protocol_version", "same major version")
    not_a_key = connector.register(client, token, public_key="-----BEGIN PUBLIC KEY-----\nnope\n")
    assert_problem(not_a_key, 400, "invalid_request", "public_key")
    missing = client.post(messages.REGISTER_PATH, json={"token": token})
    assert_problem(missing, 422, "invalid_request", "public_key")

    assert connector.register(client, token).status_code == 200


def test_over_long_values_are_refused_not_a_database_error(client: TestClient, runtime: Runtime) -> None:
    connector = FakeConnector(runtime.clock)
    token = add_connector(runtime, "dc1")
    # The wire models bound every field (protocol.text): a 422 naming the field, like any invalid body.
    assert_problem(connector.register(client, token, hostname="h" * 300), 422, "invalid_request", "hostname")
    assert connector.register(client, token).status_code == 200

    too_long = connector.inventory(client, [backend_report("b" * 200)])
    assert_problem(too_long, 422, "invalid_request", "backends[0].name")
    bad_ca = connector.inventory(
        client, [backend_report("LocalCA", cas=[ca_report("root", serial="0" * 100)])]
    )
    assert_problem(bad_ca, 422, "invalid_request", "backends[0].cas[0].serial")


def test_register_again_needs_force_and_a_restore_token(client: TestClient, runtime: Runtime) -> None:
    first = registered(runtime, client)
    restore_token = new_token(runtime, first.connector_id)

    replacement = FakeConnector(runtime.clock)
    refused = replacement.register(client, restore_token)
    assert_problem(refused, 409, "already_registered", "register -force")
    assert first.hello(client).status_code == 200  # a refused attempt changes nothing

    forced = replacement.register(client, restore_token, force=True)
    assert forced.status_code == 200, forced.text
    assert forced.json()["connector_id"] == first.connector_id
    assert replacement.hello(client).status_code == 200
    assert_problem(first.hello(client), 401, "signature_invalid")  # the old key stopped working


# ---- signed requests ---------------------------------------------------------------------------------


def test_requests_without_a_valid_signature_are_refused(client: TestClient, runtime: Runtime) -> None:
    connector = registered(runtime, client)

    assert_problem(client.get(messages.HELLO_PATH), 401, "signature_invalid", "Authorization")
    garbled = client.get(messages.HELLO_PATH, headers={"Authorization": "Bearer not.a.jwt"})
    assert_problem(garbled, 401, "signature_invalid")

    for_poll = connector.auth("POST", messages.POLL_PATH)
    inventory = {"hostname": "h", "version": "v", "backends": []}
    wrong_path = client.post(messages.INVENTORY_PATH, json=inventory, headers=for_poll)
    assert_problem(wrong_path, 401, "signature_invalid", "another method or path")

    impostor = FakeConnector(runtime.clock, connector_id=connector.connector_id)  # another key, same id
    assert_problem(impostor.hello(client), 401, "signature_invalid", "does not verify")


def test_a_replayed_request_is_refused(client: TestClient, runtime: Runtime) -> None:
    connector = registered(runtime, client)
    headers = connector.auth("GET", messages.HELLO_PATH)

    assert client.get(messages.HELLO_PATH, headers=headers).status_code == 200
    assert_problem(client.get(messages.HELLO_PATH, headers=headers), 401, "replayed")
    with runtime.sessions.begin() as session:
        assert session.scalars(select(SeenRequest.connector_id)).all() == [connector.connector_id]


def _queue_inventory(runtime: Runtime, connector_id: str) -> str:
    """An inventory job of the whole connector, queued as the manager queues one; its id."""
    with runtime.sessions.begin() as session:
        job = create_job(
            session,
            connector_id,
            messages.JobKind.INVENTORY,
            backend_name=None,
            payload={},
            now=runtime.now(),
        )
        return job.id


def test_a_replayed_poll_is_refused_before_it_claims_anything(
    client: TestClient, runtime: Runtime, clock: FakeClock
) -> None:
    """A poll's replay check is made in the poll's own unit of work: a replay is refused there, with
    nothing claimed, and the first poll counts as contact (its jti remembered, last_seen moved)."""
    connector = registered(runtime, client)
    clock.advance(hours=1)
    headers = connector.auth("POST", messages.POLL_PATH)
    body = {"wait_seconds": 0, "capacity": 4, "results": [], "running": []}

    assert client.post(messages.POLL_PATH, json=body, headers=headers).json()["jobs"] == []
    assert connector_row(runtime, connector.connector_id).last_seen == clock()
    job_id = _queue_inventory(runtime, connector.connector_id)
    assert_problem(client.post(messages.POLL_PATH, json=body, headers=headers), 401, "replayed")
    with runtime.sessions.begin() as session:
        assert session.scalars(select(SeenRequest.connector_id)).all() == [connector.connector_id]
        assert session.get_one(Job, job_id).status == "queued"
    assert [j["id"] for j in connector.poll(client).json()["jobs"]] == [job_id]  # signed anew: delivered


def test_a_deleted_connector_is_unknown(client: TestClient, runtime: Runtime) -> None:
    connector = registered(runtime, client)
    with runtime.sessions.begin() as session:
        session.execute(delete(Connector).where(Connector.id == connector.connector_id))
    assert_problem(connector.hello(client), 401, "connector_unknown", "add it again")


def test_a_connector_not_seen_for_31_days_is_expired_until_restored(
    client: TestClient, runtime: Runtime, clock: FakeClock
) -> None:
    connector = registered(runtime, client)
    clock.advance(days=31)

    assert_problem(connector.hello(client), 403, "connector_expired", "connector restore -name dc1", "-force")
    assert status_of(runtime, connector.connector_id) is ConnectorStatus.EXPIRED

    restored = FakeConnector(runtime.clock)
    assert (
        restored.register(client, new_token(runtime, connector.connector_id), force=True).status_code == 200
    )
    assert restored.hello(client).status_code == 200


def test_contact_updates_last_seen(client: TestClient, runtime: Runtime, clock: FakeClock) -> None:
    connector = registered(runtime, client)
    clock.advance(hours=2)
    assert connector.hello(client).status_code == 200
    assert connector_row(runtime, connector.connector_id).last_seen == clock()


# ---- inventory ---------------------------------------------------------------------------------------


def backends_by_name(client: TestClient, caller: Caller) -> dict[str, dict[str, Any]]:
    response = client.get(f"{API}/backends", headers=caller.headers)
    assert response.status_code == 200, response.text
    return {b["local_backend"]: b for b in response.json()["items"]}


def test_inventory_creates_backends_and_cas(
    client: TestClient, runtime: Runtime, auditor: Caller, clock: FakeClock
) -> None:
    connector = registered(runtime, client)
    local = backend_report("LocalCA", cas=[ca_report("root"), ca_report("issuing")], templates=["server"])
    aws = backend_report("corp-aws", type="acmpca", status="Offline", error="AccessDenied: check -role")

    assert connector.inventory(client, [local, aws]).status_code == 204

    row = connector_row(runtime, connector.connector_id)
    assert (row.hostname, row.version) == ("dc1.example.test", "0.1.1")
    seen = backends_by_name(client, auditor)
    assert seen["LocalCA"]["status"] == "Available"
    assert seen["LocalCA"]["name"] == "LocalCA"
    assert seen["LocalCA"]["connector"] == connector.connector_id
    assert seen["LocalCA"]["templates"] == ["server"]
    assert sorted(ca["ref"] for ca in seen["LocalCA"]["cas"]) == ["issuing", "root"]
    assert seen["corp-aws"]["status"] == "Offline"
    assert seen["corp-aws"]["error"] == "AccessDenied: check -role"
    cas = client.get(f"{API}/cas", headers=auditor.headers).json()["items"]
    assert {ca["ref"] for ca in cas} == {"issuing", "root"}
    assert {ca["backend"] for ca in cas} == {seen["LocalCA"]["id"]}

    # Its connector gone quiet, a backend shows Offline whatever it last reported.
    clock.advance(seconds=runtime.settings.heartbeat_grace_seconds + 1)
    assert backends_by_name(client, auditor)["LocalCA"]["status"] == "Offline"


def test_a_backend_no_longer_reported_is_kept_as_absent(
    client: TestClient, runtime: Runtime, auditor: Caller
) -> None:
    connector = registered(runtime, client)
    local = backend_report("LocalCA", cas=[ca_report("root"), ca_report("issuing")])
    assert connector.inventory(client, [local, backend_report("corp-aws", type="acmpca")]).status_code == 204
    first = backends_by_name(client, auditor)

    assert (
        connector.inventory(client, [backend_report("LocalCA", cas=[ca_report("root")])]).status_code == 204
    )

    second = backends_by_name(client, auditor)
    assert second["corp-aws"]["id"] == first["corp-aws"]["id"]
    assert second["corp-aws"]["present"] is False
    assert second["corp-aws"]["status"] == "Offline"
    assert second["LocalCA"]["id"] == first["LocalCA"]["id"]
    assert second["LocalCA"]["present"] is True
    assert {ca["ref"]: ca["state"] for ca in second["LocalCA"]["cas"]} == {
        "root": "active",
        "issuing": "absent",
    }


def test_names_listed_twice_update_one_row(client: TestClient, runtime: Runtime, auditor: Caller) -> None:
    connector = registered(runtime, client)
    twice = backend_report("LocalCA", cas=[ca_report("root"), ca_report("root", name="Root again")])
    naive = ca_report("issuing", not_after="2035-01-01T00:00:00")  # no zone: read as UTC
    again = backend_report("LocalCA", cas=[ca_report("root"), naive])

    assert connector.inventory(client, [twice, again]).status_code == 204

    [seen] = backends_by_name(client, auditor).values()
    assert sorted(ca["ref"] for ca in seen["cas"]) == ["issuing", "root"]
    assert {ca["not_after"] for ca in seen["cas"]} == {"2035-01-01T00:00:00Z"}


def test_an_offline_report_keeps_what_was_known(
    client: TestClient, runtime: Runtime, auditor: Caller
) -> None:
    connector = registered(runtime, client)
    connector.inventory(client, [backend_report("LocalCA", cas=[ca_report("root")], templates=["server"])])

    connector.inventory(client, [backend_report("LocalCA", status="Offline", error="disk unreadable")])

    seen = backends_by_name(client, auditor)["LocalCA"]
    assert (seen["status"], seen["error"]) == ("Offline", "disk unreadable")
    assert [ca["state"] for ca in seen["cas"]] == ["active"]
    assert seen["templates"] == ["server"]


# ---- jobs --------------------------------------------------------------------------------------------


def one_backend(client: TestClient, runtime: Runtime, caller: Caller) -> tuple[FakeConnector, str]:
    connector = registered(runtime, client)
    assert (
        connector.inventory(client, [backend_report("LocalCA", cas=[ca_report("root")])]).status_code == 204
    )
    return connector, backends_by_name(client, caller)["LocalCA"]["id"]


def test_a_check_job_round_trip(
    client: TestClient, runtime: Runtime, operator: Caller, auditor: Caller
) -> None:
    connector, backend_id = one_backend(client, runtime, auditor)
    assert client.post(f"{API}/backends/{backend_id}/check", headers=auditor.headers).status_code == 403

    started = client.post(f"{API}/backends/{backend_id}/check", headers=operator.headers)
    assert started.status_code == 202, started.text
    job = started.json()["job"]
    assert (job["kind"], job["status"], job["backend"], job["attempts"]) == ("check", "queued", "LocalCA", 0)

    polled = connector.poll(client)
    assert polled.status_code == 200, polled.text
    [delivered] = messages.PollResponse.model_validate(polled.json()).jobs
    assert (delivered.id, delivered.kind, delivered.backend, delivered.attempt) == (
        job["id"],
        "check",
        "LocalCA",
        1,
    )
    assert client.get(f"{API}/jobs/{job['id']}", headers=auditor.headers).json()["status"] == "leased"

    report = backend_report("LocalCA", cas=[ca_report("root"), ca_report("new-issuing")], templates=["web"])
    answered = connector.poll(client, results=[{"job_id": job["id"], "outcome": "ok", "result": report}])
    assert answered.json()["acknowledged"] == [job["id"]]
    assert answered.json()["jobs"] == []

    done = client.get(f"{API}/jobs/{job['id']}", headers=auditor.headers).json()
    assert (done["status"], done["outcome"], done["attempts"], done["error"]) == ("done", "ok", 1, None)
    assert done["result"] == report
    backend = client.get(f"{API}/backends/{backend_id}", headers=auditor.headers).json()
    assert backend["checked_at"] is not None
    assert backend["status"] == "Available"
    assert backend["templates"] == ["web"]
    assert sorted(ca["ref"] for ca in backend["cas"]) == ["new-issuing", "root"]


def test_a_failed_check_is_stored_as_an_error(client: TestClient, runtime: Runtime, admin: Caller) -> None:
    connector, backend_id = one_backend(client, runtime, admin)
    job_id = client.post(f"{API}/backends/{backend_id}/check", headers=admin.headers).json()["job"]["id"]
    connector.poll(client)

    error = {"code": "auth", "message": "the CA refused the credentials", "retryable": False}
    connector.poll(client, results=[{"job_id": job_id, "outcome": "error", "error": error}])

    done = client.get(f"{API}/jobs/{job_id}", headers=admin.headers).json()
    assert (done["status"], done["outcome"]) == ("done", "error")
    assert done["error"]["code"] == "auth"
    assert client.get(f"{API}/backends/{backend_id}", headers=admin.headers).json()["checked_at"] is None


def test_a_malformed_check_result_becomes_an_error(
    client: TestClient, runtime: Runtime, admin: Caller
) -> None:
    connector, backend_id = one_backend(client, runtime, admin)
    job_id = client.post(f"{API}/backends/{backend_id}/check", headers=admin.headers).json()["job"]["id"]
    connector.poll(client)

    answered = connector.poll(
        client, results=[{"job_id": job_id, "outcome": "ok", "result": {"nonsense": 1}}]
    )

    assert answered.json()["acknowledged"] == [job_id]
    done = client.get(f"{API}/jobs/{job_id}", headers=admin.headers).json()
    assert (done["outcome"], done["error"]["code"]) == ("error", "invalid_result")


def test_an_inventory_job_of_the_whole_connector(
    client: TestClient, runtime: Runtime, auditor: Caller
) -> None:
    connector, _ = one_backend(client, runtime, auditor)
    job_id = _queue_inventory(runtime, connector.connector_id)
    [delivered] = connector.poll(client).json()["jobs"]
    assert (delivered["id"], delivered["kind"], delivered["backend"]) == (job_id, "inventory", None)

    report = {
        "hostname": "new-host",
        "version": "0.2.0",
        "backends": [backend_report("acme-le", type="acme")],
    }
    connector.poll(client, results=[{"job_id": job_id, "outcome": "ok", "result": report}])

    seen = backends_by_name(client, auditor)
    assert (seen["acme-le"]["present"], seen["LocalCA"]["present"]) == (True, False)
    assert connector_row(runtime, connector.connector_id).hostname == "new-host"


def test_an_expired_lease_redelivers_and_a_late_result_is_applied_once(
    client: TestClient, runtime: Runtime, admin: Caller, clock: FakeClock
) -> None:
    connector, backend_id = one_backend(client, runtime, admin)
    job_id = client.post(f"{API}/backends/{backend_id}/check", headers=admin.headers).json()["job"]["id"]
    assert [j["attempt"] for j in connector.poll(client).json()["jobs"]] == [1]
    assert connector.poll(client).json()["jobs"] == []  # leased: not handed out twice meanwhile

    clock.advance(seconds=runtime.settings.lease_seconds + 1)
    redelivered = connector.poll(client).json()["jobs"]
    assert [(j["id"], j["attempt"]) for j in redelivered] == [(job_id, 2)]

    second = backend_report("LocalCA", cas=[ca_report("root"), ca_report("second")])
    first_late = backend_report("LocalCA", cas=[ca_report("root"), ca_report("first-late")])
    acked = connector.poll(client, results=[{"job_id": job_id, "outcome": "ok", "result": second}])
    assert acked.json()["acknowledged"] == [job_id]
    checked_at = client.get(f"{API}/backends/{backend_id}", headers=admin.headers).json()["checked_at"]

    clock.advance(seconds=5)
    late = connector.poll(client, results=[{"job_id": job_id, "outcome": "ok", "result": first_late}])
    assert late.json()["acknowledged"] == [job_id]

    job = client.get(f"{API}/jobs/{job_id}", headers=admin.headers).json()
    assert (job["attempts"], job["result"]) == (2, second)
    backend = client.get(f"{API}/backends/{backend_id}", headers=admin.headers).json()
    assert backend["checked_at"] == checked_at
    assert "first-late" not in {ca["ref"] for ca in backend["cas"]}


def test_running_jobs_keep_their_lease(
    client: TestClient, runtime: Runtime, admin: Caller, clock: FakeClock
) -> None:
    connector, backend_id = one_backend(client, runtime, admin)
    job_id = client.post(f"{API}/backends/{backend_id}/check", headers=admin.headers).json()["job"]["id"]
    connector.poll(client)

    clock.advance(seconds=runtime.settings.lease_seconds - 10)
    assert connector.poll(client, running=[job_id]).json()["jobs"] == []
    clock.advance(seconds=20)  # past the first lease, within the extended one
    assert connector.poll(client).json()["jobs"] == []


def test_results_for_other_connectors_jobs_are_ignored(
    client: TestClient, runtime: Runtime, admin: Caller
) -> None:
    owner, backend_id = one_backend(client, runtime, admin)
    job_id = client.post(f"{API}/backends/{backend_id}/check", headers=admin.headers).json()["job"]["id"]
    owner.poll(client)
    other = registered(runtime, client, "dc2")

    forged = other.poll(
        client, results=[{"job_id": job_id, "outcome": "error", "error": {"code": "x", "message": "y"}}]
    )

    assert forged.json()["acknowledged"] == [job_id]  # so the sender forgets it
    assert client.get(f"{API}/jobs/{job_id}", headers=admin.headers).json()["status"] == "leased"


def test_jobs_of_a_missing_backend_and_unknown_ids(
    client: TestClient, runtime: Runtime, admin: Caller
) -> None:
    connector, backend_id = one_backend(client, runtime, admin)
    connector.inventory(client, [])

    refused = client.post(f"{API}/backends/{backend_id}/check", headers=admin.headers)
    assert_problem(refused, 409, "conflict", "no longer reports backend 'LocalCA'")
    assert_problem(client.get(f"{API}/jobs/nope", headers=admin.headers), 404, "not_found")
    assert_problem(client.get(f"{API}/backends/nope", headers=admin.headers), 404, "not_found")


def test_capacity_limits_the_jobs_handed_out(client: TestClient, runtime: Runtime, admin: Caller) -> None:
    connector, backend_id = one_backend(client, runtime, admin)
    ids = [
        client.post(f"{API}/backends/{backend_id}/check", headers=admin.headers).json()["job"]["id"]
        for _ in range(3)
    ]
    assert connector.poll(client, capacity=0).json()["jobs"] == []
    first = [j["id"] for j in connector.poll(client, capacity=2).json()["jobs"]]
    rest = [j["id"] for j in connector.poll(client, capacity=2).json()["jobs"]]
    assert first + rest == ids  # oldest first
    with runtime.sessions.begin() as session:
        assert set(session.scalars(select(Job.status))) == {"leased"}


# ---- liveness ----------------------------------------------------------------------------------------


def test_goodbye_and_the_grace_end_make_it_disconnected(
    client: TestClient, runtime: Runtime, clock: FakeClock
) -> None:
    connector = registered(runtime, client)
    assert connector.poll(client).status_code == 200
    assert status_of(runtime, connector.connector_id) is ConnectorStatus.CONNECTED

    clock.advance(seconds=runtime.settings.heartbeat_grace_seconds + 1)
    assert status_of(runtime, connector.connector_id) is ConnectorStatus.DISCONNECTED

    assert connector.poll(client).status_code == 200
    assert status_of(runtime, connector.connector_id) is ConnectorStatus.CONNECTED
    assert connector.goodbye(client).status_code == 204
    assert status_of(runtime, connector.connector_id) is ConnectorStatus.DISCONNECTED


# ---- the admin side of backends ----------------------------------------------------------------------


def test_admins_rename_and_disable_backends(
    client: TestClient, runtime: Runtime, admin: Caller, operator: Caller
) -> None:
    connector, backend_id = one_backend(client, runtime, admin)
    url = f"{API}/backends/{backend_id}"

    assert client.patch(url, json={"name": "Lab CA"}, headers=operator.headers).status_code == 403
    assert_problem(client.patch(url, json={"name": " "}, headers=admin.headers), 422, "invalid_request")
    changed = client.patch(url, json={"name": "Lab CA", "disabled": True}, headers=admin.headers)

    assert changed.status_code == 200, changed.text
    assert (changed.json()["name"], changed.json()["disabled"]) == ("Lab CA", True)
    assert changed.json()["local_backend"] == "LocalCA"
    with runtime.sessions.begin() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "backend.update")).one()
        assert event.details == {"name": {"from": "LocalCA", "to": "Lab CA"}, "disabled": True}

    # The connector's next report changes what it reports, not what the administrator chose.
    connector.inventory(client, [backend_report("LocalCA", cas=[ca_report("root")])])
    after = client.get(url, headers=admin.headers).json()
    assert (after["name"], after["disabled"]) == ("Lab CA", True)


def test_backend_lists_page_and_filter(client: TestClient, runtime: Runtime, auditor: Caller) -> None:
    connector = registered(runtime, client)
    connector.inventory(
        client, [backend_report(f"b{i}", type="local" if i % 2 else "acme") for i in range(5)]
    )

    first = client.get(f"{API}/backends", params={"limit": 2}, headers=auditor.headers).json()
    second = client.get(
        f"{API}/backends", params={"limit": 2, "cursor": first["next_cursor"]}, headers=auditor.headers
    ).json()
    assert [b["name"] for b in first["items"] + second["items"]] == ["b0", "b1", "b2", "b3"]
    only_acme = client.get(f"{API}/backends", params={"type": "acme"}, headers=auditor.headers).json()
    assert [b["name"] for b in only_acme["items"]] == ["b0", "b2", "b4"]
    other = client.get(f"{API}/backends", params={"connector": "none"}, headers=auditor.headers).json()
    assert other == {"items": [], "next_cursor": None}
