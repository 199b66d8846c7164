"""The entrust backend through real processes: `ca-manager serve` and `ca-connector run`, the connector's
backend pointed at the fake ECS (mutual TLS and Basic auth, a server in this test process). Through the
manager's REST API: issued for an APPROVED organization, refused for a PENDING one before any order, an
approval that ends Issued with one order, a decline that ends Failed with Entrust's reason, a revoke by a
serial with a leading zero byte, 50 enrollments under steady throttling, and the credentials nowhere in
clear."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from tests.e2e.conftest import Manager, available_backend
from tests.e2e.processes import BIN, Process, clean_env, run, wait_until
from tests.e2e.test_lifecycle import _verify
from tests.peers.entrust_fake import (
    APIKEY,
    APPROVAL_REQUIRED,
    APPROVED_ORG,
    PENDING_ORG,
    STANDARD,
    USERNAME,
    FakeECS,
    entrust_peer,
)
from tests.support import all_bytes, openssl_csr

pytestmark = pytest.mark.slow

CONNECTOR = str(BIN / "ca-connector")
# Retries after a throttled job start at one second (the default is five), to keep the test short.
FAST_RETRIES = {"CA_MANAGER_RETRY_BASE_SECONDS": "1"}


class EntrustSite:
    """A registered connector whose only backend is the fake ECS, its agent running."""

    def __init__(self, manager: Manager, ecs: FakeECS, tmp_path: Path) -> None:
        self.home = tmp_path / "esite"
        self.env = clean_env(CA_CONNECTOR_HOME=str(self.home))
        self.env.pop("SSL_CERT_DIR", None)
        added = manager.cli("connector", "add", "-name", "esite")
        self.connector_id = added["id"]
        registered = run([CONNECTOR, "register", "-token", added["token"], "-manager", manager.url,
                          "-cacert", str(manager.tls.ca_pem)], self.env)  # fmt: skip
        assert registered.returncode == 0, registered.stderr
        cert, key, cacert = (
            tmp_path / "authfile.cer",
            tmp_path / "myprivatekey.pkcs8",
            tmp_path / "ecs-ca.pem",
        )
        cert.write_text(ecs.client_cert_pem)
        key.write_text(ecs.client_key_pem)
        cacert.write_text(ecs.ca_pem)
        backend = run([CONNECTOR, "backend", "add", "-name", "EntrustCA", "-type", "entrust",
                       "-username", USERNAME, "-apikey", APIKEY, "-cert", str(cert), "-key", str(key),
                       "-endpoint", ecs.url, "-cacert", str(cacert)], self.env)  # fmt: skip
        assert backend.returncode == 0, backend.stderr
        self.outputs = [registered.stdout + registered.stderr, backend.stdout + backend.stderr]
        for path in (cert, key, cacert):
            path.unlink()
        self.agent = Process(
            "esite-agent", [CONNECTOR, "run"], tmp_path / "esite-agent.log", self.env
        ).start()

    def backend(self, api: httpx.Client) -> dict[str, Any]:
        return available_backend(api, self.connector_id, "the entrust backend")


@pytest.fixture
def ecs(monkeypatch: pytest.MonkeyPatch) -> FakeECS:
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(variable, raising=False)
    peer = entrust_peer()
    peer.reset()
    return peer


@pytest.fixture
def site(manager: Manager, ecs: FakeECS, tmp_path: Path) -> Iterator[EntrustSite]:
    created = EntrustSite(manager, ecs, tmp_path)
    yield created
    created.agent.stop()


def _profile(api: httpx.Client, backend: dict[str, Any], name: str, product: str, organization: str) -> str:
    response = api.post("/profiles", json={
        "name": name, "backend": backend["id"], "ca": backend["cas"][0]["id"], "cert_type": "server",
        "terms_days": [90], "key_types": ["ec-p256", "rsa-2048"], "product": product,
        "organization": organization,
    })  # fmt: skip
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _csr(tmp_path: Path, name: str) -> str:
    host = f"{name}.example.test"
    return openssl_csr(tmp_path, name, "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                       subj=f"/CN={host}", san=f"DNS:{host}").read_text()  # fmt: skip


def _status(api: httpx.Client, certificate_id: str) -> dict[str, Any]:
    document: dict[str, Any] = api.get(f"/certificates/{certificate_id}").json()
    return document


def _key_stretches(ecs: FakeECS) -> list[bytes]:
    key = serialization.load_pem_private_key(ecs.client_key_pem.encode(), password=None)
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    body = "".join(ecs.client_key_pem.strip().splitlines()[1:-1])
    return [body[10:60].encode(), der[-40:]]


@pytest.mark.parametrize("manager", [FAST_RETRIES], indirect=True)
def test_entrust_through_manager_and_connector(
    manager: Manager, ecs: FakeECS, site: EntrustSite, tmp_path: Path
) -> None:
    with manager.api() as api:
        backend = site.backend(api)
        assert backend["type"] == "entrust"
        organizations = {o["name"]: o for o in backend["organizations"]}
        assert organizations[APPROVED_ORG]["status"] == "validated"
        assert organizations[PENDING_ORG]["status"] == "pending"
        web = _profile(api, backend, "ecs-web", STANDARD, APPROVED_ORG)

        # Issued for an APPROVED organization; the chain verifies.
        enrolled = api.post("/certificates", json={"profile": web, "csr": _csr(tmp_path, "web"), "wait": 30})
        assert enrolled.status_code == 201, enrolled.text
        issued = enrolled.json()
        assert issued["status"] == "Issued", issued
        bundle = api.get(f"/certificates/{issued['id']}/download", params={"format": "pem-chain"})
        assert bundle.status_code == 200, bundle.text
        verified = _verify(tmp_path, bundle.content, "ecs-web")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert len(x509.load_pem_x509_certificates(bundle.content)) == 3  # leaf, issuing CA, root
        assert ecs.orders_placed == 1

        # Refused for a PENDING organization, with no order placed at Entrust.
        pending_org = _profile(api, backend, "ecs-pending-org", STANDARD, PENDING_ORG)
        refused = api.post("/certificates", json={"profile": pending_org, "csr": _csr(tmp_path, "p")})
        assert refused.status_code in (400, 409, 422), refused.text
        assert "not validated" in refused.text
        assert ecs.orders_placed == 1
        assert not [r for r in ecs.requests if r.method == "POST" and "pending" in str(r.body)]

        # An approval-required certType: Pending, then Issued after approval, with one order.
        approval = _profile(api, backend, "ecs-approval", APPROVAL_REQUIRED, APPROVED_ORG)
        waiting = api.post(
            "/certificates", json={"profile": approval, "csr": _csr(tmp_path, "a"), "wait": 10}
        )
        assert waiting.status_code in (201, 202), waiting.text
        approval_id = waiting.json()["id"]
        wait_until(lambda: _status(api, approval_id)["status"] == "Pending", 30, what="Pending")
        [tracking_id] = ecs.pending()
        ecs.approve(tracking_id)
        wait_until(lambda: _status(api, approval_id)["status"] == "Issued", 60, what="Issued after approval")
        assert _status(api, approval_id)["order_ref"] == str(tracking_id)
        assert ecs.orders_placed == 2

        # A declined order ends Failed with Entrust's reason.
        declined = api.post("/certificates", json={"profile": approval, "csr": _csr(tmp_path, "d")})
        declined_id = declined.json()["id"]
        wait_until(lambda: len(ecs.pending()) == 1, 30, what="the second approval order")
        [tracking_id] = ecs.pending()
        ecs.decline(tracking_id, "Organization contact could not confirm the request")
        wait_until(lambda: _status(api, declined_id)["status"] == "Failed", 60, what="Failed after decline")
        assert "Organization contact could not confirm the request" in str(_status(api, declined_id))
        assert ecs.orders_placed == 3

        # Revoke by a serial whose DER carries a leading zero byte (Entrust drops it).
        leaf = x509.load_pem_x509_certificates(bundle.content)[0]
        assert leaf.serial_number.bit_length() % 8 == 0  # top bit set: DER adds a zero byte in front
        revoked = api.post(
            f"/certificates/{issued['id']}/revoke", json={"reason": "keyCompromise", "wait": 30}
        )
        assert revoked.status_code in (200, 202), revoked.text
        wait_until(lambda: _status(api, issued["id"])["status"] == "Revoked", 30, what="Revoked")
        assert ecs.revoked_serials() == {leaf.serial_number}

        # 50 enrollments while every third answer is 429 with Retry-After: 50 Issued, 50 orders.
        before = ecs.orders_placed
        ecs.throttle(every=3, retry_after=1)
        ids = []
        for index in range(50):
            response = api.post("/certificates", json={"profile": web, "csr": _csr(tmp_path, f"bulk{index}")})
            assert response.status_code in (201, 202), response.text
            ids.append(response.json()["id"])

        def all_issued() -> bool:
            statuses = [_status(api, i)["status"] for i in ids]
            assert "Failed" not in statuses, [
                _status(api, i) for i in ids if _status(api, i)["status"] == "Failed"
            ]
            return statuses.count("Issued") == 50

        wait_until(all_issued, 240, what="50 certificates Issued")
        ecs.throttle(every=0)
        assert ecs.throttled > 0
        assert ecs.orders_placed - before == 50

    site.agent.stop()
    logs = site.agent.log() + manager.process.log() + "".join(site.outputs)
    stored = all_bytes(site.home) + all_bytes(manager.datadir)
    for secret in (USERNAME.encode(), APIKEY.encode(), *_key_stretches(ecs)):
        assert secret not in stored, secret
        assert secret.decode(errors="replace") not in logs, secret
    assert b"PRIVATE KEY" not in all_bytes(site.home)
