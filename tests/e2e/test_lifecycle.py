"""Issue acceptance for the certificate lifecycle, with real processes: the quickstart command, the REST
API through a real manager and connector, 200 enrollments across two SIGKILLs of the connector, and scan."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from tests.e2e.conftest import Manager, available_backend
from tests.e2e.processes import BIN, Process, clean_env, run, wait_until
from tests.ports import free_port
from tests.support import openssl_csr

from caconnector.testing import make_csr_pem

pytestmark = pytest.mark.slow

CONNECTOR = str(BIN / "ca-connector")


def _verify(tmp_path: Path, bundle: bytes, name: str) -> subprocess.CompletedProcess[str]:
    """openssl verify of the first certificate of a PEM bundle, trusting only its last one (the root)."""
    certificates = x509.load_pem_x509_certificates(bundle)
    chain, root = tmp_path / f"{name}-chain.pem", tmp_path / f"{name}-root.pem"
    chain.write_bytes(bundle)
    root.write_bytes(certificates[-1].public_bytes(serialization.Encoding.PEM))
    return subprocess.run(
        ["openssl", "verify", "-CAfile", str(root), "-untrusted", str(chain), str(chain)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def _quickstart(datadir: Path) -> subprocess.CompletedProcess[str]:
    """`ca-manager quickstart -exit -json` on a free port, as scripts/demo runs it."""
    argv = [str(BIN / "ca-manager"), "quickstart", "-exit", "-json", "-port", str(free_port())]
    return run([*argv, "-datadir", str(datadir)], clean_env(), timeout=240)


def test_quickstart_issues_a_certificate_openssl_verifies(tmp_path: Path) -> None:
    datadir = tmp_path / "quick"
    done = _quickstart(datadir)
    assert done.returncode == 0, done.stdout + done.stderr
    outcome = json.loads(done.stdout)
    assert outcome["admin"]["username"] == "admin"
    assert outcome["admin"]["password"]
    assert outcome["api_url"].startswith("http://127.0.0.1:")
    bundle = Path(outcome["certificate"]["pem_chain"]).read_bytes()
    verified = _verify(tmp_path, bundle, "quickstart")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert Path(outcome["certificate"]["private_key"]).stat().st_mode & 0o077 == 0
    # The credentials file: 0600 in a 0700 data directory, holding what was printed.
    credentials = Path(outcome["credentials_file"])
    assert credentials.parent == datadir
    assert (credentials.stat().st_mode & 0o777, datadir.stat().st_mode & 0o777) == (0o600, 0o700)
    assert (datadir / "connector").stat().st_mode & 0o077 == 0
    assert json.loads(credentials.read_text()) == outcome["admin"]
    # A second run reuses the connector, the backend, the profile, the admin and its API key (the README's
    # commands read the key from the file), and issues another certificate.
    again = _quickstart(datadir)
    assert again.returncode == 0, again.stdout + again.stderr
    second = json.loads(again.stdout)
    assert second["admin"] == outcome["admin"]
    assert second["certificate"]["serial"] != outcome["certificate"]["serial"]
    # Later commands on that data directory know where the manager was last served: its port, not 8443.
    command = [
        str(BIN / "ca-manager"),
        "connector",
        "add",
        "-name",
        "next",
        "-json",
        "-datadir",
        str(datadir),
    ]
    added = run(command, clean_env())
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["install_command"].endswith(f"-manager {second['api_url']}")


class Site:
    """A registered connector with a local CA backend, its agent running, seen by the manager."""

    def __init__(self, manager: Manager, tmp_path: Path, name: str = "site") -> None:
        self.manager = manager
        self.tmp_path = tmp_path
        self.home = tmp_path / name
        self.name = name
        added = manager.cli("connector", "add", "-name", name)
        self.connector_id = added["id"]
        env = clean_env(CA_CONNECTOR_HOME=str(self.home))
        self.env = env
        registered = run([CONNECTOR, "register", "-token", added["token"], "-manager", manager.url,
                          "-cacert", str(manager.tls.ca_pem)], env)  # fmt: skip
        assert registered.returncode == 0, registered.stderr
        assert run([CONNECTOR, "backend", "add", "-name", "LocalCA", "-type", "local"], env).returncode == 0
        self.agents = 0
        self.agent = self.start()

    def start(self) -> Process:
        self.agents += 1
        return Process(f"agent{self.agents}", [CONNECTOR, "run"], self.tmp_path / f"{self.name}-agent.log",
                       self.env).start()  # fmt: skip

    def backend(self, api: httpx.Client) -> dict[str, Any]:
        return available_backend(api, self.connector_id, "the local CA backend")

    def issued_at_ca(self) -> int:
        with sqlite3.connect(self.home / "backends" / "LocalCA" / "local-ca.sqlite") as db:
            count: int = db.execute("SELECT count(*) FROM certificates").fetchone()[0]
            return count


@pytest.fixture
def site(manager: Manager, tmp_path: Path) -> Iterator[Site]:
    created = Site(manager, tmp_path)
    yield created
    created.agent.stop()


def _profile(api: httpx.Client, backend: dict[str, Any], name: str, key_types: list[str]) -> dict[str, Any]:
    response = api.post("/profiles", json={
        "name": name, "backend": backend["id"], "ca": backend["cas"][0]["id"], "cert_type": "server",
        "terms_days": [90, 30], "key_types": key_types,
    })  # fmt: skip
    assert response.status_code == 201, response.text
    profile: dict[str, Any] = response.json()
    return profile


def test_rest_lifecycle_with_openssl_csr(manager: Manager, site: Site, tmp_path: Path) -> None:
    with manager.api() as api:
        backend = site.backend(api)
        profile = _profile(api, backend, "web", ["rsa-2048", "ec-p256"])
        csr = openssl_csr(tmp_path, "web", "-newkey", "rsa:2048", subj="/CN=web.example.test",
                          san="DNS:web.example.test,DNS:www.example.test").read_text()  # fmt: skip
        enrolled = api.post("/certificates", json={"profile": profile["id"], "csr": csr, "wait": 30})
        assert enrolled.status_code == 201, enrolled.text
        certificate = enrolled.json()
        assert certificate["status"] == "Issued"
        cid = certificate["id"]

        downloads = {f: api.get(f"/certificates/{cid}/download", params={"format": f}) for f in
                     ("pem", "pem-chain", "chain", "der", "pkcs7")}  # fmt: skip
        for fmt, response in downloads.items():
            assert response.status_code == 200, (fmt, response.text)
        leaf = x509.load_pem_x509_certificate(downloads["pem"].content)
        assert x509.load_der_x509_certificate(downloads["der"].content) == leaf
        chain = x509.load_pem_x509_certificates(downloads["chain"].content)
        assert x509.load_pem_x509_certificates(downloads["pem-chain"].content) == [leaf, *chain]
        assert set(pkcs7.load_der_pkcs7_certificates(downloads["pkcs7"].content)) == {leaf, *chain}
        verified = _verify(tmp_path, downloads["pem-chain"].content, "web")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sans.get_values_for_type(x509.DNSName) == ["web.example.test", "www.example.test"]

        revoked = api.post(f"/certificates/{cid}/revoke", json={"reason": "keyCompromise", "wait": 30})
        assert revoked.status_code in (200, 202), revoked.text
        # One answer, one moment: Revoked (200) only with its job done; otherwise still being revoked.
        answer = revoked.json()
        if revoked.status_code == 200:
            assert answer["certificate"]["status"] == "Revoked"
            assert (answer["job"]["status"], answer["job"]["outcome"]) == ("done", "ok"), answer["job"]
        else:
            assert answer["certificate"]["status"] == "Issued"
            assert answer["certificate"]["reason"] == "being revoked (keyCompromise)"
            assert answer["job"]["status"] != "done", answer["job"]
        wait_until(lambda: api.get(f"/certificates/{cid}").json()["status"] == "Revoked", 30, what="Revoked")

        def crl_lists_it() -> bool:
            response = api.get(f"/cas/{backend['cas'][0]['id']}/crl")
            if response.status_code != 200:
                return False
            crl = x509.load_der_x509_crl(response.content)
            return crl.get_revoked_certificate_by_serial_number(leaf.serial_number) is not None

        wait_until(crl_lists_it, 30, what="the serial in the CA's CRL")

        # Bad input: a 4xx problem naming the reason, and nothing stored as Issued.
        before = api.get("/certificates", params={"limit": 500}).json()["items"]
        bad = api.post(
            "/certificates",
            json={"profile": profile["id"], "csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"},
        )
        assert 400 <= bad.status_code < 500
        assert bad.headers["content-type"].startswith("application/problem+json")
        assert "CSR" in bad.json()["detail"] or "request" in bad.json()["detail"]
        weak_key = openssl_csr(
            tmp_path, "ec384", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"
        ).read_text()
        refused = api.post("/certificates", json={"profile": profile["id"], "csr": weak_key})
        assert 400 <= refused.status_code < 500
        assert "ec-p384" in refused.json()["detail"]
        after = api.get("/certificates", params={"limit": 500}).json()["items"]
        assert len(after) == len(before)
    assert site.issued_at_ca() == 1


def test_200_enrollments_survive_two_sigkills_exactly_once(manager: Manager, site: Site) -> None:
    with manager.api() as api:
        backend = site.backend(api)
        profile = _profile(api, backend, "bulk", ["ec-p256"])
        ids = []
        for index in range(200):
            response = api.post(
                "/certificates", json={"profile": profile["id"], "csr": make_csr_pem(f"h{index}.bulk.test")}
            )
            assert response.status_code in (201, 202), response.text
            ids.append(response.json()["id"])

        def issued() -> int:
            items = api.get("/certificates", params={"limit": 500, "status": "Issued"}).json()["items"]
            return sum(1 for item in items if item["id"] in set(ids))

        for threshold in (40, 110):

            def reached(n: int = threshold) -> bool:
                return issued() >= n

            wait_until(reached, 120, interval=0.02, what=f"{threshold} issued")
            assert site.agent.stop(signal.SIGKILL) == -signal.SIGKILL
            time.sleep(0.5)
            site.agent = site.start()
        wait_until(lambda: issued() == 200, 240, interval=0.5, what="all 200 issued")
        statuses = {api.get(f"/certificates/{cid}").json()["status"] for cid in ids}
    assert statuses == {"Issued"}
    assert site.issued_at_ca() == 200


def test_scan_imports_outside_certificates_once(manager: Manager, site: Site, tmp_path: Path) -> None:
    csr = openssl_csr(tmp_path, "outside", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256")
    issued = run([CONNECTOR, "backend", "enroll", "-name", "LocalCA", "-csr", str(csr), "-json"], site.env)
    assert issued.returncode == 0, issued.stderr
    serial = json.loads(issued.stdout)["serial"]
    with manager.api() as api:
        backend = site.backend(api)

        def scan() -> dict[str, Any]:
            job = api.post(f"/backends/{backend['id']}/scan").json()["job"]
            wait_until(lambda: api.get(f"/jobs/{job['id']}").json()["status"] == "done", 30, what="scan job")
            result: dict[str, Any] = api.get(f"/jobs/{job['id']}").json()
            return result

        scan()
        found = api.get("/certificates", params={"serial": serial}).json()["items"]
        assert len(found) == 1
        assert found[0]["status"] == "Issued"
        scan()
        assert len(api.get("/certificates", params={"serial": serial}).json()["items"]) == 1
        assert len(api.get("/certificates", params={"limit": 500}).json()["items"]) == 1
