"""`ca-connector backend ...` with -type gcpcas as an operator uses it, and the connector's job runner, both
against the fake CA Service over real HTTP: the reference document's sample command, a deletable key file,
a key that never appears in clear, and a redelivered job that issues once."""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from tests.peers.gcpcas_fake import SERVICE_ACCOUNT_KEY_ID, FakeCAS, service_account_info
from tests.support import Result, all_bytes, openssl_csr

from caconnector.connector import backend_admin
from caconnector.connector.jobs import JobRunner
from caconnector.connector.store import ConnectorStore
from caconnector.protocol.messages import JobKind, JobMessage, JobOutcome

Run = Callable[..., Result]

PROJECT = "private-ca-342871"
# The reference document's sample spells the location "us-east-1"; the fake serves any location.
SAMPLE_LOCATION = "us-east-1"
LOCATION = "us-east1"


def _key_file(directory: Path) -> tuple[Path, str]:
    """The service account key file as downloaded from Google Cloud, and a stretch of its private key."""
    info = service_account_info(PROJECT)
    path = directory / "service-account-key.json"
    path.write_text(json.dumps(info, indent=2))
    body = "".join(info["private_key"].splitlines()[1:-1])
    return path, body[100:160]


def _verify(tmp_path: Path, bundle: Path) -> subprocess.CompletedProcess[str]:
    certificates = x509.load_pem_x509_certificates(bundle.read_bytes())
    leaf, root = tmp_path / "leaf.pem", tmp_path / "root.pem"
    leaf.write_bytes(certificates[0].public_bytes(serialization.Encoding.PEM))
    root.write_bytes(certificates[-1].public_bytes(serialization.Encoding.PEM))
    return subprocess.run(
        ["openssl", "verify", "-CAfile", str(root), "-untrusted", str(bundle), str(leaf)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_reference_sample_command_key_file_deletable_and_never_in_clear(
    fake: FakeCAS, shell: Run, tmp_path: Path, datadir: Path
) -> None:
    fake.add_pool(PROJECT, SAMPLE_LOCATION, "corp", cas=("ca-1",))
    fake.add_pool(PROJECT, SAMPLE_LOCATION, "mesh", tier="DEVOPS")
    key_file, key_stretch = _key_file(tmp_path)
    outputs = [
        shell("backend", "add", "-name", "GoogleCA", "-type", "gcpcas", "-project", PROJECT,
              "-location", SAMPLE_LOCATION, "-key", str(key_file), "-endpoint", fake.url)
    ]  # fmt: skip
    assert outputs[-1].code == 0, outputs[-1].err
    assert "backend 'GoogleCA' (gcpcas) added" in outputs[-1].out
    key_file.unlink()  # the operator deletes the downloaded key, as the reference document allows

    outputs.append(shell("backend", "test", "-name", "GoogleCA", "-json"))
    assert outputs[-1].code == 0, outputs[-1].err
    tested = json.loads(outputs[-1].out)
    assert tested["status"] == "Available"
    assert {ca["id"] for ca in tested["cas"]} == {"corp/ca-1", "mesh/ca-1"}
    assert any("DevOps tier" in ca["name"] for ca in tested["cas"])

    csr = openssl_csr(tmp_path, "web", "-newkey", "rsa:2048", subj="/CN=web.example.test")
    out = tmp_path / "web.pem"
    outputs.append(shell("backend", "enroll", "-name", "GoogleCA", "-csr", str(csr), "-ca", "corp/ca-1",
                         "-days", "30", "-out", str(out)))  # fmt: skip
    assert outputs[-1].code == 0, outputs[-1].err
    verified = _verify(tmp_path, out)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert len(fake.stored(f"projects/{PROJECT}/locations/{SAMPLE_LOCATION}/caPools/corp")) == 1

    serial = format(x509.load_pem_x509_certificates(out.read_bytes())[0].serial_number, "x")
    for command in (
        ["show", "-name", "GoogleCA", "-json"],
        ["cas", "-name", "GoogleCA"],
        ["list"],
        ["revoke", "-name", "GoogleCA", "-serial", serial, "-reason", "superseded", "-ca", "corp"],
    ):
        outputs.append(shell("backend", *command))
        assert outputs[-1].code == 0, (command, outputs[-1].err)
    shown = json.loads(outputs[3].out)  # show -json
    assert shown["settings"]["key"] == "********"
    assert shown["settings"]["endpoint"] == fake.url
    [stored] = fake.stored(f"projects/{PROJECT}/locations/{SAMPLE_LOCATION}/caPools/corp")
    assert stored.revocation is not None
    assert stored.revocation[0] == "SUPERSEDED"

    refused = shell("backend", "revoke", "-name", "GoogleCA", "-serial", serial, "-ca", "mesh")
    assert refused.code == 1
    assert "not supported by this pool tier (DevOps pools keep no certificates)" in refused.err
    outputs.append(refused)

    assert fake.issued()  # each command's process got a token for the stored key at its token_uri
    assert fake.unauthenticated == []
    stored_bytes = all_bytes(datadir)
    assert key_stretch.encode() not in stored_bytes
    assert b"PRIVATE KEY" not in stored_bytes
    assert base64.b64decode(key_stretch[:56]) not in stored_bytes  # nor its DER bytes
    for result in outputs:
        assert key_stretch not in result.out + result.err
        assert "PRIVATE KEY" not in result.out + result.err


def test_a_key_deleted_in_iam_fails_backend_test_naming_key_and_nothing_secret(
    fake: FakeCAS, shell: Run, tmp_path: Path
) -> None:
    fake.add_pool(PROJECT, LOCATION, "corp", cas=("ca-1",))
    key_file, key_stretch = _key_file(tmp_path)
    added = shell("backend", "add", "-name", "GoogleCA", "-type", "gcpcas", "-project", PROJECT,
                  "-location", LOCATION, "-key", str(key_file), "-endpoint", fake.url)  # fmt: skip
    assert added.code == 0, added.err
    fake.revoke_key(SERVICE_ACCOUNT_KEY_ID)

    tested = shell("backend", "test", "-name", "GoogleCA")
    assert tested.code != 0
    assert "the token endpoint refused the service account key of -key" in tested.out + tested.err
    assert "invalid_grant: Invalid JWT Signature." in tested.out + tested.err
    refused = [g for g in fake.grants if g.access_token is None]
    assert refused
    for secret in (key_stretch, "PRIVATE KEY", *(g.assertion for g in refused)):
        assert secret not in tested.out + tested.err
    assert "Traceback" not in tested.err
    assert fake.unauthenticated == []  # no call went out without a token


def test_a_key_file_that_cannot_be_used_is_refused_at_add(cli: Run, tmp_path: Path) -> None:
    not_an_account = tmp_path / "user.json"
    not_an_account.write_text('{"type": "authorized_user", "client_secret": "s3cr3t-value"}')
    refused = cli("backend", "add", "-name", "g", "-type", "gcpcas", "-project", PROJECT,
                  "-location", LOCATION, "-key", str(not_an_account))  # fmt: skip
    assert refused.code == 2
    assert "-key: is not a service account key" in refused.err
    assert "s3cr3t-value" not in refused.err

    garbled = tmp_path / "garbled.json"
    broken = "MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDcorrupted"
    info = {
        **service_account_info(PROJECT),
        "private_key": f"-----BEGIN PRIVATE KEY-----\n{broken}\n-----END PRIVATE KEY-----\n",
    }
    garbled.write_text(json.dumps(info))
    unusable = cli("backend", "add", "-name", "g", "-type", "gcpcas", "-project", PROJECT,
                   "-location", LOCATION, "-key", str(garbled))  # fmt: skip
    assert unusable.code == 1
    assert "-key: the service account key cannot be used" in unusable.err
    assert broken not in unusable.err
    assert json.loads(cli("backend", "list", "-json").out) == []


# ---- the connector's job runner --------------------------------------------------------------------------


@pytest.fixture
def runner(fake: FakeCAS, tmp_path: Path) -> JobRunner:
    fake.add_pool(PROJECT, LOCATION, "corp", cas=("ca-1",))
    fake.add_pool(PROJECT, LOCATION, "mesh", tier="DEVOPS")
    store = ConnectorStore(tmp_path / "connector")
    values = {"project": PROJECT, "location": LOCATION, "key": json.dumps(service_account_info(PROJECT)),
              "endpoint": fake.url}  # fmt: skip
    backend_admin.add_backend(store, "gcp", "gcpcas", values)
    return JobRunner(store, "host.example.test")


def _job(job_id: str, kind: JobKind, payload: dict[str, Any]) -> JobMessage:
    return JobMessage(
        id=job_id,
        kind=kind,
        backend="gcp",
        payload=payload,
        lease_expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5),
    )


def test_a_redelivered_enroll_job_issues_one_certificate(
    fake: FakeCAS, runner: JobRunner, tmp_path: Path
) -> None:
    csr = openssl_csr(tmp_path, "job", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256").read_text()
    payload = {"csr_pem": csr, "request_id": "0b9d7c52-5d0c-4a77-9f3e-8a1d2c3b4e5f", "ca": "corp/ca-1"}
    first = runner.run(_job("job-1", JobKind.ENROLL, payload))
    # The manager's lease ran out and it delivered the job again; this runner has no journal of it.
    again = runner.run(_job("job-1", JobKind.ENROLL, {**payload}))
    assert first.outcome is again.outcome is JobOutcome.OK
    assert again.result == first.result
    assert first.result is not None
    assert fake.certificates_created == 1

    serial = format(
        x509.load_pem_x509_certificate(first.result["certificate_pem"].encode()).serial_number, "x"
    )
    scanned = runner.run(_job("job-2", JobKind.SCAN, {}))
    assert scanned.outcome is JobOutcome.OK
    assert scanned.result is not None
    assert [c["certificate_pem"] for c in scanned.result["certificates"]] == [first.result["certificate_pem"]]
    revoked = runner.run(
        _job("job-3", JobKind.REVOKE, {"serial": serial, "reason": "keyCompromise", "ca": "corp/ca-1"})
    )
    assert revoked.outcome is JobOutcome.OK, revoked.error
    assert fake.stored(f"projects/{PROJECT}/locations/{LOCATION}/caPools/corp")[0].revocation is not None


def test_throttling_becomes_a_retryable_error_with_its_delay(
    fake: FakeCAS, runner: JobRunner, tmp_path: Path
) -> None:
    csr = openssl_csr(tmp_path, "busy", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256").read_text()
    fake.fail_next("createCertificate", "RESOURCE_EXHAUSTED", retry_delay=12)
    result = runner.run(_job("job-9", JobKind.ENROLL, {"csr_pem": csr, "request_id": "r-9", "ca": "corp"}))
    assert result.outcome is JobOutcome.ERROR
    assert result.error is not None
    assert (result.error.code, result.error.retryable, result.error.retry_after) == ("transient", True, 12)
    assert fake.certificates_created == 0

    devops_scan = runner.run(_job("job-10", JobKind.SCAN, {}))
    assert devops_scan.outcome is JobOutcome.OK  # the Enterprise pool is scanned, the DevOps one skipped
    refused = runner.run(_job("job-11", JobKind.REVOKE, {"serial": "abcdef", "ca": "mesh"}))
    assert refused.error is not None
    assert refused.error.code == "not_supported"
    assert "not supported by this pool tier" in refused.error.message
