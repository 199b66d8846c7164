"""`ca-connector backend ...` with -type digicert as an operator uses it, against the fake CertCentral over
real HTTP: the reference document's sample command (plus -endpoint), `backend test` listing products and
organizations, enroll and revoke from the command line, and a key that never appears in clear."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from tests.peers import digicert_fake
from tests.peers.digicert_fake import API_KEY, FakeCertCentral
from tests.support import Result, all_bytes, openssl_csr

Run = Callable[..., Result]


@pytest.fixture
def certcentral() -> Iterator[FakeCertCentral]:
    fake = digicert_fake.digicert_peer()
    fake.reset()
    yield fake
    fake.reset()


def _verify(tmp_path: Path, bundle: Path) -> subprocess.CompletedProcess[str]:
    certificates = x509.load_pem_x509_certificates(bundle.read_bytes())
    root = tmp_path / "root.pem"
    root.write_bytes(certificates[-1].public_bytes(serialization.Encoding.PEM))
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(certificates[0].public_bytes(serialization.Encoding.PEM))
    return subprocess.run(
        ["openssl", "verify", "-CAfile", str(root), "-untrusted", str(bundle), str(leaf)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_reference_sample_command_then_test_lists_products_and_organizations(
    certcentral: FakeCertCentral, shell: Run, tmp_path: Path, datadir: Path
) -> None:
    outputs = [
        # The reference document's sample command as written, plus -endpoint to reach the fake.
        shell("backend", "add", "-name", "DigiCertCA", "-type", "digicert", "-apikey",
              "49ca638f-ec73-40fa-a6f6-6a85e997a5a7", "-endpoint", certcentral.url)
    ]  # fmt: skip
    assert outputs[-1].code == 0, outputs[-1].err
    assert "backend 'DigiCertCA' (digicert) added" in outputs[-1].out

    outputs.append(shell("backend", "test", "-name", "DigiCertCA", "-json"))
    assert outputs[-1].code == 0, outputs[-1].err
    tested = json.loads(outputs[-1].out)
    assert tested["status"] == "Available"
    assert {(p["id"], p["type"]) for p in tested["products"]} == {
        ("ssl_basic", "ssl_certificate"),
        ("private_ssl_plus", "private_ssl_certificate"),
    }
    private = next(p for p in tested["products"] if p["id"] == "private_ssl_plus")
    assert private["ca_ids"] == [digicert_fake.PRIVATE_CA_ID]
    assert {(o["id"], o["name"], o["status"]) for o in tested["organizations"]} == {
        (str(digicert_fake.VALIDATED_ORG), digicert_fake.VALIDATED_ORG_NAME, "Validated"),
        (str(digicert_fake.PENDING_ORG), digicert_fake.PENDING_ORG_NAME, "Not validated (pending)"),
    }
    assert {ca["id"] for ca in tested["cas"]} == {"digicert", digicert_fake.PRIVATE_CA_ID}

    outputs.append(shell("backend", "test", "-name", "DigiCertCA"))
    assert outputs[-1].code == 0, outputs[-1].err
    assert "private_ssl_plus" in outputs[-1].out
    assert digicert_fake.VALIDATED_ORG_NAME in outputs[-1].out

    outputs.append(shell("backend", "show", "-name", "DigiCertCA", "-json"))
    assert outputs[-1].code == 0, outputs[-1].err
    assert json.loads(outputs[-1].out)["settings"]["apikey"] == "********"

    csr = openssl_csr(tmp_path, "web", "-newkey", "rsa:2048", subj="/CN=web.example.test",
                      san="DNS:web.example.test,DNS:www.example.test")  # fmt: skip
    out = tmp_path / "web.pem"
    outputs.append(shell("backend", "enroll", "-name", "DigiCertCA", "-csr", str(csr),
                         "-product", "ssl_basic", "-organization", digicert_fake.VALIDATED_ORG_NAME,
                         "-days", "90", "-out", str(out)))  # fmt: skip
    assert outputs[-1].code == 0, outputs[-1].err
    verified = _verify(tmp_path, out)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    [order] = certcentral.placed()
    # The names come from the CSR, the organization resolved from its name, the term sent as days.
    assert (order.common_name, order.dns_names) == (
        "web.example.test",
        ["web.example.test", "www.example.test"],
    )
    assert (order.organization_id, order.validity_days) == (digicert_fake.VALIDATED_ORG, 90)
    leaf = x509.load_pem_x509_certificates(out.read_bytes())[0]

    serial = format(leaf.serial_number, "x")
    outputs.append(
        shell("backend", "revoke", "-name", "DigiCertCA", "-serial", serial, "-reason", "keyCompromise")
    )
    assert outputs[-1].code == 0, outputs[-1].err
    assert certcentral.revoked_serials() == {leaf.serial_number}
    assert certcentral.placed()[0].revoked_reason == "key_compromise"

    for result in outputs:
        assert API_KEY not in result.out + result.err
    assert API_KEY.encode() not in all_bytes(datadir)


def test_a_wrong_key_is_an_auth_error_naming_the_option_not_the_key(
    certcentral: FakeCertCentral, shell: Run
) -> None:
    wrong = "deadbeef-0000-4000-8000-00000000cafe"
    refused = shell("backend", "add", "-name", "dc", "-type", "digicert", "-apikey", wrong,
                    "-endpoint", certcentral.url)  # fmt: skip
    assert refused.code == 1
    assert "-apikey" in refused.err
    assert "Access denied" in refused.err  # DigiCert's message, verbatim
    assert wrong not in refused.out + refused.err
    added = shell("backend", "add", "-name", "dc", "-type", "digicert", "-apikey", wrong,
                  "-endpoint", certcentral.url, "-nocheck")  # fmt: skip
    assert added.code == 0, added.err
    tested = shell("backend", "test", "-name", "dc", "-json")
    assert tested.code == 1
    message = json.loads(tested.out)["error"]["message"]
    assert "is Offline" in message
    assert "-apikey" in message
    assert "Access denied" in message  # DigiCert's message, verbatim
    assert wrong not in tested.out + tested.err


def test_a_revoke_digicert_must_approve_is_reported_as_a_request(
    certcentral: FakeCertCentral, shell: Run, tmp_path: Path
) -> None:
    assert shell("backend", "add", "-name", "dc", "-type", "digicert", "-apikey", API_KEY,
                 "-endpoint", certcentral.url).code == 0  # fmt: skip
    csr = openssl_csr(tmp_path, "app", "-newkey", "rsa:2048", subj="/CN=app.example.test")
    out = tmp_path / "app.pem"
    enrolled = shell("backend", "enroll", "-name", "dc", "-csr", str(csr), "-product", "private_ssl_plus",
                     "-ca", digicert_fake.PRIVATE_CA_ID, "-organization", str(digicert_fake.VALIDATED_ORG),
                     "-out", str(out))  # fmt: skip
    assert enrolled.code == 0, enrolled.err
    leaf = x509.load_pem_x509_certificates(out.read_bytes())[0]
    certcentral.may_skip_approval = False  # the key's user may not skip the approval of a revoke
    revoked = shell("backend", "revoke", "-name", "dc", "-serial", format(leaf.serial_number, "x"))
    assert revoked.code == 0, revoked.err
    assert "approve" in revoked.out + revoked.err
    assert certcentral.revoked_serials() == set()
    assert [r.type for r in certcentral.pending_requests()] == ["revoke"]
