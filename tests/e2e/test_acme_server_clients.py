"""Issue 20's acceptance with real ACME clients, certbot itself (and Debian's lego): certonly with EAB
through the manager's ACME directory, renew --force-renewal, revoke (the serial then in the CA's CRL), a
name outside the binding's domains refused with rejectedIdentifier, and real http-01 validation of
certbot's standalone server."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from tests.e2e.acme_lab import Lab, acme_lab
from tests.e2e.processes import clean_env, wait_until
from tests.e2e.test_lifecycle import _verify

from caconnector.pki.serial import canonical_serial

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with acme_lab(tmp_path_factory.mktemp("acme-certbot")) as made:
        yield made


def _leaf(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificates(path.read_bytes())[0]


def test_certonly_renew_revoke(lab: Lab, tmp_path: Path) -> None:
    binding = lab.bindings["web"]
    home = tmp_path / "certbot"
    names = ["www.example.test", "example.test"]
    done = lab.certbot(
        home, "certonly", "--standalone", "--http-01-port", str(lab.http01_port), *lab.register_args(binding),
        "--cert-name", "web", *(a for n in names for a in ("-d", n)),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    live = home / "config" / "live" / "web"
    leaf = _leaf(live / "cert.pem")
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(sans.get_values_for_type(x509.DNSName)) == sorted(names)
    verified = _verify(tmp_path, (live / "fullchain.pem").read_bytes(), "certbot")
    assert verified.returncode == 0, verified.stdout + verified.stderr

    # A normal certificate in our API, requested by the ACME account (the audit log's actor).
    serial = canonical_serial(leaf.serial_number)
    with lab.api() as api:
        found = api.get("/certificates", params={"serial": serial}).json()["items"]
        assert [c["status"] for c in found] == ["Issued"]
        first = found[0]
        events = api.get("/audit", params={"action": "certificate.enroll", "limit": 100}).json()["items"]
        event = next(e for e in events if e["target"] == f"certificate:{first['id']}")
        assert event["actor"].startswith("acme:")

    renewed = lab.certbot(home, "renew", "--force-renewal", "--cert-name", "web")
    assert renewed.returncode == 0, renewed.stdout + renewed.stderr
    second = _leaf(live / "cert.pem")
    assert second.serial_number != leaf.serial_number
    with lab.api() as api:
        again = api.get("/certificates", params={"serial": canonical_serial(second.serial_number)}).json()
        assert [c["status"] for c in again["items"]] == ["Issued"]

    revoked = lab.certbot(
        home, "revoke", "--cert-name", "web", "--server", binding.directory, "--no-delete-after-revoke",
        "--reason", "keycompromise",
    )  # fmt: skip
    assert revoked.returncode == 0, revoked.stdout + revoked.stderr

    def in_crl() -> bool:
        with lab.api() as api:
            response = api.get(f"/cas/{lab.ca_id}/crl")
            if response.status_code != 200:
                return False
            crl = x509.load_der_x509_crl(response.content)
            return crl.get_revoked_certificate_by_serial_number(second.serial_number) is not None

    wait_until(in_crl, 30, what="the revoked serial in the CA's CRL")
    with lab.api() as api:
        status = api.get("/certificates", params={"serial": canonical_serial(second.serial_number)}).json()
        assert status["items"][0]["status"] == "Revoked"
        assert status["items"][0]["revocation_reason"] == "keyCompromise"


def test_a_name_outside_the_allowed_domains_is_rejected(lab: Lab, tmp_path: Path) -> None:
    before = len(lab.certificates())
    home = tmp_path / "certbot"
    done = lab.certbot(
        home, "certonly", "--standalone", "--http-01-port", str(lab.http01_port),
        *lab.register_args(lab.bindings["web"]), "-d", "www.example.test", "-d", "www.elsewhere.test",
    )  # fmt: skip
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "not within this account's allowed domains" in output, output
    assert "www.elsewhere.test" in output
    # certbot prints the problem's detail; its debug log has the whole document, type included.
    log = (home / "logs" / "letsencrypt.log").read_text()
    assert "urn:ietf:params:acme:error:rejectedIdentifier" in log
    assert len(lab.certificates()) == before


def test_real_http01_validation_of_certbot_standalone(lab: Lab, tmp_path: Path) -> None:
    """The `validated` profile validates names outside its binding: the manager fetches the token from
    certbot's standalone server (the name mapped to 127.0.0.1, on the configured http-01 port)."""
    home = tmp_path / "certbot"
    done = lab.certbot(
        home, "certonly", "--standalone", "--http-01-port", str(lab.http01_port),
        *lab.register_args(lab.bindings["validated"]), "--cert-name", "validated",
        "-d", "outside.validated.test",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    leaf = _leaf(home / "config" / "live" / "validated" / "cert.pem")
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["outside.validated.test"]

    # A name no server answers for is invalid, and nothing is issued.
    before = len(lab.certificates())
    failed = lab.certbot(
        tmp_path / "again", "certonly", "--standalone", "--http-01-port", str(lab.http01_port + 0),
        *lab.register_args(lab.bindings["validated"]), "-d", "nowhere.validated.test",
    )  # fmt: skip
    assert failed.returncode != 0
    assert "nowhere.validated.test" in failed.stdout + failed.stderr
    assert len(lab.certificates()) == before


def test_lego_obtains_and_revokes(lab: Lab, tmp_path: Path) -> None:
    """lego (Debian's), a client of another lineage than certbot, through the same directory."""
    binding = lab.bindings["web"]
    common = [
        "lego", "--server", binding.directory, "--eab", "--kid", binding.kid, f"--hmac={binding.hmac_key}",
        "--email", "admin@example.test", "--accept-tos", "--domains", "lego.example.test",
        "--path", str(tmp_path / "lego"), "--http", "--http.port", f"127.0.0.1:{lab.http01_port}",
    ]  # fmt: skip
    env = clean_env(LEGO_CA_CERTIFICATES=str(lab.manager.tls.ca_pem))
    done = subprocess.run([*common, "run"], capture_output=True, text=True, env=env, timeout=180, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    bundle = (tmp_path / "lego" / "certificates" / "lego.example.test.crt").read_bytes()
    verified = _verify(tmp_path, bundle, "lego")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    leaf = x509.load_pem_x509_certificates(bundle)[0]
    revoked = subprocess.run(
        [*common, "revoke"], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert revoked.returncode == 0, revoked.stdout + revoked.stderr
    with lab.api() as api:
        serial = canonical_serial(leaf.serial_number)

        def is_revoked() -> bool:
            return bool(
                api.get("/certificates", params={"serial": serial}).json()["items"][0]["status"] == "Revoked"
            )

        wait_until(is_revoked, 30, what="lego's certificate Revoked")


def test_no_hmac_key_in_the_manager_log(lab: Lab) -> None:
    log = lab.manager.process.log()
    assert "acme" in log  # the requests were logged, and with them no key
    for binding in lab.bindings.values():
        assert binding.hmac_key not in log
