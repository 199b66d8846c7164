"""The connector packages the manager serves (/downloads), the newest version it serves and `outdated`
on connectors, and /readyz (database reachable and at the migration head)."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import text
from tests.manager.conftest import Caller
from tests.manager.connector_support import registered

from caconnector.manager.runtime import Runtime
from caconnector.manager.services import downloads


def _offer(runtime: Runtime, *names: str) -> Path:
    directory = downloads.downloads_dir(runtime.settings)
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        (directory / name).write_bytes(f"package {name}".encode())
    return directory


def test_nothing_served_is_a_404_problem_naming_the_directory(client: TestClient, runtime: Runtime) -> None:
    response = client.get("/downloads/ca-connector.deb")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert str(downloads.downloads_dir(runtime.settings)) in response.json()["detail"]


def test_the_newest_deb_and_wheel_are_served_with_their_version(client: TestClient, runtime: Runtime) -> None:
    _offer(
        runtime,
        "ca-connector_0.9.0_amd64.deb",
        "ca-connector_0.10.0_amd64.deb",  # newer than 0.9.0 as a version, older as a string
        "ca-connector_latest_amd64.deb",  # not a version: ignored
        "caconnector-0.10.1-py3-none-any.whl",
        "notes.txt",
    )
    deb = client.get("/downloads/ca-connector.deb")
    assert deb.status_code == 200
    assert deb.headers["x-ca-connector-version"] == "0.10.0"
    assert deb.content == b"package ca-connector_0.10.0_amd64.deb"
    assert 'filename="ca-connector_0.10.0_amd64.deb"' in deb.headers["content-disposition"]
    wheel = client.get("/downloads/caconnector.whl")
    assert wheel.headers["x-ca-connector-version"] == "0.10.1"
    head = client.head("/downloads/ca-connector.deb")
    assert head.status_code == 200 and head.headers["x-ca-connector-version"] == "0.10.0"
    assert str(downloads.newest_version(runtime.settings)) == "0.10.1"


def test_connectors_older_than_the_newest_served_are_outdated(
    client: TestClient, runtime: Runtime, admin: Caller
) -> None:
    connector = registered(runtime, client)  # reports 0.1.0
    view = client.get(f"/api/v1/connectors/{connector.connector_id}", headers=admin.headers).json()
    assert view["version"] == "0.1.0" and view["outdated"] is None  # nothing served: unknown
    _offer(runtime, "ca-connector_0.1.1_amd64.deb")
    listed = client.get("/api/v1/connectors", headers=admin.headers).json()["items"]
    assert [c["outdated"] for c in listed] == [True]
    assert connector.inventory(client, []).status_code == 204  # the inventory reports 0.1.1
    view = client.get(f"/api/v1/connectors/{connector.connector_id}", headers=admin.headers).json()
    assert (view["version"], view["outdated"]) == ("0.1.1", False)


def test_readyz_is_ready_at_the_head_and_not_before(client: TestClient, runtime: Runtime) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    with runtime.engine.begin() as connection:
        head = connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        connection.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    try:
        behind = client.get("/readyz")
        assert behind.status_code == 503
        assert "run ca-manager db upgrade" in behind.json()["detail"]
    finally:
        with runtime.engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = :head"), {"head": head})


def test_the_add_dialog_links_the_package_when_one_is_served(
    client: TestClient, runtime: Runtime, admin: Caller
) -> None:
    first = client.post("/api/v1/connectors", json={"name": "dc-a"}, headers=admin.headers).json()
    assert first["package_url"] is None
    _offer(runtime, "ca-connector_0.2.0_amd64.deb")
    added = client.post("/api/v1/connectors", json={"name": "dc-b"}, headers=admin.headers).json()
    assert added["package_url"] == f"{runtime.settings.public_url}/downloads/ca-connector.deb"
    shown = client.get(f"/api/v1/connectors/{added['id']}", headers=admin.headers).json()
    assert shown["package_url"] == added["package_url"] and shown["token"] == added["token"]
