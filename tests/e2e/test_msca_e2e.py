"""Microsoft AD CS end to end: a real `ca-manager serve`, a real `ca-connector run` whose msca backend
reaches the fake AD CS Web Enrollment server over TLS with Basic auth, and the REST API a user calls. The
profile's template is the AD CS template: issued, pending until a CA manager approves it, and denied."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from tests.e2e.conftest import Manager, available_backend
from tests.e2e.processes import BIN, Process, clean_env, run, wait_until
from tests.e2e.test_lifecycle import _verify
from tests.peers import adcs_web_fake
from tests.peers.adcs_web_fake import CA_NAME, FakeAdcs
from tests.support import all_bytes, openssl_csr

from caconnector.connector.store import ConnectorStore

pytestmark = pytest.mark.slow

CONNECTOR = str(BIN / "ca-connector")


@pytest.fixture
def adcs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAdcs]:
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(variable, raising=False)
    yield from adcs_web_fake.running(tmp_path / "adcs")


def _profile(api: httpx.Client, backend: dict[str, Any], name: str, template: str) -> dict[str, Any]:
    response = api.post("/profiles", json={
        "name": name, "backend": backend["id"], "ca": backend["cas"][0]["id"], "cert_type": "server",
        "terms_days": [365], "key_types": ["rsa-2048"], "template": template,
    })  # fmt: skip
    assert response.status_code == 201, response.text
    profile: dict[str, Any] = response.json()
    return profile


def test_issued_pending_and_denied_templates_through_the_manager(
    manager: Manager, adcs: FakeAdcs, tmp_path: Path
) -> None:
    added = manager.cli("connector", "add", "-name", "adcs-site")
    home = tmp_path / "adcs-site"
    env = clean_env(CA_CONNECTOR_HOME=str(home))
    registered = run([CONNECTOR, "register", "-token", added["token"], "-manager", manager.url,
                      "-cacert", str(manager.tls.ca_pem)], env)  # fmt: skip
    assert registered.returncode == 0, registered.stderr
    cacert = tmp_path / "adcs-ca.pem"
    cacert.write_text(adcs.ca_pem)
    backend_add = run([CONNECTOR, "backend", "add", "-name", "MSCA1", "-type", "msca", "-server", "127.0.0.1",
                       "-ca", CA_NAME, "-transport", "web", "-auth", "basic", "-username", adcs.username,
                       "-password", adcs.password, "-endpoint", adcs.url, "-cacert", str(cacert),
                       "-requester", "CORP\\web-owner"], env)  # fmt: skip
    assert backend_add.returncode == 0, backend_add.stderr
    agent_cert = run(
        [CONNECTOR, "backend", "msca", "enroll-agent-cert", "-name", "MSCA1", "-ca", CA_NAME], env
    )
    assert agent_cert.returncode == 0, agent_cert.stderr

    agent = Process("adcs-agent", [CONNECTOR, "run"], tmp_path / "adcs-agent.log", env).start()
    try:
        with manager.api() as api:
            backend = available_backend(api, added["id"], "the msca backend with its CA")
            assert backend["type"] == "msca"
            assert [ca["ref"] for ca in backend["cas"]] == [CA_NAME]
            csr = openssl_csr(tmp_path, "web", "-newkey", "rsa:2048", subj="/CN=web.corp.test",
                              san="DNS:web.corp.test").read_text()  # fmt: skip

            issued_profile = _profile(api, backend, "adcs-web", adcs_web_fake.ISSUED_TEMPLATE)
            enrolled = api.post(
                "/certificates", json={"profile": issued_profile["id"], "csr": csr, "wait": 30}
            )
            assert enrolled.status_code == 201, enrolled.text
            assert enrolled.json()["status"] == "Issued", enrolled.json()
            bundle = api.get(
                f"/certificates/{enrolled.json()['id']}/download", params={"format": "pem-chain"}
            )
            _leaf, *chain = x509.load_pem_x509_certificates(bundle.content)
            assert chain == [adcs.ca_certificate]
            verified = _verify(tmp_path, bundle.content, "adcs-web")
            assert verified.returncode == 0, verified.stdout + verified.stderr
            assert adcs.requests[max(adcs.requests)].requester == "CORP\\web-owner"

            pending_profile = _profile(api, backend, "adcs-approval", adcs_web_fake.PENDING_TEMPLATE)
            waiting = api.post(
                "/certificates", json={"profile": pending_profile["id"], "csr": csr, "wait": 10}
            )
            assert waiting.status_code in (201, 202), waiting.text
            pending_id = waiting.json()["id"]
            wait_until(lambda: _pending_at_the_ca(adcs) == 1, 30, what="the request to wait at the CA")
            assert api.get(f"/certificates/{pending_id}").json()["status"] == "Pending"
            adcs.approve()
            wait_until(
                lambda: api.get(f"/certificates/{pending_id}").json()["status"] == "Issued", 90, what="Issued"
            )
            approval_requests = [
                r for r in adcs.requests.values() if r.template == adcs_web_fake.PENDING_TEMPLATE
            ]
            assert len(approval_requests) == 1

            denied_profile = _profile(api, backend, "adcs-denied", adcs_web_fake.DENIED_TEMPLATE)
            denied = api.post("/certificates", json={"profile": denied_profile["id"], "csr": csr, "wait": 30})
            denied_id = denied.json()["id"]
            wait_until(
                lambda: api.get(f"/certificates/{denied_id}").json()["status"] == "Failed", 30, what="Failed"
            )
            failed = api.get(f"/certificates/{denied_id}").json()
            assert adcs_web_fake.DENIED_MESSAGE in str(failed["error"]) + str(failed["reason"])
    finally:
        agent.stop()
    key_pem = ConnectorStore(home).read().backends["MSCA1"].secrets["eakey"]
    key_body = "".join(key_pem.splitlines()[1:-1])
    for secret in (adcs.password, key_body[40:100]):
        assert secret not in agent.log()
        assert secret.encode() not in all_bytes(home)


def _pending_at_the_ca(adcs: FakeAdcs) -> int:
    return sum(1 for r in adcs.requests.values() if r.status == "pending")
