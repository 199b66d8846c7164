"""Issue 19's acceptance with real processes: a script written for the commercial manager's REST API
(docs/examples/cert_manager_enroll.py, through the `cert_manager` client from PyPI) run unchanged
against `ca-manager serve` over TLS, with a `ca-connector run` answering through its local CA."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7
from tests.e2e.conftest import Manager
from tests.e2e.processes import clean_env, run, wait_until
from tests.e2e.test_lifecycle import Site
from tests.support import openssl_csr

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).parents[2] / "docs" / "examples" / "cert_manager_enroll.py"


def test_a_cert_manager_script_enrolls_collects_and_revokes_unchanged(
    manager: Manager, tmp_path: Path
) -> None:
    site = Site(manager, tmp_path)
    try:
        user = manager.cli("admin", "create", "-username", "scripts", "-role", "operator")
        with manager.api() as api:
            backend = site.backend(api)
            ca_id = backend["cas"][0]["id"]
            profile = api.post("/profiles", json={
                "name": "Web Server", "backend": backend["id"], "ca": ca_id, "cert_type": "server",
                "terms_days": [90], "key_types": ["rsa-2048"],
            })  # fmt: skip
            assert profile.status_code == 201, profile.text
            ca_pem = tmp_path / "ca.pem"
            ca_pem.write_bytes(api.get(f"/cas/{ca_id}/certificate").content)

        csr = openssl_csr(tmp_path, "web", "-newkey", "rsa:2048", subj="/CN=web.example.test",
                          san="DNS:web.example.test").read_text()  # fmt: skip
        (tmp_path / "web.csr").write_text(csr)
        env = clean_env(CM_PASSWORD=user["password"], REQUESTS_CA_BUNDLE=str(manager.tls.ca_pem))
        argv = [sys.executable, str(SCRIPT), "-base-url", f"{manager.url}/api", "-login-uri", "ca-manager",
                "-username", "scripts", "-csr", str(tmp_path / "web.csr"), "-out", str(tmp_path / "out"),
                "-formats", "x509CO,x509IO,pem,base64,bin", "-revoke", "keyCompromise"]  # fmt: skip
        done = run(argv, env, timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr
        outcome = json.loads(done.stdout)
        files = {fmt: Path(path).read_bytes() for fmt, path in outcome["files"].items()}

        leaf = x509.load_pem_x509_certificate(files["x509CO"])
        verified = subprocess.run(
            ["openssl", "verify", "-CAfile", str(ca_pem), outcome["files"]["x509CO"]],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert x509.load_pem_x509_certificates(files["x509IO"]) == [
            x509.load_pem_x509_certificate(ca_pem.read_bytes())
        ]
        assert x509.load_pem_x509_certificates(files["pem"])[-1] == leaf
        assert leaf in pkcs7.load_pem_pkcs7_certificates(files["base64"])
        assert leaf in pkcs7.load_der_pkcs7_certificates(files["bin"])

        # Our own REST API shows the same certificate (renewId is our id), revoked by the script.
        with manager.api() as api:

            def ours() -> dict[str, object]:
                response = api.get(f"/certificates/{outcome['renewId']}")
                assert response.status_code == 200, response.text
                body: dict[str, object] = response.json()
                return body

            assert ours()["serial"] == format(leaf.serial_number, "x")
            wait_until(lambda: ours()["status"] == "Revoked", 30, what="the certificate Revoked")
            assert ours()["revocation_reason"] == "keyCompromise"

        # A wrong password: the client's 401, the script fails without a certificate.
        wrong = run(argv, {**env, "CM_PASSWORD": "not-Her-Password-42"}, timeout=60)
        assert wrong.returncode != 0
        assert "401" in wrong.stderr and "not-Her-Password-42" not in wrong.stderr
    finally:
        site.agent.stop()
