"""A connector as the manager's channel sees it, for tests and benchmarks: a row made the way
`connector add` makes it, and a key that registers and signs requests like `ca-connector` does."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ed25519

from caconnector.manager import tokens
from caconnector.manager.db.models import Connector, new_id
from caconnector.manager.runtime import Runtime
from caconnector.manager.services.dispatch import create_job
from caconnector.manager.services.status import ConnectorStatus, connector_status
from caconnector.protocol import messages
from caconnector.protocol.signing import generate_connector_key, public_key_pem, sign_request


def add_connector(runtime: Runtime, name: str = "dc1", ttl: dt.timedelta = dt.timedelta(hours=24)) -> str:
    """A Pending connector with an unused installation token; returns the token."""
    token = tokens.new_installation_token()
    now = runtime.now()
    with runtime.sessions.begin() as session:
        session.add(
            Connector(
                id=new_id(),
                name=name,
                created_at=now,
                token_hash=tokens.hash_secret(token),
                token_sealed=b"sealed copy",
                token_expires_at=now + ttl,
            )
        )
    return token


def new_token(runtime: Runtime, connector_id: str) -> str:
    """What `connector restore` does to the token columns: a fresh, unused token."""
    token = tokens.new_installation_token()
    with runtime.sessions.begin() as session:
        connector = session.get(Connector, connector_id)
        assert connector is not None
        connector.token_hash = tokens.hash_secret(token)
        connector.token_expires_at = runtime.now() + dt.timedelta(hours=24)
        connector.token_used_at = None
    return token


def connector_row(runtime: Runtime, connector_id: str) -> Connector:
    with runtime.sessions.begin() as session:
        connector = session.get(Connector, connector_id)
        assert connector is not None
        return connector


def status_of(runtime: Runtime, connector_id: str) -> ConnectorStatus:
    return connector_status(connector_row(runtime, connector_id), runtime.now(), runtime.settings)


@dataclass
class FakeConnector:
    """Registers and signs; the clock is the test's, so a moved FakeClock moves the signatures too."""

    clock: Callable[[], dt.datetime]
    key: ed25519.Ed25519PrivateKey = field(default_factory=generate_connector_key)
    connector_id: str = ""

    def register(
        self, client: httpx.Client, token: str, *, force: bool = False, **overrides: Any
    ) -> httpx.Response:
        body = {
            "token": token,
            "public_key": public_key_pem(self.key),
            "hostname": "dc1.example.test",
            "version": "0.1.0",
            "force": force,
            **overrides,
        }
        response = client.post(messages.REGISTER_PATH, json=body)
        if response.status_code == 200:
            self.connector_id = response.json()["connector_id"]
        return response

    def auth(self, method: str, path: str) -> dict[str, str]:
        token = sign_request(self.key, self.connector_id, method, path, self.clock())
        return {"Authorization": f"Bearer {token}"}

    def hello(self, client: httpx.Client) -> httpx.Response:
        return client.get(messages.HELLO_PATH, headers=self.auth("GET", messages.HELLO_PATH))

    def inventory(self, client: httpx.Client, backends: list[dict[str, Any]]) -> httpx.Response:
        body = {"hostname": "dc1.example.test", "version": "0.1.1", "backends": backends}
        return client.post(
            messages.INVENTORY_PATH, json=body, headers=self.auth("POST", messages.INVENTORY_PATH)
        )

    def poll(
        self,
        client: httpx.Client,
        *,
        wait: float = 0.0,
        capacity: int = 4,
        results: list[dict[str, Any]] | None = None,
        running: list[str] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """`timeout`: give one longer than `wait` to a real client (the TestClient takes none)."""
        body = {
            "wait_seconds": wait,
            "capacity": capacity,
            "results": results or [],
            "running": running or [],
        }
        headers = self.auth("POST", messages.POLL_PATH)
        if timeout is None:
            return client.post(messages.POLL_PATH, json=body, headers=headers)
        return client.post(messages.POLL_PATH, json=body, headers=headers, timeout=timeout)

    def goodbye(self, client: httpx.Client) -> httpx.Response:
        return client.post(messages.GOODBYE_PATH, json={}, headers=self.auth("POST", messages.GOODBYE_PATH))


def registered(runtime: Runtime, client: httpx.Client, name: str = "dc1") -> FakeConnector:
    connector = FakeConnector(runtime.clock)
    response = connector.register(client, add_connector(runtime, name))
    assert response.status_code == 200, response.text
    return connector


def ca_report(ref: str, **fields: Any) -> dict[str, Any]:
    """A CA as a backend reports it (messages.CAReport)."""
    return {
        "id": ref,
        "name": f"{ref} CA",
        "subject": f"CN={ref} CA,O=Example",
        "key_type": "ec-p256",
        "serial": "01ab",
        "not_after": "2035-01-01T00:00:00Z",
        "state": "active",
        **fields,
    }


def backend_report(name: str, **fields: Any) -> dict[str, Any]:
    """A backend as a connector reports it (messages.BackendReport)."""
    return {"name": name, "type": "local", "status": "Available", "cas": [], "templates": [], **fields}


def assert_problem(response: httpx.Response, status: int, code: str, *words: str) -> None:
    """An RFC 9457 problem with this status and code, whose detail names each of `words`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert (body["status"], body["code"]) == (status, code)
    for word in words:
        assert word in body["detail"], body["detail"]


# ---- long polls --------------------------------------------------------------------------------------


def add_job(runtime: Runtime, connector: FakeConnector) -> str:
    """A check job created the way the API creates one: in a transaction that then commits."""
    with runtime.sessions.begin() as session:
        job = create_job(
            session,
            connector.connector_id,
            messages.JobKind.CHECK,
            backend_name="LocalCA",
            payload={},
            now=runtime.now(),
        )
        return job.id


def wait_until_parked(runtime: Runtime, connector: FakeConnector, timeout: float = 10.0) -> None:
    """Until a poll of the connector waits for a job on this runtime's server."""
    deadline = time.monotonic() + timeout
    while runtime.wakeups.waiting(connector.connector_id) < 1:
        assert time.monotonic() < deadline, "the poll never started waiting"
        time.sleep(0.001)


class PollInBackground:
    """A poll sent from its own thread; `answered_at` is when its answer arrived (perf_counter)."""

    def __init__(self, connector: FakeConnector, client: httpx.Client, wait: float) -> None:
        self.response: httpx.Response | None = None
        self.answered_at = 0.0
        self._wait = wait
        self._thread = threading.Thread(target=self._run, args=(connector, client))
        self._thread.start()

    def _run(self, connector: FakeConnector, client: httpx.Client) -> None:
        self.response = connector.poll(client, wait=self._wait, capacity=1, timeout=self._wait + 10)
        self.answered_at = time.perf_counter()

    def answer(self) -> httpx.Response:
        self._thread.join(timeout=self._wait + 15)
        assert self.response is not None
        return self.response

    def result(self) -> dict[str, Any]:
        response = self.answer()
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body
