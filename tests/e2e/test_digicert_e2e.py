"""The digicert backend through real processes: `ca-manager serve` and `ca-connector run`, the connector's
backend added with the reference document's sample command and pointed (-endpoint) at the fake CertCentral,
a real HTTP server in this test process. Everything a user does goes through the manager's REST API."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from tests.e2e.conftest import Manager, available_backend
from tests.e2e.processes import BIN, Process, clean_env, run, wait_until
from tests.e2e.test_lifecycle import _verify
from tests.peers import digicert_fake
from tests.peers.digicert_fake import API_KEY, FakeCertCentral
from tests.support import all_bytes

from caconnector.testing import make_csr_pem

pytestmark = pytest.mark.slow

CONNECTOR = str(BIN / "ca-connector")


class DigiCertSite:
    """A registered connector whose only backend is DigiCert (the fake), its agent running."""

    def __init__(self, manager: Manager, fake: FakeCertCentral, tmp_path: Path) -> None:
        self.home = tmp_path / "dcsite"
        self.env = clean_env(CA_CONNECTOR_HOME=str(self.home))
        added = manager.cli("connector", "add", "-name", "dcsite")
        self.connector_id = added["id"]
        registered = run([CONNECTOR, "register", "-token", added["token"], "-manager", manager.url,
                          "-cacert", str(manager.tls.ca_pem)], self.env)  # fmt: skip
        assert registered.returncode == 0, registered.stderr
        # The reference document's sample command, plus -endpoint.
        self.backend_add = run([CONNECTOR, "backend", "add", "-name", "DigiCertCA", "-type", "digicert",
                                "-apikey", "49ca638f-ec73-40fa-a6f6-6a85e997a5a7", "-endpoint", fake.url],
                               self.env)  # fmt: skip
        assert self.backend_add.returncode == 0, self.backend_add.stderr
        self.log = tmp_path / "dcsite-agent.log"
        self.agent = Process("dcsite-agent", [CONNECTOR, "run"], self.log, self.env).start()

    def backend(self, api: httpx.Client) -> dict[str, Any]:
        return available_backend(api, self.connector_id, "the digicert backend")


@pytest.fixture
def certcentral() -> Iterator[FakeCertCentral]:
    fake = digicert_fake.digicert_peer()
    fake.reset()
    yield fake
    fake.reset()


@pytest.fixture
def site(manager: Manager, certcentral: FakeCertCentral, tmp_path: Path) -> Iterator[DigiCertSite]:
    created = DigiCertSite(manager, certcentral, tmp_path)
    yield created
    created.agent.stop()


def _profile(api: httpx.Client, backend: dict[str, Any], name: str, organization: str) -> dict[str, Any]:
    response = api.post("/profiles", json={
        "name": name, "backend": backend["id"], "ca": _ca_id(backend, digicert_fake.PRIVATE_CA_ID),
        "cert_type": "server", "terms_days": [90, 30], "key_types": ["ec-p256", "rsa-2048"],
        "product": digicert_fake.PRIVATE_PRODUCT, "organization": organization,
    })  # fmt: skip
    assert response.status_code == 201, response.text
    profile: dict[str, Any] = response.json()
    return profile


def _ca_id(backend: dict[str, Any], ref: str) -> str:
    return str(next(ca["id"] for ca in backend["cas"] if ca["ref"] == ref))


def _status(api: httpx.Client, cid: str) -> str:
    return str(api.get(f"/certificates/{cid}").json()["status"])


def _orders_for(fake: FakeCertCentral, name: str) -> int:
    return sum(1 for order in fake.placed() if order.common_name == name)


def _no_key_anywhere(manager: Manager, site: DigiCertSite) -> None:
    site.agent.stop()
    assert API_KEY not in site.agent.log()
    assert API_KEY not in site.backend_add.stdout + site.backend_add.stderr
    assert API_KEY.encode() not in all_bytes(site.home)
    assert API_KEY not in manager.process.log()
    assert API_KEY.encode() not in all_bytes(manager.datadir)


def test_validated_issues_unvalidated_is_refused_dcv_waits_and_revoke_reaches_digicert(
    manager: Manager, certcentral: FakeCertCentral, site: DigiCertSite, tmp_path: Path
) -> None:
    with manager.api() as api:
        backend = site.backend(api)
        assert backend["type"] == "digicert"
        assert {(p["id"], tuple(p["ca_ids"])) for p in backend["products"]} == {
            ("ssl_basic", ()),
            ("private_ssl_plus", (digicert_fake.PRIVATE_CA_ID,)),
        }
        statuses = {o["name"]: o["status"] for o in backend["organizations"]}
        assert statuses == {
            digicert_fake.VALIDATED_ORG_NAME: "validated",
            digicert_fake.PENDING_ORG_NAME: "pending",
        }

        # A profile on the validated organization issues; the certificate verifies against its chain.
        good = _profile(api, backend, "dc-web", digicert_fake.VALIDATED_ORG_NAME)
        csr = make_csr_pem("web.digicert.test")
        enrolled = api.post("/certificates", json={"profile": good["id"], "csr": csr, "wait": 30})
        assert enrolled.status_code == 201, enrolled.text
        certificate = enrolled.json()
        assert certificate["status"] == "Issued", certificate
        cid = certificate["id"]
        bundle = api.get(f"/certificates/{cid}/download", params={"format": "pem-chain"})
        assert bundle.status_code == 200, bundle.text
        leaf, *chain = x509.load_pem_x509_certificates(bundle.content)
        assert chain == [certcentral.private_ca.certificate, certcentral.private_root.certificate]
        verified = _verify(tmp_path, bundle.content, "dc-web")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert _orders_for(certcentral, "web.digicert.test") == 1

        # A profile on an organization DigiCert has not validated is refused, and nothing is ordered.
        bad = _profile(api, backend, "dc-pending-org", digicert_fake.PENDING_ORG_NAME)
        refused = api.post(
            "/certificates", json={"profile": bad["id"], "csr": make_csr_pem("no.digicert.test")}
        )
        assert refused.status_code == 422, refused.text
        assert "not validated" in refused.text
        assert "organization_not_validated" in refused.text
        assert _orders_for(certcentral, "no.digicert.test") == 0

        # An order waiting for domain validation is Pending, then Issued once DCV completes at DigiCert.
        certcentral.unvalidated_domains.add("dcv.digicert.test")
        dcv_csr = make_csr_pem("dcv.digicert.test")
        waiting = api.post("/certificates", json={"profile": good["id"], "csr": dcv_csr, "wait": 5})
        assert waiting.status_code in (201, 202), waiting.text
        pending_id = waiting.json()["id"]
        wait_until(lambda: _status(api, pending_id) == "Pending", 30, what="the DCV order to be Pending")
        certcentral.complete_dcv("dcv.digicert.test")
        wait_until(lambda: _status(api, pending_id) == "Issued", 60, what="the DCV order to be Issued")
        assert _orders_for(certcentral, "dcv.digicert.test") == 1

        # A revoke DigiCert takes as a request (the key may not skip approval): not shown as revoked.
        certcentral.may_skip_approval = False
        asked = api.post(f"/certificates/{pending_id}/revoke", json={"reason": "superseded", "wait": 30})
        assert asked.status_code in (200, 202), asked.text
        wait_until(
            lambda: (
                (api.get(f"/certificates/{pending_id}").json().get("error") or {}).get("code")
                == "revocation_requested"
            ),
            30,
            what="the revocation request to be shown",
        )
        assert _status(api, pending_id) == "Issued"
        assert [r.type for r in certcentral.pending_requests()] == ["revoke"]
        certcentral.may_skip_approval = True

        # Revoke reaches DigiCert.
        revoked = api.post(f"/certificates/{cid}/revoke", json={"reason": "keyCompromise", "wait": 30})
        assert revoked.status_code in (200, 202), revoked.text
        wait_until(lambda: _status(api, cid) == "Revoked", 30, what="Revoked")
    assert certcentral.revoked_serials() == {leaf.serial_number}
    assert next(o for o in certcentral.placed() if o.common_name == "web.digicert.test").revoked_reason == (
        "key_compromise"
    )
    _no_key_anywhere(manager, site)


def test_fifty_enrollments_through_a_storm_of_429s_give_fifty_orders(
    manager: Manager, certcentral: FakeCertCentral, site: DigiCertSite
) -> None:
    # The manager's default retry policy: the client paces passing 429s, the manager retries the rest.
    with manager.api() as api:
        backend = site.backend(api)
        profile = _profile(api, backend, "dc-storm", str(digicert_fake.VALIDATED_ORG))
        certcentral.throttle_every = 3  # every third answer of CertCentral is 429 request_limit_exceeded
        names = [f"h{index}.storm.digicert.test" for index in range(50)]

        def enroll(name: str) -> str:
            answer = api.post("/certificates", json={"profile": profile["id"], "csr": make_csr_pem(name),
                                                     "wait": 20})  # fmt: skip
            assert answer.status_code in (201, 202), answer.text
            return str(answer.json()["id"])

        with ThreadPoolExecutor(max_workers=10) as pool:
            ids = list(pool.map(enroll, names))
        wait_until(
            lambda: all(_status(api, cid) == "Issued" for cid in ids), 180, interval=1, what="50 Issued"
        )
    assert certcentral.throttled >= 30, certcentral.throttled  # the storm happened
    assert len(certcentral.placed()) == 50
    assert sorted(o.common_name for o in certcentral.placed()) == sorted(names)
    _no_key_anywhere(manager, site)
