"""The gcpcas backend through real processes: `ca-manager serve` and `ca-connector run`, the connector's
backend pointed at the fake CA Service (a real HTTP server in this test process). Enroll with wait, revoke,
and scan import, all through the manager's REST API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from tests.e2e.conftest import Manager, available_backend
from tests.e2e.processes import BIN, Process, clean_env, run, wait_until
from tests.e2e.test_lifecycle import _verify
from tests.peers.gcpcas_fake import FakeCAS, gcpcas_peer, service_account_info
from tests.support import openssl_csr

pytestmark = pytest.mark.slow

CONNECTOR = str(BIN / "ca-connector")
PROJECT = "private-ca-342871"
LOCATION = "us-east1"
POOL = f"projects/{PROJECT}/locations/{LOCATION}/caPools/corp"


class GoogleSite:
    """A registered connector whose only backend is CA Service (the fake), its agent running."""

    def __init__(self, manager: Manager, fake: FakeCAS, tmp_path: Path) -> None:
        self.home = tmp_path / "gsite"
        self.env = clean_env(CA_CONNECTOR_HOME=str(self.home))
        added = manager.cli("connector", "add", "-name", "gsite")
        self.connector_id = added["id"]
        registered = run([CONNECTOR, "register", "-token", added["token"], "-manager", manager.url,
                          "-cacert", str(manager.tls.ca_pem)], self.env)  # fmt: skip
        assert registered.returncode == 0, registered.stderr
        key_file = tmp_path / "service-account-key.json"
        key_file.write_text(json.dumps(service_account_info(PROJECT)))
        options = ["-project", PROJECT, "-location", LOCATION, "-key", str(key_file), "-endpoint", fake.url]
        backend = run(
            [CONNECTOR, "backend", "add", "-name", "GoogleCA", "-type", "gcpcas", *options], self.env
        )
        assert backend.returncode == 0, backend.stderr
        key_file.unlink()
        self.agent = Process(
            "gsite-agent", [CONNECTOR, "run"], tmp_path / "gsite-agent.log", self.env
        ).start()

    def backend(self, api: httpx.Client) -> dict[str, Any]:
        return available_backend(api, self.connector_id, "the gcpcas backend")


@pytest.fixture
def fake() -> FakeCAS:
    peer = gcpcas_peer()
    peer.reset()
    peer.add_pool(PROJECT, LOCATION, "corp", cas=("ca-1",))
    peer.add_template(PROJECT, LOCATION, "server")
    return peer


@pytest.fixture
def site(manager: Manager, fake: FakeCAS, tmp_path: Path) -> Iterator[GoogleSite]:
    created = GoogleSite(manager, fake, tmp_path)
    yield created
    created.agent.stop()


def test_enroll_revoke_and_scan_through_manager_and_connector(
    manager: Manager, fake: FakeCAS, site: GoogleSite, tmp_path: Path
) -> None:
    with manager.api() as api:
        backend = site.backend(api)
        assert backend["type"] == "gcpcas"
        assert "server" in backend["templates"]
        [ca] = backend["cas"]
        assert "Enterprise tier" in ca["name"]
        response = api.post("/profiles", json={
            "name": "gcp-web", "backend": backend["id"], "ca": ca["id"], "cert_type": "server",
            "terms_days": [30], "key_types": ["ec-p256", "rsa-2048"],
        })  # fmt: skip
        assert response.status_code == 201, response.text
        profile = response.json()

        csr = openssl_csr(tmp_path, "web", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                          subj="/CN=web.example.test", san="DNS:web.example.test").read_text()  # fmt: skip
        enrolled = api.post("/certificates", json={"profile": profile["id"], "csr": csr, "wait": 30})
        assert enrolled.status_code == 201, enrolled.text
        certificate = enrolled.json()
        assert certificate["status"] == "Issued"
        bundle = api.get(f"/certificates/{certificate['id']}/download", params={"format": "pem-chain"})
        assert bundle.status_code == 200, bundle.text
        verified = _verify(tmp_path, bundle.content, "gcp-web")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        leaf = x509.load_pem_x509_certificates(bundle.content)[0]
        [stored] = fake.stored(POOL)
        assert stored.certificate == leaf
        assert stored.template == f"projects/{PROJECT}/locations/{LOCATION}/certificateTemplates/server"
        assert (leaf.not_valid_after_utc - leaf.not_valid_before_utc).days == 30
        assert fake.certificates_created == 1
        [create] = fake.calls("/caPools/corp/certificates", "POST")
        assert create.query["issuingCertificateAuthorityId"] == ["ca-1"]  # the profile's CA, by its id
        assert create.query["requestId"] != [certificate["id"]]  # a UUID derived from it, not it

        revoked = api.post(
            f"/certificates/{certificate['id']}/revoke", json={"reason": "keyCompromise", "wait": 30}
        )
        assert revoked.status_code in (200, 202), revoked.text
        wait_until(
            lambda: api.get(f"/certificates/{certificate['id']}").json()["status"] == "Revoked",
            30,
            what="Revoked",
        )
        revocation = fake.stored(POOL)[0].revocation
        assert revocation is not None
        assert revocation[0] == "KEY_COMPROMISE"

        # A certificate issued outside the manager (the connector's own CLI) is imported by a scan, once.
        outside = openssl_csr(tmp_path, "outside", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                              subj="/CN=outside.example.test", san="DNS:outside.example.test")  # fmt: skip
        command = [
            "backend",
            "enroll",
            "-name",
            "GoogleCA",
            "-csr",
            str(outside),
            "-ca",
            "corp/ca-1",
            "-json",
        ]
        issued = run([CONNECTOR, *command], site.env)
        assert issued.returncode == 0, issued.stderr
        serial = json.loads(issued.stdout)["serial"]

        def scan() -> None:
            job = api.post(f"/backends/{backend['id']}/scan").json()["job"]
            wait_until(lambda: api.get(f"/jobs/{job['id']}").json()["status"] == "done", 30, what="scan job")

        scan()
        found = api.get("/certificates", params={"serial": serial}).json()["items"]
        assert len(found) == 1
        assert found[0]["status"] == "Issued"
        scan()
        assert len(api.get("/certificates", params={"serial": serial}).json()["items"]) == 1
        assert len(api.get("/certificates", params={"limit": 500}).json()["items"]) == 2
    assert fake.certificates_created == 2
    # The agent and the connector's CLI each got a token for the stored key (the key file was deleted
    # after `backend add`), and every CA Service call carried one the fake had issued.
    grants = fake.issued()
    assert grants
    assert {g.client_email for g in grants} == {service_account_info(PROJECT)["client_email"]}
    assert fake.unauthenticated == []
    assert {r.header("Authorization") for r in fake.requests} <= {f"Bearer {g.access_token}" for g in grants}
