"""A real `ca-manager serve` over TLS on a free port, with an admin API key, for end-to-end tests."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e.processes import (
    BIN,
    Process,
    TLSFiles,
    clean_env,
    make_tls,
    run,
    serving_manager,
    wait_until,
)
from tests.ports import free_port


@dataclass
class Manager:
    url: str
    env: dict[str, str]
    tls: TLSFiles
    api_key: str
    process: Process
    datadir: Path

    def cli(self, *args: str, env: dict[str, str] | None = None) -> Any:
        done = run([str(BIN / "ca-manager"), *args, "-json"], {**self.env, **(env or {})})
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.url}/api/v1",
            verify=ssl.create_default_context(cafile=str(self.tls.ca_pem)),
            headers={"Authorization": f"Bearer {self.api_key}"},
            trust_env=False,
            timeout=30,
        )

    def connector(self, connector_id: str) -> dict[str, Any]:
        with self.api() as client:
            response = client.get(f"/connectors/{connector_id}")
            response.raise_for_status()
            document: dict[str, Any] = response.json()
            return document


def available_backend(api: httpx.Client, connector_id: str, what: str) -> dict[str, Any]:
    """The connector's backend once the manager shows it Available with its CAs (after the inventory)."""

    def found() -> dict[str, Any] | None:
        for backend in api.get("/backends").json()["items"]:
            if backend["connector"] == connector_id and backend["status"] == "Available" and backend["cas"]:
                return dict(backend)
        return None

    wait_until(lambda: found() is not None, 30, what=f"{what} in the manager")
    result = found()
    assert result is not None
    return result


@pytest.fixture
def manager(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Manager]:
    """`serve` with short waits; parametrize `manager` indirectly with a dict to override settings."""
    tls = make_tls(tmp_path / "tls")
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    datadir = tmp_path / "manager"
    env = clean_env(
        CA_MANAGER_HOME=str(datadir),
        CA_MANAGER_PUBLIC_URL=url,
        CA_MANAGER_POLL_WAIT_SECONDS="5",
        CA_MANAGER_HEARTBEAT_GRACE_SECONDS="2",
        CA_MANAGER_LEASE_SECONDS="5",  # redeliver quickly after a connector is killed
    )
    env.update(getattr(request, "param", {}))
    bin_manager = str(BIN / "ca-manager")
    assert run([bin_manager, "admin", "create", "-username", "admin"], env).returncode == 0
    key = json.loads(run([bin_manager, "apikey", "create", "-username", "admin", "-json"], env).stdout)
    api_key = key["api_key"]
    with serving_manager(port, tls, env, tmp_path / "manager.log") as process:
        yield Manager(url, env, tls, api_key, process, datadir)
