"""AWS Private CA end to end: a real `ca-manager serve` over TLS, a real `ca-connector run` whose backend
is acmpca pointing at moto's server, and the REST API a user calls. The connector process reaches moto
only through the endpoint stored with `backend add` (no AWS environment variables)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from tests.e2e.conftest import Manager, available_backend
from tests.e2e.processes import BIN, Process, clean_env, run, wait_until
from tests.e2e.test_lifecycle import _profile, _verify
from tests.peers.moto_server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, MotoPeer, moto_peer
from tests.support import all_bytes, openssl_csr

from caconnector.backends.acmpca.backend import aws_serial

pytestmark = pytest.mark.slow

CONNECTOR = str(BIN / "ca-connector")


@pytest.fixture(scope="session")
def moto() -> MotoPeer:
    return moto_peer()


def test_enroll_and_revoke_through_the_manager(manager: Manager, moto: MotoPeer, tmp_path: Path) -> None:
    moto.reset()
    root = moto.active_ca("Moto E2E Root")
    added = manager.cli("connector", "add", "-name", "aws-site")
    home = tmp_path / "aws-site"
    # No AWS_* variables: everything the backend needs is in its stored configuration.
    env = {k: v for k, v in clean_env(CA_CONNECTOR_HOME=str(home)).items() if not k.startswith("AWS_")}
    registered = run([CONNECTOR, "register", "-token", added["token"], "-manager", manager.url,
                      "-cacert", str(manager.tls.ca_pem)], env)  # fmt: skip
    assert registered.returncode == 0, registered.stderr
    backend_add = run([CONNECTOR, "backend", "add", "-name", "corp-aws", "-type", "acmpca",
                       "-accesskeyid", ACCESS_KEY_ID, "-secretaccesskey", SECRET_ACCESS_KEY,
                       "-region", "us-east-1", "-endpoint", moto.url], env)  # fmt: skip
    assert backend_add.returncode == 0, backend_add.stderr

    agent = Process("aws-agent", [CONNECTOR, "run"], tmp_path / "aws-agent.log", env).start()
    try:
        with manager.api() as api:
            backend = available_backend(api, added["id"], "the acmpca backend with its CA")
            assert backend["type"] == "acmpca"
            assert [(ca["ref"], ca["name"], ca["state"]) for ca in backend["cas"]] == [
                (root.arn, "Moto E2E Root", "active")
            ]
            profile = _profile(api, backend, "aws-web", ["rsa-2048", "ec-p256"])
            csr = openssl_csr(tmp_path, "aws-web", "-newkey", "rsa:2048", subj="/CN=web.aws.test",
                              san="DNS:web.aws.test").read_text()  # fmt: skip

            enrolled = api.post("/certificates", json={"profile": profile["id"], "csr": csr, "wait": 30})
            assert enrolled.status_code == 201, enrolled.text
            certificate = enrolled.json()
            assert certificate["status"] == "Issued"
            cid = certificate["id"]
            bundle = api.get(f"/certificates/{cid}/download", params={"format": "pem-chain"})
            assert bundle.status_code == 200, bundle.text
            leaf, *chain = x509.load_pem_x509_certificates(bundle.content)
            assert chain == [root.certificate]
            verified = _verify(tmp_path, bundle.content, "aws-web")
            assert verified.returncode == 0, verified.stdout + verified.stderr
            assert moto.issued_arns(root.arn) != []

            revoked = api.post(f"/certificates/{cid}/revoke", json={"reason": "keyCompromise", "wait": 30})
            assert revoked.status_code in (200, 202), revoked.text
            wait_until(
                lambda: api.get(f"/certificates/{cid}").json()["status"] == "Revoked", 30, what="Revoked"
            )
        assert moto.revocations(root.arn) == {aws_serial(leaf.serial_number): "KEY_COMPROMISE"}
        assert len(moto.issued_arns(root.arn)) == 1
    finally:
        agent.stop()
    assert SECRET_ACCESS_KEY not in agent.log()
    assert SECRET_ACCESS_KEY.encode() not in all_bytes(home)
