"""The admin side of connectors over the REST API, and the audit log, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from tests.manager.conftest import Caller, FakeClock

from caconnector.manager import tokens
from caconnector.manager.db.models import Base, Connector
from caconnector.manager.runtime import Runtime
from caconnector.manager.services.connectors import add_connector
from caconnector.manager.services.status import ConnectorStatus, connector_status

API = "/api/v1"
PUBLIC_URL = "http://127.0.0.1:8443"  # the settings fixture's


def add(client: TestClient, caller: Caller, name: str = "dc1", **extra: Any) -> dict[str, Any]:
    response = client.post(f"{API}/connectors", json={"name": name, **extra}, headers=caller.headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def get(client: TestClient, caller: Caller, connector_id: str) -> dict[str, Any]:
    response = client.get(f"{API}/connectors/{connector_id}", headers=caller.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_problem(response: Any, status: int, code: str, *words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code
    for word in words:
        assert word in body["detail"]


def mark_registered(runtime: Runtime, connector_id: str, **columns: Any) -> None:
    """What the channel's register does to the row (the channel is tested on its own)."""
    now = runtime.now()
    values = {"token_used_at": now, "public_key_pem": "PEM", "registered_at": now, **columns}
    with runtime.sessions.begin() as session:
        session.execute(update(Connector).where(Connector.id == connector_id).values(**values))


# ---- add ---------------------------------------------------------------------------------------------


def test_add_gives_a_pending_connector_and_a_strong_token(client: TestClient, admin: Caller) -> None:
    created = add(client, admin, "dc1", comments="first site")
    assert created["status"] == "Pending"
    assert created["name"] == "dc1"
    token = created["token"]
    random_part = token.removeprefix(tokens.TOKEN_PREFIX)
    assert len(base64.urlsafe_b64decode(random_part + "=" * (-len(random_part) % 4))) * 8 >= 128
    assert created["install_command"] == f"ca-connector install -token {token} -manager {PUBLIC_URL}"
    shown = get(client, admin, created["id"])
    assert shown["status"] == "Pending"
    assert shown["comments"] == "first site"
    assert shown["token"] == token
    assert shown["install_command"] == created["install_command"]
    assert shown["version"] is None
    assert shown["last_seen"] is None


def test_tokens_differ_between_connectors(client: TestClient, admin: Caller) -> None:
    assert add(client, admin, "a")["token"] != add(client, admin, "b")["token"]


def test_only_a_hash_of_the_token_is_stored(client: TestClient, admin: Caller, runtime: Runtime) -> None:
    created = add(client, admin)
    token = created["token"]
    with runtime.sessions.begin() as session:
        connector = session.get(Connector, created["id"])
        assert connector is not None
        assert connector.token_hash == tokens.hash_secret(token)
        # Nowhere in the database, in any table or column, is the token in clear.
        for table in Base.metadata.sorted_tables:
            for row in session.execute(select(table)):
                for value in row:
                    text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
                    assert token not in text, f"{table.name} holds the token"
                    assert token.removeprefix(tokens.TOKEN_PREFIX) not in text


def test_token_is_hidden_once_used(client: TestClient, admin: Caller, runtime: Runtime) -> None:
    created = add(client, admin)
    mark_registered(runtime, created["id"])
    shown = get(client, admin, created["id"])
    assert "token" not in shown
    assert "install_command" not in shown
    assert shown["status"] == "Disconnected"
    assert shown["registered_at"] is not None


def test_token_is_hidden_once_expired(
    client: TestClient, admin: Caller, clock: FakeClock, runtime: Runtime
) -> None:
    created = add(client, admin)
    clock.advance(hours=23)
    assert get(client, admin, created["id"])["token"] == created["token"]
    clock.advance(hours=2)
    shown = get(client, admin, created["id"])
    assert "token" not in shown
    assert shown["status"] == "Pending"


@pytest.mark.parametrize(
    "name", ["", " lead", "trail ", "x" * 129, "semi;colon", "slash/name", "new\nline", "newline\n", "émile"]
)
def test_add_refuses_a_bad_name(client: TestClient, admin: Caller, name: str) -> None:
    response = client.post(f"{API}/connectors", json={"name": name}, headers=admin.headers)
    assert_problem(response, 422, "invalid_request", "connector name")


def test_add_accepts_names_with_spaces_dots_and_dashes(client: TestClient, admin: Caller) -> None:
    for name in ("Paris DC 1", "aws.eu-west-1", "under_score", "x" * 128):
        assert add(client, admin, name)["name"] == name


def test_add_refuses_unknown_fields(client: TestClient, admin: Caller) -> None:
    response = client.post(f"{API}/connectors", json={"name": "dc1", "colour": "red"}, headers=admin.headers)
    assert_problem(response, 422, "invalid_request", "colour")


def test_duplicate_name_is_a_conflict(client: TestClient, admin: Caller) -> None:
    first = add(client, admin, "dc1")
    response = client.post(f"{API}/connectors", json={"name": "dc1"}, headers=admin.headers)
    assert_problem(response, 409, "conflict", "'dc1'", first["id"])
    other = add(client, admin, "dc2")
    renamed = client.patch(f"{API}/connectors/{other['id']}", json={"name": "dc1"}, headers=admin.headers)
    assert_problem(renamed, 409, "conflict", "'dc1'")


# ---- edit, restore, delete ---------------------------------------------------------------------------


def test_rename_and_comments(client: TestClient, admin: Caller) -> None:
    created = add(client, admin, "dc1")
    response = client.patch(
        f"{API}/connectors/{created['id']}", json={"name": "dc-paris"}, headers=admin.headers
    )
    assert response.status_code == 200
    edited = response.json()
    assert edited["name"] == "dc-paris"
    assert edited["token"] == created["token"]  # the edit dialog shows the unused token
    response = client.patch(
        f"{API}/connectors/{created['id']}", json={"comments": "rack 4"}, headers=admin.headers
    )
    assert response.json()["comments"] == "rack 4"
    shown = get(client, admin, created["id"])
    assert (shown["name"], shown["comments"]) == ("dc-paris", "rack 4")


def test_edit_refuses_unknown_fields_and_bad_names(client: TestClient, admin: Caller) -> None:
    created = add(client, admin)
    url = f"{API}/connectors/{created['id']}"
    assert_problem(
        client.patch(url, json={"status": "Connected"}, headers=admin.headers), 422, "invalid_request"
    )
    assert_problem(client.patch(url, json={"name": "a/b"}, headers=admin.headers), 422, "invalid_request")
    assert get(client, admin, created["id"])["name"] == "dc1"


def test_restore_gives_a_new_token_and_keeps_the_key(
    client: TestClient, admin: Caller, runtime: Runtime
) -> None:
    created = add(client, admin)
    mark_registered(runtime, created["id"])
    response = client.post(f"{API}/connectors/{created['id']}/restore", headers=admin.headers)
    assert response.status_code == 200, response.text
    restored = response.json()
    assert restored["token"] != created["token"]
    assert restored["install_command"] == f"ca-connector register -token {restored['token']} -force"
    with runtime.sessions.begin() as session:
        connector = session.get(Connector, created["id"])
        assert connector is not None
        assert connector.token_hash == tokens.hash_secret(restored["token"])
        assert connector.token_used_at is None
        assert connector.public_key_pem == "PEM"  # the old key works until register -force
    shown = get(client, admin, created["id"])
    assert shown["token"] == restored["token"]
    assert shown["status"] == "Disconnected"


def test_restore_of_a_pending_connector_replaces_its_token(client: TestClient, admin: Caller) -> None:
    created = add(client, admin)
    restored = client.post(f"{API}/connectors/{created['id']}/restore", headers=admin.headers).json()
    assert restored["token"] != created["token"]
    # Never registered: the host needs a full install, which knows the manager's URL.
    assert restored["install_command"].startswith(f"ca-connector install -token {restored['token']}")
    assert get(client, admin, created["id"])["token"] == restored["token"]


def test_delete(client: TestClient, admin: Caller, runtime: Runtime) -> None:
    created = add(client, admin)
    response = client.delete(f"{API}/connectors/{created['id']}", headers=admin.headers)
    assert response.status_code == 204
    assert response.content == b""
    url = f"{API}/connectors/{created['id']}"
    assert_problem(client.get(url, headers=admin.headers), 404, "not_found", created["id"])
    assert_problem(client.delete(url, headers=admin.headers), 404, "not_found")
    with runtime.sessions.begin() as session:
        assert session.scalar(select(Connector).where(Connector.name == "dc1")) is None
    assert add(client, admin, "dc1")["id"] != created["id"]  # the name is free again


def test_unknown_connector_is_404(client: TestClient, admin: Caller) -> None:
    for method, suffix in (("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/restore")):
        kwargs: dict[str, Any] = {"json": {}} if method == "PATCH" else {}
        response = client.request(method, f"{API}/connectors/nope{suffix}", headers=admin.headers, **kwargs)
        assert_problem(response, 404, "not_found", "'nope'")


# ---- roles -------------------------------------------------------------------------------------------


def test_auditor_and_operator_read_but_do_not_change(
    client: TestClient, admin: Caller, operator: Caller, auditor: Caller
) -> None:
    created = add(client, admin)
    url = f"{API}/connectors/{created['id']}"
    for caller in (operator, auditor):
        assert client.get(f"{API}/connectors", headers=caller.headers).status_code == 200
        shown = get(client, caller, created["id"])
        assert "token" not in shown  # a reader must not be able to register a connector of their own
        assert_problem(
            client.post(f"{API}/connectors", json={"name": "x"}, headers=caller.headers), 403, "forbidden"
        )
        assert_problem(client.patch(url, json={"name": "y"}, headers=caller.headers), 403, "forbidden")
        assert_problem(client.post(f"{url}/restore", headers=caller.headers), 403, "forbidden")
        assert_problem(client.delete(url, headers=caller.headers), 403, "forbidden")
    assert get(client, admin, created["id"])["name"] == "dc1"


# ---- lists -------------------------------------------------------------------------------------------


def test_list_pages_through_all_connectors(client: TestClient, admin: Caller) -> None:
    names = [f"dc{i:02d}" for i in range(7)]
    for name in reversed(names):
        add(client, admin, name)
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"{API}/connectors", params=params, headers=admin.headers).json()
        assert len(page["items"]) <= 3
        assert all("token" not in item for item in page["items"])  # lists never carry tokens
        seen += [item["name"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == names


def test_list_filters_by_name(client: TestClient, admin: Caller) -> None:
    for name in ("paris-1", "Paris-2", "london_1", "londonXd", "lon-1"):
        add(client, admin, name)
    by_name = client.get(f"{API}/connectors", params={"name": "paris"}, headers=admin.headers).json()
    assert sorted(item["name"] for item in by_name["items"]) == ["Paris-2", "paris-1"]
    # LIKE wildcards in the filter are matched literally.
    percent = client.get(f"{API}/connectors", params={"name": "n%d"}, headers=admin.headers).json()
    assert percent["items"] == []  # as a wildcard, "n%d" would match both london names
    underscore = client.get(f"{API}/connectors", params={"name": "n_1"}, headers=admin.headers).json()
    assert [item["name"] for item in underscore["items"]] == ["london_1"]  # not lon-1


def test_list_filter_by_status_agrees_with_the_status_rule(
    client: TestClient, admin: Caller, runtime: Runtime
) -> None:
    now = runtime.now()
    states: dict[str, dict[str, Any]] = {
        "pending": {},
        "connected": {"last_seen": now, "connected_until": now + dt.timedelta(seconds=30)},
        "disconnected": {"last_seen": now - dt.timedelta(hours=1), "connected_until": now},
        "never-polled": {"registered_at": now - dt.timedelta(days=1)},
        "expired": {"last_seen": now - dt.timedelta(days=31)},
        "expired-never-polled": {"registered_at": now - dt.timedelta(days=40)},
    }
    for name, columns in states.items():
        created = add(client, admin, name)
        if name != "pending":
            mark_registered(runtime, created["id"], **columns)
    with runtime.sessions.begin() as session:
        expected = {
            c.name: connector_status(c, runtime.now(), runtime.settings).value
            for c in session.scalars(select(Connector))
        }
    assert sorted(expected.values()) == sorted(
        ["Pending", "Connected", "Disconnected", "Disconnected", "Expired", "Expired"]
    )
    for status in ConnectorStatus:
        page = client.get(f"{API}/connectors", params={"status": status.value}, headers=admin.headers).json()
        listed = {item["name"]: item["status"] for item in page["items"]}
        assert listed == {name: s for name, s in expected.items() if s == status.value}, status


def test_list_refuses_bad_parameters(client: TestClient, admin: Caller) -> None:
    for params in ({"limit": 0}, {"limit": 501}, {"status": "Sleeping"}, {"cursor": "garbage!"}):
        response = client.get(f"{API}/connectors", params=params, headers=admin.headers)
        assert response.status_code == 422, params
        assert response.headers["content-type"] == "application/problem+json"
    audit_cursor = client.get(f"{API}/audit", params={"cursor": "WyJ4Il0"}, headers=admin.headers)
    assert_problem(audit_cursor, 422, "invalid_cursor")  # a connector-list cursor, not an audit one


# ---- audit -------------------------------------------------------------------------------------------


def test_every_change_is_audited(client: TestClient, admin: Caller, auditor: Caller) -> None:
    created = add(client, admin, "dc1")
    target = f"connector:{created['id']}"
    url = f"{API}/connectors/{created['id']}"
    client.patch(url, json={"name": "dc2", "comments": "moved"}, headers=admin.headers)
    client.post(f"{url}/restore", headers=admin.headers)
    client.delete(url, headers=admin.headers)
    events = client.get(f"{API}/audit", params={"actor": "user:admin"}, headers=auditor.headers).json()[
        "items"
    ]
    assert [(e["action"], e["target"]) for e in events] == [
        ("connector.delete", target),
        ("connector.restore", target),
        ("connector.update", target),
        ("connector.add", target),
    ]
    assert events[0]["details"]["name"] == "dc2"
    assert events[2]["details"]["name"] == {"from": "dc1", "to": "dc2"}
    for event in events:
        assert created["token"] not in str(event)
        assert dt.datetime.fromisoformat(event["at"]).tzinfo is not None


def test_unchanged_edit_writes_no_audit_row(client: TestClient, admin: Caller) -> None:
    created = add(client, admin, "dc1")
    client.patch(f"{API}/connectors/{created['id']}", json={"name": "dc1"}, headers=admin.headers)
    actions = client.get(f"{API}/audit", params={"action": "connector.update"}, headers=admin.headers)
    assert actions.json()["items"] == []


def test_audit_filters_and_pages(
    client: TestClient, admin: Caller, clock: FakeClock, runtime: Runtime
) -> None:
    for i in range(3):
        add(client, admin, f"early{i}")
    clock.advance(hours=1)
    since = runtime.now()
    for i in range(3):
        add(client, admin, f"late{i}")
    late = client.get(
        f"{API}/audit", params={"since": since.isoformat(), "action": "connector.add"}, headers=admin.headers
    ).json()["items"]
    assert [e["details"]["name"] for e in late] == ["late2", "late1", "late0"]
    # The fixtures' user.create and apikey.create events come first, written as "system".
    assert {e["actor"] for e in late} == {"user:admin"}
    pages: list[str] = []
    cursor = None
    for _ in range(10):
        params: dict[str, Any] = {
            "limit": 4,
            "action": "connector.add",
            **({"cursor": cursor} if cursor else {}),
        }
        page = client.get(f"{API}/audit", params=params, headers=admin.headers).json()
        pages += [e["details"]["name"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == ["late2", "late1", "late0", "early2", "early1", "early0"]


def test_audit_needs_a_reader(client: TestClient) -> None:
    assert_problem(client.get(f"{API}/audit"), 401, "unauthenticated")


def test_service_add_is_usable_without_http(runtime: Runtime) -> None:
    with runtime.sessions.begin() as session:
        connector, token = add_connector(
            session,
            "svc",
            "",
            now=runtime.now(),
            settings=runtime.settings,
            box=runtime.box,
            actor="system",
        )
        assert connector.token_hash == tokens.hash_secret(token)
        assert connector_status(connector, runtime.now(), runtime.settings) is ConnectorStatus.PENDING
