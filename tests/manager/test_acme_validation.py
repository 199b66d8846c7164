"""The ACME server validating challenges itself (a profile with real validation on), against
pebble-challtestsrv as the DNS server and the http-01 responder: http-01 and dns-01 succeed with the
right answers and make the order ready; a wrong TXT record makes the authorization invalid."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from tests.e2e.processes import wait_until
from tests.manager.conftest import Caller
from tests.manager.lifecycle_support import API, Lab, create_profile, make_lab
from tests.manager.test_acme_server import AcmeAccount, _account, _b64, _binding, _csr_der
from tests.peers.pebble import CHALLTESTSRV
from tests.ports import free_port

from caconnector.manager.settings import Settings


class ChallTestSrv:
    def __init__(self, directory: Path) -> None:
        self.dns_port, self.http_port, self.management_port = free_port(), free_port(), free_port()
        self.log = (directory / "challtestsrv.log").open("wb")
        self.process = subprocess.Popen(
            [CHALLTESTSRV, "-dns01", f"127.0.0.1:{self.dns_port}", "-http01", f"127.0.0.1:{self.http_port}",
             "-management", f"127.0.0.1:{self.management_port}", "-https01", "", "-tlsalpn01", "",
             "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""],
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.url = f"http://127.0.0.1:{self.management_port}"
        history = f"{self.url}/dns-request-history"
        wait_until(lambda: httpx.get(history, trust_env=False).status_code < 500, 10, what="challtestsrv")

    def set(self, path: str, **body: str) -> None:
        assert httpx.post(f"{self.url}/{path}", json=body, trust_env=False).status_code == 200

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self.log.close()


@pytest.fixture(scope="module")
def challtestsrv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChallTestSrv]:
    server = ChallTestSrv(tmp_path_factory.mktemp("challtestsrv"))
    yield server
    server.stop()


@pytest.fixture
def settings(settings: Settings, challtestsrv: ChallTestSrv) -> Settings:
    return settings.model_copy(update={
        "acme_dns_resolver": f"127.0.0.1:{challtestsrv.dns_port}", "acme_http01_port": challtestsrv.http_port,
    })  # fmt: skip


@pytest.fixture
def lab(runtime: Any, client: TestClient, tmp_path: Path, admin: Caller) -> Lab:
    made = make_lab(runtime, client, tmp_path)
    create_profile(client, admin, made)
    enabled = client.put(f"{API}/acme-profiles/web", json={"real_validation": True}, headers=admin.headers)
    assert enabled.status_code == 200, enabled.text
    return made


def _authorization(account: AcmeAccount, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    placed = account.order(name)
    assert placed.status_code == 201, placed.text
    order = placed.json()
    assert order["status"] == "pending"
    authz = account.post(order["authorizations"][0], "").json()
    assert authz["status"] == "pending"
    assert {c["type"] for c in authz["challenges"]} == {"http-01", "dns-01"}
    return order, authz


def _challenge(authz: dict[str, Any], kind: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in authz["challenges"] if c["type"] == kind)
    return found


def _key_authorization(account: AcmeAccount, token: str) -> str:
    canonical = json.dumps(account.jwk, separators=(",", ":"), sort_keys=True).encode()
    return f"{token}.{_b64(hashlib.sha256(canonical).digest())}"


def test_http01_and_dns01_validated_by_the_manager(
    client: TestClient, admin: Caller, lab: Lab, challtestsrv: ChallTestSrv
) -> None:
    account = _account(client, _binding(client, admin, ["inside.test"]))

    order, authz = _authorization(account, "web.outside.test")
    http01 = _challenge(authz, "http-01")
    challtestsrv.set(
        "add-http01", token=http01["token"], content=_key_authorization(account, http01["token"])
    )
    answered = account.post(http01["url"], {}).json()
    assert answered["status"] == "valid", answered
    assert account.post(order["finalize"].rsplit("/", 1)[0], "").json()["status"] == "ready"
    finalized = account.post(order["finalize"], {"csr": _csr_der(["web.outside.test"])})
    assert finalized.json()["status"] == "processing"

    order, authz = _authorization(account, "dns.outside.test")
    dns01 = _challenge(authz, "dns-01")
    digest = _b64(hashlib.sha256(_key_authorization(account, dns01["token"]).encode()).digest())
    challtestsrv.set("set-txt", host="_acme-challenge.dns.outside.test.", value=digest)
    assert account.post(dns01["url"], {}).json()["status"] == "valid"

    order, authz = _authorization(account, "wrong.outside.test")
    dns01 = _challenge(authz, "dns-01")
    challtestsrv.set("set-txt", host="_acme-challenge.wrong.outside.test.", value="not-the-digest")
    failed = account.post(dns01["url"], {}).json()
    assert failed["status"] == "invalid"
    assert failed["error"]["type"] == "urn:ietf:params:acme:error:incorrectResponse"
    assert account.post(order["authorizations"][0], "").json()["status"] == "invalid"
    refused = account.post(order["finalize"], {"csr": _csr_der(["wrong.outside.test"])})
    assert refused.status_code == 403
    assert refused.json()["type"] == "urn:ietf:params:acme:error:orderNotReady"
