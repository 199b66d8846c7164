"""ACME end to end: a real `ca-manager serve`, a real `ca-connector run` whose backend is acme pointed at
pebble (real http-01 validation of the tokens the connector serves), and the REST API a user calls.

The connector reaches pebble through an HTTPS proxy that kills the connector (SIGKILL) when it first asks
for the certificate, i.e. after the order was finalized and before any result reached the manager. The
manager redelivers the enroll job to the restarted connector, which must collect the same order: pebble
then holds one order and one certificate for the account, and it is the one the manager shows."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from cryptography import x509
from tests.e2e.conftest import Manager, available_backend
from tests.e2e.processes import BIN, Process, clean_env, run, wait_until
from tests.e2e.test_lifecycle import _profile, _verify
from tests.peers.pebble import Intercept, Pebble
from tests.support import all_bytes, openssl_csr

from caconnector.connector import backend_admin
from caconnector.connector.store import ConnectorStore

pytestmark = pytest.mark.slow

CONNECTOR = str(BIN / "ca-connector")


def test_issue_redeliver_after_finalize_and_revoke_through_the_manager(
    manager: Manager, pebble: Pebble, tmp_path: Path
) -> None:
    added = manager.cli("connector", "add", "-name", "acme-site")
    home = tmp_path / "acme-site"
    env = clean_env(CA_CONNECTOR_HOME=str(home))
    registered = run([CONNECTOR, "register", "-token", added["token"], "-manager", manager.url,
                      "-cacert", str(manager.tls.ca_pem)], env)  # fmt: skip
    assert registered.returncode == 0, registered.stderr
    cacert, roots = tmp_path / "pebble-tls.pem", tmp_path / "pebble-root.pem"
    cacert.write_text(pebble.tls_ca_pem)
    roots.write_text(pebble.root_pem())

    agents: list[Process] = []

    def crash() -> None:
        # The connector dies between finalize and download: no result reaches the manager.
        agents[-1].stop(signal.SIGKILL)

    with Intercept(pebble, "/certZ/", crash) as proxy:
        backend_add = run([CONNECTOR, "backend", "add", "-name", "acme", "-type", "acme",
                           "-directory", proxy.directory_url, "-cacert", str(cacert), "-roots", str(roots),
                           "-httpaddress", f"127.0.0.1:{pebble.http_port}"], env)  # fmt: skip
        assert backend_add.returncode == 0, backend_add.stderr
        stored = backend_admin.get_backend(ConnectorStore(home), "acme")
        account = (stored.secrets["accountkey"], str(stored.options["accounturl"]))

        agents.append(Process("acme-agent", [CONNECTOR, "run"], tmp_path / "acme-agent.log", env).start())
        try:
            with manager.api() as api:
                backend = available_backend(api, added["id"], "the acme backend with pebble's root")
                assert backend["type"] == "acme"
                profile = _profile(api, backend, "acme-web", ["ec-p256"])
                key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256")
                csr = openssl_csr(tmp_path, "acme-web", *key, subj="/CN=web.acme.test",
                                  san="DNS:web.acme.test").read_text()  # fmt: skip

                enrolled = api.post("/certificates", json={"profile": profile["id"], "csr": csr})
                assert enrolled.status_code in (201, 202), enrolled.text
                cid = enrolled.json()["id"]
                wait_until(proxy.fired.is_set, 60, what="the connector finalizing the order")
                assert api.get(f"/certificates/{cid}").json()["status"] != "Issued"
                # pebble has finalized the order; the job's lease runs out and it is delivered again.
                agents.append(
                    Process("acme-agent-2", [CONNECTOR, "run"], tmp_path / "acme-agent-2.log", env).start()
                )
                wait_until(lambda: api.get(f"/certificates/{cid}").json()["status"] == "Issued", 60,
                           what="Issued after redelivery")  # fmt: skip

                bundle = api.get(f"/certificates/{cid}/download", params={"format": "pem-chain"})
                assert bundle.status_code == 200, bundle.text
                leaf, *chain = x509.load_pem_x509_certificates(bundle.content)
                assert chain[-1] == x509.load_pem_x509_certificate(pebble.root_pem().encode())
                verified = _verify(tmp_path, bundle.content, "acme-web")
                assert verified.returncode == 0, verified.stdout + verified.stderr
                # One order at pebble, one certificate: the one the manager holds.
                assert len(pebble.orders(*account)) == 1
                assert pebble.serials(*account) == {leaf.serial_number}

                revoked = api.post(
                    f"/certificates/{cid}/revoke", json={"reason": "keyCompromise", "wait": 30}
                )
                assert revoked.status_code in (200, 202), revoked.text
                wait_until(
                    lambda: api.get(f"/certificates/{cid}").json()["status"] == "Revoked", 30, what="Revoked"
                )
            status = pebble.cert_status(leaf.serial_number)
            assert status is not None and (status["Status"], status["Reason"]) == ("Revoked", 1)
        finally:
            for agent in agents:
                agent.stop()
    key_lines = [line for line in account[0].splitlines() if line and not line.startswith("-----")]
    logs = "".join(agent.log() for agent in agents)
    stored_bytes = all_bytes(home)
    assert not any(line in logs for line in key_lines)
    assert not any(line.encode() in stored_bytes for line in key_lines)
