"""The app factory, health, authentication and roles, on both databases."""

from __future__ import annotations

from fastapi.testclient import TestClient
from tests.manager.conftest import Caller


def test_healthz_needs_no_auth(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_openapi_is_published(client: TestClient) -> None:
    assert client.get("/api/v1/openapi.json").json()["info"]["title"] == "ca-manager"


def test_api_needs_a_valid_key(client: TestClient, admin: Caller) -> None:
    assert client.get("/api/v1/connectors").status_code == 401
    bad = client.get("/api/v1/connectors", headers={"Authorization": "Bearer cak_000000000000_nope"})
    assert bad.status_code == 401
    assert bad.headers["content-type"] == "application/problem+json"
    assert bad.json()["code"] == "unauthenticated"
    assert client.get("/api/v1/connectors", headers=admin.headers).status_code == 200
