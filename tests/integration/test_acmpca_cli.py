"""The acmpca backend through the connector's own entry points, against moto over real HTTP: the
`ca-connector backend ...` commands as a user types them, and the JobRunner the agent runs jobs with."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from tests.peers.moto_server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, MotoCA, MotoPeer
from tests.support import Result, all_bytes, openssl_csr

from caconnector.backends.acmpca.backend import aws_serial
from caconnector.connector import backend_admin
from caconnector.connector.jobs import JobRunner
from caconnector.connector.store import ConnectorStore
from caconnector.protocol.messages import EnrollPayload, JobKind, JobMessage, JobOutcome, RevokePayload

Run = Callable[..., Result]

# The reference document's sample command for an AWS Private CA backend, word for word.
SAMPLE = [
    "-name", "test-acmpca", "-type", "acmpca", "-accesskeyid", ACCESS_KEY_ID,
    "-secretaccesskey", SECRET_ACCESS_KEY, "-region", "us-east-1",
]  # fmt: skip


def test_reference_sample_with_endpoint_is_stored_encrypted_and_tests_ok(
    shell: Run, datadir: Path, moto: MotoPeer, root: MotoCA
) -> None:
    added = shell("backend", "add", *SAMPLE, "-endpoint", moto.url)
    assert added.code == 0, added.err
    assert "backend 'test-acmpca' (acmpca) added" in added.out

    tested = shell("backend", "test", "-name", "test-acmpca", "-json")
    assert tested.code == 0, tested.err
    view = json.loads(tested.out)
    assert view["status"] == "Available"
    assert [(ca["id"], ca["name"], ca["state"]) for ca in view["cas"]] == [
        (root.arn, "Moto Root CA", "active")
    ]

    shown = shell("backend", "show", "-name", "test-acmpca", "-json")
    assert shown.code == 0, shown.err
    settings = json.loads(shown.out)["settings"]
    assert settings["endpoint"] == moto.url
    assert settings["accesskeyid"] == ACCESS_KEY_ID
    assert settings["secretaccesskey"] != SECRET_ACCESS_KEY

    cas = shell("backend", "cas", "-name", "test-acmpca")
    assert cas.code == 0, cas.err
    assert root.arn in cas.out

    for result in (added, tested, shown, cas):
        assert SECRET_ACCESS_KEY not in result.out + result.err
    assert SECRET_ACCESS_KEY.encode() not in all_bytes(datadir)


def test_reference_sample_is_accepted_without_network(cli: Run, datadir: Path) -> None:
    # `backend add -nocheck` creates nothing at AWS and contacts nothing: `backend test` tests the keys.
    added = cli("backend", "add", *SAMPLE, "-nocheck")
    assert added.code == 0, added.err
    assert SECRET_ACCESS_KEY not in added.out + added.err
    assert SECRET_ACCESS_KEY.encode() not in all_bytes(datadir)


def test_cli_enroll_and_revoke(cli: Run, moto: MotoPeer, root: MotoCA, tmp_path: Path, datadir: Path) -> None:
    assert cli("backend", "add", *SAMPLE, "-endpoint", moto.url).code == 0
    csr = openssl_csr(tmp_path, "cli", "-newkey", "rsa:2048")
    out = tmp_path / "cli.pem"
    enrolled = cli("backend", "enroll", "-name", "test-acmpca", "-csr", str(csr), "-out", str(out), "-json")
    assert enrolled.code == 0, enrolled.err
    leaf, *chain = x509.load_pem_x509_certificates(out.read_bytes())
    assert chain == [root.certificate]
    assert len(moto.issued_arns(root.arn)) == 1

    serial = json.loads(enrolled.out)["serial"]
    revoked = cli("backend", "revoke", "-name", "test-acmpca", "-serial", serial, "-reason", "superseded")
    assert revoked.code == 0, revoked.err
    assert moto.revocations(root.arn) == {aws_serial(leaf.serial_number): "SUPERSEDED"}
    assert SECRET_ACCESS_KEY.encode() not in all_bytes(datadir)


def _job(kind: JobKind, payload: dict[str, object], job_id: str = "job-1", attempt: int = 1) -> JobMessage:
    return JobMessage(
        id=job_id,
        kind=kind,
        backend="corp-aws",
        payload=payload,
        attempt=attempt,
        lease_expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2),
    )


def test_redelivered_enroll_job_issues_one_certificate(moto: MotoPeer, root: MotoCA, tmp_path: Path) -> None:
    store = ConnectorStore(tmp_path / "connector")
    backend_admin.add_backend(
        store,
        "corp-aws",
        "acmpca",
        {
            "accesskeyid": ACCESS_KEY_ID,
            "secretaccesskey": SECRET_ACCESS_KEY,
            "region": "us-east-1",
            "endpoint": moto.url,
        },
    )
    runner = JobRunner(store, "host-1")
    csr = openssl_csr(tmp_path, "job", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384").read_text()
    payload = EnrollPayload(csr_pem=csr, request_id="req-redelivered", ca=root.arn, validity_days=30)
    job = _job(JobKind.ENROLL, payload.model_dump(mode="json"))

    first = runner.run(job)
    # The result was lost on the way to the manager: after the lease, the same job comes again.
    again = runner.run(job.model_copy(update={"attempt": 2}))
    assert first.outcome is JobOutcome.OK, first.error
    assert again.outcome is JobOutcome.OK, again.error
    assert again.result == first.result
    assert first.result is not None
    assert moto.issued_arns(root.arn) == [first.result["order_ref"]]

    leaf = x509.load_pem_x509_certificate(first.result["certificate_pem"].encode())
    revoke = RevokePayload(serial=format(leaf.serial_number, "x"), reason="keyCompromise")
    revoked = runner.run(_job(JobKind.REVOKE, revoke.model_dump(mode="json"), job_id="job-2"))
    assert revoked.outcome is JobOutcome.OK, revoked.error
    assert moto.revocations(root.arn) == {aws_serial(leaf.serial_number): "KEY_COMPROMISE"}

    report = runner.backend_report("corp-aws")
    assert report.status == "Available"
    assert [ca.id for ca in report.cas] == [root.arn]
    scan = runner.run(_job(JobKind.SCAN, {}, job_id="job-3"))
    assert scan.outcome is JobOutcome.ERROR
    assert scan.error is not None
    assert (scan.error.code, scan.error.retryable) == ("not_supported", False)
    assert "-auditbucket" in scan.error.message
