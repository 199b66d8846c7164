"""`ca-connector backend ...` as an operator uses it: the local CA end to end, the reference document's
sample commands, usage errors, bad CSRs, and secrets that never leak."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from tests.support import EXECUTABLE, Result, all_bytes, openssl_csr, tree_digest

from caconnector.backends.registry import known_types

Run = Callable[..., Result]


def _split_pem(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def _openssl_verify(tmp_path: Path, bundle: Path) -> subprocess.CompletedProcess[str]:
    """Verify the first certificate of `bundle` with the last one as trust anchor, the rest untrusted."""
    certs = _split_pem(bundle)
    leaf, root = tmp_path / "leaf.pem", tmp_path / "root.pem"
    leaf.write_bytes(certs[0].public_bytes(serialization.Encoding.PEM))
    root.write_bytes(certs[-1].public_bytes(serialization.Encoding.PEM))
    return subprocess.run(
        ["openssl", "verify", "-CAfile", str(root), "-untrusted", str(bundle), str(leaf)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_local_backend_issues_a_certificate_openssl_verifies(shell: Run, tmp_path: Path) -> None:
    added = shell("backend", "add", "-name", "LocalCA", "-type", "local")
    assert added.code == 0, added.err
    csr = openssl_csr(tmp_path, "req", "-newkey", "rsa:2048")
    out = tmp_path / "cert.pem"
    issued = shell("backend", "enroll", "-name", "LocalCA", "-csr", str(csr), "-out", str(out))
    assert issued.code == 0, issued.err
    certs = _split_pem(out)
    assert len(certs) == 2  # the certificate, then the local CA (its root)
    assert certs[0].subject.rfc4514_string() == "CN=app.example.test"
    assert certs[-1].subject == certs[-1].issuer
    verified = _openssl_verify(tmp_path, out)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_double_dash_spelling_and_json(cli: Run, tmp_path: Path) -> None:
    assert cli("backend", "add", "--name", "ca2", "--type", "local", "--keytype", "ed25519").code == 0
    listed = cli("backend", "list", "-json")
    assert json.loads(listed.out) == [{"name": "ca2", "type": "local"}]
    csr = openssl_csr(tmp_path, "ec", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384")
    result = cli("backend", "enroll", "--name", "ca2", "--csr", str(csr), "--template", "client", "--json")
    assert result.code == 0, result.err
    document = json.loads(result.out)
    assert document["status"] == "Issued"
    cert = x509.load_pem_x509_certificate(document["certificate"].encode())
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
    assert format(cert.serial_number, "x") == document["serial"]


def _entrust_files(directory: Path) -> tuple[Path, Path]:
    """A stand-in for the user's Entrust certificate (DER, as Windows exports .cer) and its key."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "SampleAdminUser")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "authfile.cer", directory / "myprivatekey.pkcs8"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def _service_account(tmp_path: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    path = tmp_path / "service-account-key.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "private-ca-342871",
                "private_key_id": "abc123",
                "private_key": pem,
                "client_email": "connector@private-ca-342871.iam.gserviceaccount.com",
                "token_uri": "https://oauth2.googleapis.com/token",
            }
        )
    )
    return path


SECRETS = ("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "49ca638f-ec73-40fa-a6f6-6a85e997a5a7")


def test_reference_sample_commands_are_stored_or_said_not_available(
    shell: Run, tmp_path: Path, datadir: Path
) -> None:
    cert, key = _entrust_files(tmp_path)
    samples = [
        [
            "-name",
            "test-acmpca",
            "-type",
            "acmpca",
            "-accesskeyid",
            "AKIAIOSFODNN7EXAMPLE",
            "-secretaccesskey",
            SECRETS[0],
            "-region",
            "us-east-1",
        ],
        ["-name", "DigiCertCA", "-type", "digicert", "-apikey", SECRETS[1]],
        [
            "-name",
            "EntrustCA",
            "-type",
            "entrust",
            "-username",
            "SampleAdminUser",
            "-apikey",
            SECRETS[1],
            "-cert",
            str(cert),
            "-key",
            str(key),
        ],
        [
            "-name",
            "GoogleCA",
            "-type",
            "gcpcas",
            "-project",
            "private-ca-342871",
            "-location",
            "us-east-1",
            "-key",
            str(_service_account(tmp_path)),
        ],
        ["-name", "MSCA1", "-type", "msca", "-server", "SectigoTestCA", "-ca", "local-SectigoTestCA-CA"],
    ]
    available = {name for name, info in known_types().items() if info.entry_point is not None}
    stored = []
    for sample in samples:
        # -nocheck: the samples' credentials are examples, and this host may not reach the real CAs.
        result = shell("backend", "add", *sample, "-nocheck")
        name, backend_type = sample[1], sample[3]
        if backend_type in available:
            # `backend add -nocheck` validates and stores without reaching the CA.
            assert result.code == 0, (sample, result.err)
            stored.append({"name": name, "type": backend_type})
        else:
            assert result.code == 1, (sample, result.err)
            assert f"backend type '{backend_type}' is not available in this version" in result.err
            assert result.err.count("\n") == 1
        for secret in SECRETS:
            assert secret not in result.out + result.err
    listed = json.loads(shell("backend", "list", "-json").out)
    assert sorted(listed, key=lambda b: b["name"]) == sorted(stored, key=lambda b: b["name"])
    if not stored:
        assert tree_digest(datadir) == {}  # nothing half-configured was stored
    for secret in SECRETS:
        assert secret.encode() not in all_bytes(datadir)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            [
                "-name",
                "a",
                "-type",
                "acmpca",
                "-accesskeyid",
                "AKIAIOSFODNN7EXAMPLE",
                "-secretaccesskey",
                SECRETS[0],
            ],
            "-region is required for -type acmpca (the region where the private CA lives",
        ),
        (
            [
                "-name",
                "a",
                "-type",
                "acmpca",
                "-accesskeyid",
                "AKIAIOSFODNN7EXAMPLE",
                "-secretaccesskey",
                SECRETS[0],
                "-region",
                "Narnia",
            ],
            "-region: must be an AWS region name such as us-east-1",
        ),
        (
            ["-name", "a", "-type", "digicert", "-apikey", SECRETS[1], "-region", "asia"],
            "-region: Input should be 'us' or 'eu'",
        ),
        (
            [
                "-name",
                "a",
                "-type",
                "digicert",
                "-apikey",
                SECRETS[1],
                "-accesskeyid",
                "AKIAIOSFODNN7EXAMPLE",
            ],
            "-accesskeyid is not an option of -type digicert",
        ),
        (
            ["-name", "a", "-type", "digicert", "-apikey", SECRETS[1], "-endpoint", "http://ca.example.com"],
            "-endpoint: must use https://",
        ),
        (["-name", "a", "-type", "local", "-frobnicate", "1"], "unrecognized arguments: -frobnicate"),
        (
            ["-name", "a", "-type", "nosuch"],
            "-type: unknown backend type 'nosuch'; use one of: local, acmpca",
        ),
        (["-type", "local"], "the following arguments are required: -name/--name"),
        (["-name", "a"], "the following arguments are required: -type/--type"),
        (["-name", "a", "-type", "local", "-keytype", "rsa-1024"], "-keytype: Input should be 'ec-p256'"),
        (["-name", "a", "-type", "local", "-days", "soon"], "-days: Input should be a valid integer"),
        (
            ["-name", "a", "-type", "local", "-days", "0"],
            "-days: must be a number of days between 1 and 36500",
        ),
        (
            ["-name", "a", "-type", "local", "-cakey", "/nonexistent/ca.key"],
            "-cakey: cannot read /nonexistent/ca.key",
        ),
        (
            ["-name", "a", "-type", "msca", "-server", "s", "-ca", "c", "-auth", "ntlm"],
            "-auth ntlm needs -username and -password",
        ),
        (
            [
                "-name",
                "a",
                "-type",
                "gcpcas",
                "-project",
                "p",
                "-location",
                "us-east1",
                "-key",
                "/etc/hostname",
            ],
            "-project: must be a Google Cloud project ID",
        ),
        (["-name", "a", "-type", "local", "-na", "x"], "unrecognized arguments: -na"),
        (["-name", "a", "-type", "local", "-name"], "argument -name/--name: expected one argument"),
    ],
)
def test_usage_errors_exit_2_and_name_the_option(
    cli: Run, datadir: Path, args: list[str], expected: str
) -> None:
    result = cli("backend", "add", *args)
    assert result.code == 2, result
    assert expected in result.err
    assert result.out == ""
    for secret in SECRETS:
        assert secret not in result.err
    assert tree_digest(datadir) == {}


def test_gcpcas_key_file_that_is_not_a_service_account(cli: Run, tmp_path: Path) -> None:
    bogus = tmp_path / "key.json"
    bogus.write_text('{"type": "authorized_user", "client_secret": "s3cr3t-value"}')
    result = cli(
        "backend",
        "add",
        "-name",
        "g",
        "-type",
        "gcpcas",
        "-project",
        "private-ca-342871",
        "-location",
        "us-east1",
        "-key",
        str(bogus),
    )
    assert result.code == 2
    assert "-key: is not a service account key" in result.err
    assert "s3cr3t-value" not in result.err


def test_entrust_key_must_match_certificate(cli: Run, tmp_path: Path) -> None:
    cert, _ = _entrust_files(tmp_path)
    _, other_key = _entrust_files(tmp_path / "other")
    result = cli(
        "backend",
        "add",
        "-name",
        "e",
        "-type",
        "entrust",
        "-username",
        "u",
        "-apikey",
        SECRETS[1],
        "-cert",
        str(cert),
        "-key",
        str(other_key),
    )
    assert result.code == 2
    assert "-key does not belong to the certificate given with -cert" in result.err


def _make_ca(tmp_path: Path) -> tuple[Path, Path, bytes]:
    """An existing CA an operator imports with -cacert/-cakey, made with openssl."""
    key, cert = tmp_path / "import-ca.key", tmp_path / "import-ca.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-new",
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "365",
            "-subj",
            "/CN=Imported CA/O=Corp",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        check=True,
        capture_output=True,
    )
    body = b"".join(key.read_bytes().splitlines()[1:-1])
    return cert, key, body


def test_secrets_are_encrypted_masked_and_originals_deletable(
    cli: Run, shell: Run, tmp_path: Path, datadir: Path
) -> None:
    cacert, cakey, key_body = _make_ca(tmp_path)
    added = cli(
        "backend", "add", "-name", "corp", "-type", "local", "-cacert", str(cacert), "-cakey", str(cakey)
    )
    assert added.code == 0, added.err
    cakey.unlink()  # the operator deletes the original key file, as the reference document allows
    cacert.unlink()

    csr = openssl_csr(tmp_path, "svc", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256")
    out = tmp_path / "svc.pem"
    outputs = [added]
    outputs.append(cli("backend", "enroll", "-name", "corp", "-csr", str(csr), "-out", str(out)))
    assert outputs[-1].code == 0, outputs[-1].err
    assert _split_pem(out)[-1].subject.rfc4514_string() == "O=Corp,CN=Imported CA"
    for command in (["show"], ["show", "-json"], ["test"], ["cas"], ["list"]):
        outputs.append(cli("backend", *command, *(["-name", "corp"] if command[0] != "list" else [])))
        assert outputs[-1].code == 0, outputs[-1].err
    show = json.loads(cli("backend", "show", "-name", "corp", "-json").out)
    assert show["settings"]["cakey"] == "********"
    assert show["status"] == "Available"
    assert show["cas"][0]["subject"] == "O=Corp,CN=Imported CA"

    stored = all_bytes(datadir)
    assert key_body[:40] not in stored
    assert b"PRIVATE KEY" not in stored
    for result in outputs:
        assert key_body[:40].decode() not in result.out + result.err
        assert "PRIVATE KEY" not in result.out + result.err


def test_generated_local_ca_key_is_not_stored_in_clear(cli: Run, datadir: Path) -> None:
    assert cli("backend", "add", "-name", "gen", "-type", "local", "-keytype", "rsa-2048").code == 0
    assert b"PRIVATE KEY" not in all_bytes(datadir)
    assert (datadir / "secret.key").stat().st_mode & 0o077 == 0


def _bad_csrs(tmp_path: Path) -> dict[str, tuple[bytes, str]]:
    good = openssl_csr(tmp_path, "good", "-newkey", "rsa:2048").read_bytes()
    der = x509.load_pem_x509_csr(good).public_bytes(serialization.Encoding.DER)
    tampered = bytearray(der)
    index = tampered.find(b"app.example.test")
    tampered[index] ^= 0x01  # alter the signed subject: the signature no longer verifies
    weak = openssl_csr(tmp_path, "weak", "-newkey", "rsa:1024").read_bytes()
    return {
        "garbage": (b"this is not a certificate request\n", "not a PEM or DER"),
        "truncated": (good[: len(good) // 2], "truncated"),
        "wrongly-signed": (bytes(tampered), "signature does not verify"),
        "rsa-1024": (weak, "1024"),
        "oversized": (good + b"\n" + b"A" * 70_000, "over the 65536-byte limit"),
    }


def test_bad_csrs_fail_in_one_line_and_leave_nothing(cli: Run, tmp_path: Path, datadir: Path) -> None:
    assert cli("backend", "add", "-name", "LocalCA", "-type", "local").code == 0
    before = tree_digest(datadir)
    for label, (content, expected) in _bad_csrs(tmp_path).items():
        path = tmp_path / f"{label}.csr"
        path.write_bytes(content)
        out = tmp_path / f"{label}.pem"
        result = cli("backend", "enroll", "-name", "LocalCA", "-csr", str(path), "-out", str(out))
        assert result.code == 1, (label, result)
        assert expected in result.err, (label, result.err)
        assert result.err.count("\n") == 1, (label, result.err)
        assert not out.exists(), label
    assert tree_digest(datadir) == before
    assert json.loads(cli("backend", "cas", "-name", "LocalCA", "-json").out)[0]["state"] == "active"


def test_revoke_and_crl(cli: Run, tmp_path: Path) -> None:
    assert cli("backend", "add", "-name", "LocalCA", "-type", "local").code == 0
    csr = openssl_csr(tmp_path, "r", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256")
    issued = json.loads(cli("backend", "enroll", "-name", "LocalCA", "-csr", str(csr), "-json").out)
    colon_serial = ":".join(f"{b:02X}" for b in bytes.fromhex(issued["serial"].rjust(40, "0")))
    revoked = cli(
        "backend", "revoke", "-name", "LocalCA", "-serial", colon_serial, "-reason", "keyCompromise"
    )
    assert revoked.code == 0, revoked.err
    crl_path = tmp_path / "local.crl"
    assert cli("backend", "crl", "-name", "LocalCA", "-out", str(crl_path)).code == 0
    crl = x509.load_der_x509_crl(crl_path.read_bytes())
    entry = crl.get_revoked_certificate_by_serial_number(int(issued["serial"], 16))
    assert entry is not None
    assert (
        entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        == x509.ReasonFlags.key_compromise
    )
    text = subprocess.run(
        ["openssl", "crl", "-inform", "DER", "-in", str(crl_path), "-noout", "-text"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Key Compromise" in text

    bad_reason = cli("backend", "revoke", "-name", "LocalCA", "-serial", issued["serial"], "-reason", "bored")
    assert bad_reason.code == 2
    assert "unknown revocation reason 'bored'" in bad_reason.err
    bad_serial = cli("backend", "revoke", "-name", "LocalCA", "-serial", "xyz")
    assert bad_serial.code == 2
    unknown = cli("backend", "revoke", "-name", "LocalCA", "-serial", "abcdef")
    assert unknown.code == 1
    assert "abcdef" in unknown.err


def test_update_remove_and_unknown_backend(cli: Run, datadir: Path) -> None:
    assert cli("backend", "add", "-name", "LocalCA", "-type", "local").code == 0
    again = cli("backend", "add", "-name", "LocalCA", "-type", "local")
    assert again.code == 1
    assert "already exists" in again.err
    fixed = cli("backend", "update", "-name", "LocalCA", "-keytype", "rsa-4096")
    assert fixed.code == 2
    assert "-keytype cannot be changed after backend add" in fixed.err
    state = datadir / "backends" / "LocalCA"
    assert cli("backend", "cas", "-name", "LocalCA").code == 0
    assert state.exists()
    assert cli("backend", "remove", "-name", "LocalCA").code == 0
    assert not state.exists()
    missing = cli("backend", "show", "-name", "LocalCA")
    assert missing.code == 1
    assert "no backend named 'LocalCA'" in missing.err
    assert "backend add" in missing.err


def test_msca_enroll_agent_cert_says_not_available(cli: Run) -> None:
    result = cli("backend", "msca", "enroll-agent-cert", "-name", "MSCA1", "-ca", "local-SectigoTestCA-CA")
    assert result.code == 1
    assert "MSCA1" in result.err


def test_help_and_version(shell: Run) -> None:
    helped = shell("help", "backend", "add")
    assert helped.code == 0
    for needle in ("-type acmpca", "-secretaccesskey", "-type gcpcas", "-cakey"):
        assert needle in helped.out
    assert shell("backend", "add", "-h").out == helped.out
    assert "enroll-agent-cert" in shell("help", "backend", "msca").out
    version = shell("version", "-json")
    assert json.loads(version.out)["backend_types"]["local"] is True
    assert shell("help", "nosuch").code == 2


def test_concurrent_adds_all_survive(shell: Run, datadir: Path) -> None:
    env = {**os.environ, "CA_CONNECTOR_HOME": str(datadir)}
    processes = [
        subprocess.Popen(
            [EXECUTABLE, "backend", "add", "-name", f"ca{i}", "-type", "local"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(6)
    ]
    for process in processes:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    names = {b["name"] for b in json.loads(shell("backend", "list", "-json").out)}
    assert names == {f"ca{i}" for i in range(6)}
