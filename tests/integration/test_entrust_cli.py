"""`ca-connector backend ...` with -type entrust as an operator uses it, against the fake ECS over real mutual
TLS: the reference document's sample command (plus -endpoint and -cacert), certificate and key files that
can be deleted afterwards, credentials that never appear in clear, and the pairs refused at add."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tests.peers.entrust_fake import APIKEY, APPROVED_ORG, STANDARD, USERNAME, FakeECS, entrust_peer
from tests.support import Result, all_bytes, openssl_csr

from caconnector.pki.serial import canonical_serial

Run = Callable[..., Result]


@pytest.fixture
def ecs(monkeypatch: pytest.MonkeyPatch) -> FakeECS:
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(variable, raising=False)
    peer = entrust_peer()
    peer.reset()
    return peer


def _files(ecs: FakeECS, directory: Path) -> tuple[Path, Path, Path]:
    """The user's certificate as Windows exports it (DER .cer), its key (DER PKCS#8), and the API's CA."""
    cert = x509.load_pem_x509_certificate(ecs.client_cert_pem.encode())
    key = serialization.load_pem_private_key(ecs.client_key_pem.encode(), password=None)
    cert_path, key_path = directory / "authfile.cer", directory / "myprivatekey.pkcs8"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    cacert = directory / "ecs-ca.pem"
    cacert.write_text(ecs.ca_pem)
    return cert_path, key_path, cacert


def _key_material(ecs: FakeECS) -> list[bytes]:
    """Stretches of the private key as text (PEM body) and as bytes (DER)."""
    key = serialization.load_pem_private_key(ecs.client_key_pem.encode(), password=None)
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    body = "".join(ecs.client_key_pem.strip().splitlines()[1:-1])
    return [body[10:60].encode(), der[-40:]]


def _verify(tmp_path: Path, bundle: Path) -> subprocess.CompletedProcess[str]:
    certificates = x509.load_pem_x509_certificates(bundle.read_bytes())
    leaf, root = tmp_path / "leaf.pem", tmp_path / "root.pem"
    leaf.write_bytes(certificates[0].public_bytes(serialization.Encoding.PEM))
    root.write_bytes(certificates[-1].public_bytes(serialization.Encoding.PEM))
    return subprocess.run(
        ["openssl", "verify", "-CAfile", str(root), "-untrusted", str(bundle), str(leaf)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_reference_sample_command_files_deletable_and_secrets_never_in_clear(
    ecs: FakeECS, shell: Run, tmp_path: Path, datadir: Path
) -> None:
    cert, key, cacert = _files(ecs, tmp_path)
    outputs = [
        # The reference document's sample, as written, plus the test endpoint and its CA.
        shell("backend", "add", "-name", "EntrustCA", "-type", "entrust", "-username", "SampleAdminUser",
              "-apikey", "49ca638f-ec73-40fa-a6f6-6a85e997a5a7", "-cert", str(cert), "-key", str(key),
              "-endpoint", ecs.url, "-cacert", str(cacert))
    ]  # fmt: skip
    assert outputs[-1].code == 0, outputs[-1].err
    assert "backend 'EntrustCA' (entrust) added" in outputs[-1].out
    for path in (cert, key, cacert):
        path.unlink()  # (Optional) Delete the cert and key files, as the reference document allows

    outputs.append(shell("backend", "test", "-name", "EntrustCA", "-json"))
    assert outputs[-1].code == 0, outputs[-1].err
    tested = json.loads(outputs[-1].out)
    assert tested["status"] == "Available"
    assert [ca["id"] for ca in tested["cas"]] == ["ecs"]

    csr = openssl_csr(tmp_path, "web", "-newkey", "rsa:2048", subj="/CN=web.example.test",
                      san="DNS:web.example.test")  # fmt: skip
    out = tmp_path / "web.pem"
    outputs.append(shell("backend", "enroll", "-name", "EntrustCA", "-csr", str(csr), "-product", STANDARD,
                         "-organization", APPROVED_ORG, "-days", "30", "-out", str(out)))  # fmt: skip
    assert outputs[-1].code == 0, outputs[-1].err
    verified = _verify(tmp_path, out)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert ecs.orders_placed == 1

    leaf = x509.load_pem_x509_certificates(out.read_bytes())[0]
    as_openssl = ":".join(f"{b:02x}" for b in leaf.serial_number.to_bytes(17, "big"))
    assert as_openssl.startswith("00:")  # the serial's DER carries a leading zero byte Entrust drops
    for command in (
        ["show", "-name", "EntrustCA", "-json"],
        ["cas", "-name", "EntrustCA"],
        ["list"],
        ["revoke", "-name", "EntrustCA", "-serial", as_openssl, "-reason", "keyCompromise"],
    ):
        outputs.append(shell("backend", *command))
        assert outputs[-1].code == 0, (command, outputs[-1].err)
    shown = json.loads(outputs[3].out)
    for option in ("username", "apikey", "cert", "key"):
        assert shown["settings"][option] == "********", option
    assert shown["settings"]["endpoint"] == ecs.url
    assert ecs.revoked_serials() == {leaf.serial_number}
    assert canonical_serial(as_openssl) == canonical_serial(leaf.serial_number)

    stored = all_bytes(datadir)
    for secret in (USERNAME.encode(), APIKEY.encode(), b"PRIVATE KEY", *_key_material(ecs)):
        assert secret not in stored, secret
        for result in outputs:
            assert secret.decode(errors="replace") not in result.out + result.err


def test_refused_at_add_naming_the_option(ecs: FakeECS, cli: Run, tmp_path: Path, datadir: Path) -> None:
    cert, _key, cacert = _files(ecs, tmp_path)
    common = ["-username", USERNAME, "-apikey", APIKEY, "-endpoint", ecs.url, "-cacert", str(cacert)]

    other = ec.generate_private_key(ec.SECP256R1())
    other_key = tmp_path / "other.key"
    other_key.write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    mismatched = cli("backend", "add", "-name", "e", "-type", "entrust", *common,
                     "-cert", str(cert), "-key", str(other_key))  # fmt: skip
    assert mismatched.code == 2
    assert "-key does not belong to the certificate given with -cert" in mismatched.err

    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, USERNAME)])
    now = dt.datetime.now(dt.UTC)
    expired = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(other.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=400))
        .not_valid_after(now - dt.timedelta(days=2))
        .sign(other, hashes.SHA256())
    )
    expired_cert = tmp_path / "expired.cer"
    expired_cert.write_bytes(expired.public_bytes(serialization.Encoding.PEM))
    refused = cli("backend", "add", "-name", "e", "-type", "entrust", *common,
                  "-cert", str(expired_cert), "-key", str(other_key))  # fmt: skip
    assert refused.code == 2
    assert "-cert: the certificate expired on" in refused.err

    garbage = tmp_path / "garbage.key"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5IGF0IGFsbA==\n-----END PRIVATE KEY-----\n")
    unreadable = cli("backend", "add", "-name", "e", "-type", "entrust", *common,
                     "-cert", str(cert), "-key", str(garbage))  # fmt: skip
    assert unreadable.code == 2
    assert "-key: private key is not an unencrypted PEM or DER key" in unreadable.err
    for result in (mismatched, refused, unreadable):
        assert APIKEY not in result.out + result.err
        assert "bm90IGEga2V5" not in result.out + result.err
        assert "Traceback" not in result.err
    listed = cli("backend", "list", "-json")
    assert json.loads(listed.out) == []
    assert ecs.orders_placed == 0


def test_wrong_api_key_fails_backend_add_naming_the_options(ecs: FakeECS, cli: Run, tmp_path: Path) -> None:
    cert, key, cacert = _files(ecs, tmp_path)
    wrong = "00000000-1111-2222-3333-444444444444"
    added = cli("backend", "add", "-name", "e", "-type", "entrust", "-username", USERNAME,
                "-apikey", wrong, "-cert", str(cert), "-key", str(key), "-endpoint", ecs.url,
                "-cacert", str(cacert))  # fmt: skip
    assert added.code == 1
    assert "-username and -apikey" in added.err
    assert wrong not in added.out + added.err
