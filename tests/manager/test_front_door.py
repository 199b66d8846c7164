"""The manager's front door and its account endpoints, on both databases: `/` and `/api/v1` answer
without a key, list what is served and link the docs; users and API keys are listed (never a key or a
hash) and a key revoked through the API is refused at once; validation errors say what to send."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select
from tests.manager.conftest import Caller
from tests.manager.connector_support import assert_problem

from caconnector.manager.db.models import ApiKey, AuditEvent
from caconnector.manager.runtime import Runtime

API = "/api/v1"


def test_index_lists_every_collection_and_links_the_docs(client: TestClient) -> None:
    for path in (API, f"{API}/"):
        response = client.get(path)
        assert response.status_code == 200, response.text
        index = response.json()
        names = {r["name"] for r in index["resources"]}
        assert {
            "certificates",
            "profiles",
            "connectors",
            "backends",
            "audit",
            "users",
            "apikeys",
        } <= names
        for link in (index["docs"], index["openapi"], *(r["href"] for r in index["resources"])):
            assert link.startswith("/")
    assert client.get(index["openapi"]).status_code == 200
    assert client.get(index["docs"]).status_code == 200
    # Every collection listed is served: an answer asking for a key, not a 404.
    for resource in index["resources"]:
        assert client.get(resource["href"]).status_code == 401, resource


def test_home_page_links_docs_openapi_and_index(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    for link in (f"{API}/docs", f"{API}/openapi.json", f'href="{API}"'):
        assert link in response.text


def test_users_and_keys_are_listed_without_secrets(
    client: TestClient, admin: Caller, operator: Caller, auditor: Caller
) -> None:
    assert client.get(f"{API}/profiles", headers=operator.headers).status_code == 200
    users = client.get(f"{API}/users", headers=admin.headers).json()["items"]
    assert {u["username"]: u["role"] for u in users} == {
        admin.username: "admin", operator.username: "operator", auditor.username: "auditor"
    }  # fmt: skip
    keys = client.get(f"{API}/apikeys", headers=admin.headers).json()["items"]
    assert {k["username"] for k in keys} == {admin.username, operator.username, auditor.username}
    mine = client.get(f"{API}/apikeys", params={"username": operator.username}, headers=admin.headers).json()
    [key] = mine["items"]
    assert set(key) == {"id", "prefix", "username", "role", "created_at", "last_used_at", "revoked_at"}
    assert key["last_used_at"] is not None  # used for /profiles above
    for document in (users, keys):
        assert operator.api_key not in str(document)
        assert "hash" not in str(document)
    assert_problem(
        client.get(f"{API}/apikeys", params={"username": "nobody"}, headers=admin.headers), 404, "not_found"
    )


def test_only_admins_see_or_revoke_keys(client: TestClient, operator: Caller, auditor: Caller) -> None:
    for caller in (operator, auditor):
        for method, path in (("GET", "/users"), ("GET", "/apikeys"), ("DELETE", "/apikeys/x")):
            response = client.request(method, f"{API}{path}", headers=caller.headers)
            assert_problem(response, 403, "forbidden")


def test_a_revoked_key_is_refused_at_once_and_audited(
    client: TestClient, runtime: Runtime, admin: Caller, operator: Caller
) -> None:
    assert client.get(f"{API}/profiles", headers=operator.headers).status_code == 200
    mine = client.get(f"{API}/apikeys", params={"username": operator.username}, headers=admin.headers)
    key_id = mine.json()["items"][0]["id"]
    revoked = client.delete(f"{API}/apikeys/{key_id}", headers=admin.headers)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_at"] is not None
    assert_problem(client.get(f"{API}/profiles", headers=operator.headers), 401, "unauthenticated", "revoked")
    # Gone from the list, shown with revoked=true; revoking again answers the same and records nothing more.
    listed = client.get(f"{API}/apikeys", params={"username": operator.username}, headers=admin.headers)
    assert listed.json()["items"] == []
    assert client.delete(f"{API}/apikeys/{key_id}", headers=admin.headers).json() == revoked.json()
    assert_problem(client.delete(f"{API}/apikeys/nope", headers=admin.headers), 404, "not_found")
    with runtime.sessions.begin() as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.action == "apikey.revoke")).all()
        assert [(e.actor, e.target) for e in events] == [
            (f"user:{admin.username}", f"user:{operator.username}")
        ]
        assert session.get(ApiKey, key_id) is not None


def test_validation_errors_say_what_to_send(client: TestClient, operator: Caller) -> None:
    revoke = f"{API}/certificates/nope/revoke"
    no_body = client.post(revoke, headers=operator.headers)
    assert_problem(no_body, 422, "invalid_request", "a JSON body is required", "reason (optional)", "wait")
    assert not no_body.json()["detail"].startswith(":")
    not_json = client.post(
        revoke, content=b"{reason", headers={**operator.headers, "Content-Type": "application/json"}
    )
    assert_problem(not_json, 422, "invalid_request", "not valid JSON", "reason (optional)")
    form = client.post(
        revoke, content=b"reason=x", headers={**operator.headers, "Content-Type": "text/plain"}
    )
    assert_problem(form, 422, "invalid_request", "Content-Type: application/json")
    a_list = client.post(revoke, json=[1], headers=operator.headers)
    assert_problem(a_list, 422, "invalid_request", "must be a JSON object")
    unknown = client.post(revoke, json={"reasno": "x"}, headers=operator.headers)
    assert_problem(unknown, 422, "invalid_request", "reasno: unknown field", "reason (optional)")
    wrong = client.post(revoke, json={"wait": "soon"}, headers=operator.headers)
    assert_problem(wrong, 422, "invalid_request", "wait: ")
    query = client.get(f"{API}/certificates", params={"limit": "many"}, headers=operator.headers)
    assert_problem(query, 422, "invalid_request", "query parameter limit: ")
    secret = client.post(
        f"{API}/certificates", json={"profile": 7, "csr": "SECRET-CSR-TEXT"}, headers=operator.headers
    )
    assert_problem(secret, 422, "invalid_request", "profile: ")
    assert "SECRET-CSR-TEXT" not in secret.text
