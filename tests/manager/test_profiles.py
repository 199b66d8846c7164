"""Profiles over the REST API, on SQLite and PostgreSQL: create, read, change, delete; validation,
roles and the audit log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from tests.manager.conftest import Caller
from tests.manager.connector_support import assert_problem
from tests.manager.lifecycle_support import API, Lab, create_profile, enroll, make_csr, make_lab

from caconnector.manager.db.models import AuditEvent
from caconnector.manager.runtime import Runtime


@pytest.fixture
def lab(runtime: Runtime, client: TestClient, tmp_path: Path) -> Lab:
    return make_lab(runtime, client, tmp_path)


def post(client: TestClient, caller: Caller, lab: Lab, **fields: Any) -> Any:
    body = {
        "name": "web",
        "backend": lab.backend_id,
        "cert_type": "server",
        "terms_days": [90],
        "key_types": ["ec-p256"],
        **fields,
    }
    return client.post(f"{API}/profiles", json=body, headers=caller.headers)


def test_create_read_change_and_delete(client: TestClient, runtime: Runtime, admin: Caller, lab: Lab) -> None:
    created = create_profile(client, admin, lab, organization="Example Corp", template="server")
    assert created["backend"] == lab.backend_id
    assert created["ca"] == lab.ca_id
    assert (created["terms_days"], created["key_types"]) == ([30, 90], ["ec-p256", "rsa-2048"])

    listed = client.get(f"{API}/profiles", headers=admin.headers).json()
    assert [p["name"] for p in listed["items"]] == ["web"]
    assert client.get(f"{API}/profiles/{created['id']}", headers=admin.headers).json() == created

    changed = client.patch(
        f"{API}/profiles/{created['id']}",
        json={"name": "web-90", "terms_days": [90], "organization": None},
        headers=admin.headers,
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["name"], body["terms_days"], body["organization"]) == ("web-90", [90], None)
    assert body["template"] == "server"  # not sent: unchanged

    assert client.delete(f"{API}/profiles/{created['id']}", headers=admin.headers).status_code == 204
    assert_problem(client.get(f"{API}/profiles/{created['id']}", headers=admin.headers), 404, "not_found")

    with runtime.sessions.begin() as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.action.like("profile.%"))).all()
        assert [e.action for e in events] == ["profile.create", "profile.update", "profile.delete"]
        assert all(e.actor == "user:admin" and e.target == f"profile:{created['id']}" for e in events)
        assert events[1].details["name"] == "web-90"


def test_the_ca_may_be_left_out_when_the_backend_has_one(client: TestClient, admin: Caller, lab: Lab) -> None:
    response = post(client, admin, lab)
    assert response.status_code == 201, response.text
    assert response.json()["ca"] is None


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"backend": "nope"}, ["backend", "no backend", "nope"]),
        ({"ca": "another-ca"}, ["ca:", "no CA with id 'another-ca'"]),
        ({"terms_days": [0]}, ["terms_days", "0 is not a term"]),
        ({"terms_days": [90, 90]}, ["listed twice"]),
        ({"key_types": ["rsa-1024"]}, ["key_types", "unknown key type 'rsa-1024'", "ec-p256"]),
        ({"template": "codesign"}, ["template", "offers no template 'codesign'", "server, client"]),
        ({"name": " web"}, ["invalid profile name"]),
    ],
)
def test_invalid_profiles_are_refused_naming_the_field(
    client: TestClient, admin: Caller, lab: Lab, fields: dict[str, Any], words: list[str]
) -> None:
    assert_problem(post(client, admin, lab, **fields), 422, "invalid_request", *words)


def test_schema_errors_name_the_field(client: TestClient, admin: Caller, lab: Lab) -> None:
    assert_problem(post(client, admin, lab, terms_days=[]), 422, "invalid_request", "terms_days")
    assert_problem(post(client, admin, lab, cert_type="codesign"), 422, "invalid_request", "cert_type")
    assert_problem(post(client, admin, lab, colour="blue"), 422, "invalid_request", "colour")


def test_names_are_unique(client: TestClient, admin: Caller, lab: Lab) -> None:
    assert post(client, admin, lab).status_code == 201
    assert_problem(post(client, admin, lab), 409, "conflict", "'web' already exists")


def test_a_profile_with_requests_in_flight_cannot_be_deleted(
    client: TestClient, admin: Caller, operator: Caller, lab: Lab
) -> None:
    profile = create_profile(client, admin, lab)
    csr, _ = make_csr()
    assert enroll(client, operator, csr).status_code == 202
    response = client.delete(f"{API}/profiles/{profile['id']}", headers=admin.headers)
    assert_problem(response, 409, "conflict", "1 request(s) still Requested or Pending")


def test_only_administrators_change_profiles_and_everyone_reads_them(
    client: TestClient, admin: Caller, operator: Caller, auditor: Caller, lab: Lab
) -> None:
    assert_problem(post(client, operator, lab), 403, "forbidden")
    profile = create_profile(client, admin, lab)
    assert client.get(f"{API}/profiles/{profile['id']}", headers=auditor.headers).status_code == 200
    patch = client.patch(f"{API}/profiles/{profile['id']}", json={"name": "x"}, headers=operator.headers)
    assert_problem(patch, 403, "forbidden")
    assert_problem(
        client.delete(f"{API}/profiles/{profile['id']}", headers=auditor.headers), 403, "forbidden"
    )
