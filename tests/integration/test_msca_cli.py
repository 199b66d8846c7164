"""`ca-connector backend ...` with -type msca as an operator uses it, against the fake AD CS Web Enrollment
server over TLS with Basic auth: the reference document's sample command with the web options, the
Enrollment Agent certificate, issued, pending-then-approved and denied templates, an agent certificate
without the agent EKU, and a password and agent key that never appear in clear."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from tests.peers import adcs_web_fake
from tests.peers.adcs_web_fake import CA_NAME, FakeAdcs
from tests.support import Result, all_bytes, openssl_csr

from caconnector.connector.jobs import JobRunner
from caconnector.connector.store import ConnectorStore
from caconnector.protocol.messages import JobKind, JobMessage, JobOutcome
from caconnector.testing import make_csr_pem

Run = Callable[..., Result]
NAME = "MSCA1"


@pytest.fixture
def adcs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAdcs]:
    # requests lets these replace a session's trust; the backend must use -cacert, which this proves.
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(variable, raising=False)
    yield from adcs_web_fake.running(tmp_path / "adcs")


def _add(shell: Run, adcs: FakeAdcs, tmp_path: Path, *extra: str) -> Result:
    cacert = tmp_path / "adcs-ca.cer"
    cacert.write_bytes(adcs.ca_certificate.public_bytes(serialization.Encoding.DER))  # as Windows exports it
    password = tmp_path / "password.txt"
    password.write_text(adcs.password + "\n")
    return shell(
        "backend", "add", "-name", NAME, "-type", "msca", "-server", "127.0.0.1", "-ca", CA_NAME,
        "-transport", "web", "-auth", "basic", "-username", adcs.username, "-password", f"@{password}",
        "-endpoint", adcs.url, "-cacert", str(cacert), *extra,
    )  # fmt: skip


def _verify(tmp_path: Path, adcs: FakeAdcs, bundle: Path) -> subprocess.CompletedProcess[str]:
    root = tmp_path / "root.pem"
    root.write_text(adcs.ca_pem)
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(
        x509.load_pem_x509_certificates(bundle.read_bytes())[0].public_bytes(serialization.Encoding.PEM)
    )
    return subprocess.run(
        ["openssl", "verify", "-CAfile", str(root), str(leaf)], capture_output=True, text=True, check=False
    )


def _job(kind: JobKind, payload: dict[str, object], job_id: str) -> JobMessage:
    import datetime as dt  # noqa: PLC0415

    return JobMessage(
        id=job_id,
        kind=kind,
        backend=NAME,
        payload=payload,
        lease_expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2),
    )


def test_sample_command_agent_certificate_templates_and_no_secret_in_clear(
    adcs: FakeAdcs, shell: Run, tmp_path: Path, datadir: Path
) -> None:
    outputs = [_add(shell, adcs, tmp_path, "-requester", "CORP\\alice")]
    assert outputs[-1].code == 0, outputs[-1].err
    assert f"backend '{NAME}' (msca) added; Available" in outputs[-1].out

    outputs.append(shell("backend", "show", "-name", NAME, "-json"))
    shown = json.loads(outputs[-1].out)
    assert shown["enrollment_agent"]["present"] is False
    assert shown["cas"][0]["id"] == CA_NAME

    # Without an agent certificate nothing is submitted, and the message says what to run.
    csr = openssl_csr(
        tmp_path, "web", "-newkey", "rsa:2048", subj="/CN=web.example.test", san="DNS:web.example.test"
    )
    outputs.append(shell("backend", "enroll", "-name", NAME, "-csr", str(csr), "-template", "WebServer"))
    assert outputs[-1].code == 1
    assert f"backend msca enroll-agent-cert -name {NAME} -ca {CA_NAME}" in outputs[-1].err
    assert not adcs.requests

    outputs.append(shell("backend", "msca", "enroll-agent-cert", "-name", NAME, "-ca", CA_NAME, "-json"))
    assert outputs[-1].code == 0, outputs[-1].err
    agent = json.loads(outputs[-1].out)
    assert [r.template for r in adcs.requests.values()] == ["MachineEnrollmentAgent"]
    outputs.append(shell("backend", "show", "-name", NAME, "-json"))
    shown = json.loads(outputs[-1].out)
    assert shown["enrollment_agent"]["present"] is True
    assert shown["enrollment_agent"]["not_after"] == agent["not_after"]
    assert shown["settings"]["eakey"] == "********"

    out = tmp_path / "web.pem"
    outputs.append(
        shell(
            "backend", "enroll", "-name", NAME, "-csr", str(csr), "-template", "WebServer", "-out", str(out)
        )
    )
    assert outputs[-1].code == 0, outputs[-1].err
    verified = _verify(tmp_path, adcs, out)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    issued = adcs.requests[max(adcs.requests)]
    assert (issued.template, issued.requester) == ("WebServer", "CORP\\alice")

    outputs.append(shell("backend", "enroll", "-name", NAME, "-csr", str(csr), "-template", "Denied"))
    assert outputs[-1].code == 1
    assert adcs_web_fake.DENIED_MESSAGE in outputs[-1].err  # the CA's disposition message, verbatim

    # Web Enrollment cannot revoke; the message says what can.
    serial = format(x509.load_pem_x509_certificates(out.read_bytes())[0].serial_number, "x")
    outputs.append(shell("backend", "revoke", "-name", NAME, "-serial", serial))
    assert outputs[-1].code == 1
    assert "MS-CSRA" in outputs[-1].err and "Traceback" not in outputs[-1].err

    # The password and the agent's private key: in no output, log or file of the data directory.
    key_pem = ConnectorStore(datadir).read().backends[NAME].secrets["eakey"]
    key_body = "".join(key_pem.splitlines()[1:-1])
    stored = all_bytes(datadir)
    for secret in (adcs.password, key_body[40:100], key_body[-60:]):
        assert secret.encode() not in stored
        for result in outputs:
            assert secret not in result.out and secret not in result.err


def test_pending_template_issues_after_approval_with_one_request_at_the_ca(
    adcs: FakeAdcs, shell: Run, tmp_path: Path, datadir: Path
) -> None:
    assert _add(shell, adcs, tmp_path).code == 0
    assert shell("backend", "msca", "enroll-agent-cert", "-name", NAME, "-ca", CA_NAME).code == 0
    runner = JobRunner(ConnectorStore(datadir), "host.example.test")
    payload: dict[str, object] = {
        "csr_pem": make_csr_pem("app.example.test"),
        "request_id": "req-approval",
        "ca": CA_NAME,
        "template": adcs_web_fake.PENDING_TEMPLATE,
    }
    enroll = _job(JobKind.ENROLL, payload, "job-1")
    waiting = runner.run(enroll)
    assert waiting.outcome is JobOutcome.PENDING, waiting
    assert waiting.result is not None
    order_ref = str(waiting.result["order_ref"])
    # Redelivered before approval: the same request, still waiting, none submitted again.
    again = runner.run(enroll.model_copy(update={"attempt": 2}))
    assert again.outcome is JobOutcome.PENDING
    adcs.approve()
    collected = runner.run(
        _job(JobKind.COLLECT, {"order_ref": order_ref, "request_id": "req-approval"}, "job-2")
    )
    assert collected.outcome is JobOutcome.OK, collected.error
    assert [r.template for r in adcs.requests.values()].count(adcs_web_fake.PENDING_TEMPLATE) == 1
    assert adcs.requests[int(order_ref)].requester == adcs.username  # -requester defaults to -username


def test_agent_certificate_without_the_agent_eku_is_refused_by_the_ca_and_the_error_says_why(
    adcs: FakeAdcs, shell: Run, tmp_path: Path
) -> None:
    assert _add(shell, adcs, tmp_path).code == 0
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    certificate = adcs.certificate_for(key, agent=False)
    (tmp_path / "user.cer").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "user.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    updated = shell(
        "backend", "update", "-name", NAME,
        "-eacert", str(tmp_path / "user.cer"), "-eakey", str(tmp_path / "user.key"),
    )  # fmt: skip
    assert updated.code == 0, updated.err
    csr = openssl_csr(tmp_path, "web", "-newkey", "rsa:2048")
    result = shell("backend", "enroll", "-name", NAME, "-csr", str(csr), "-template", "WebServer")
    assert result.code == 1
    assert adcs_web_fake.NO_AGENT_EKU_MESSAGE in result.err  # the CA refused it...
    assert (
        "lacks the Certificate Request Agent EKU (1.3.6.1.4.1.311.20.2.1)" in result.err
    )  # ...and we say why
    assert not adcs.issued()


def test_cacert_is_used_even_when_the_environment_names_another_bundle(
    adcs: FakeAdcs, shell: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # requests would let REQUESTS_CA_BUNDLE replace the session's trust; the backend passes -cacert itself.
    other = tmp_path / "other-bundle.pem"
    other.write_text(FakeAdcs().ca_pem)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(other))
    assert _add(shell, adcs, tmp_path).code == 0
    tested = shell("backend", "test", "-name", NAME, "-json")
    assert tested.code == 0, tested.err
    assert json.loads(tested.out)["status"] == "Available"


def test_wrong_password_and_untrusted_server_name_the_option_to_fix(
    adcs: FakeAdcs, shell: Run, tmp_path: Path
) -> None:
    assert _add(shell, adcs, tmp_path).code == 0
    refused = shell("backend", "update", "-name", NAME, "-password", "wrong-password")
    assert refused.code == 1
    assert "-username and -password" in refused.err
    other = tmp_path / "other-ca.pem"
    other.write_text(FakeAdcs().ca_pem)
    untrusted = shell("backend", "update", "-name", NAME, "-cacert", str(other))
    assert untrusted.code == 1
    assert "-cacert" in untrusted.err
    assert "wrong-password" not in refused.err + refused.out


def test_a_redelivered_denied_request_is_asked_about_not_submitted_again(
    adcs: FakeAdcs, shell: Run, tmp_path: Path, datadir: Path
) -> None:
    assert _add(shell, adcs, tmp_path).code == 0
    assert shell("backend", "msca", "enroll-agent-cert", "-name", NAME, "-ca", CA_NAME).code == 0
    runner = JobRunner(ConnectorStore(datadir), "host.example.test")
    payload: dict[str, object] = {
        "csr_pem": make_csr_pem("app.example.test"),
        "request_id": "req-denied",
        "ca": CA_NAME,
        "template": adcs_web_fake.DENIED_TEMPLATE,
    }
    enroll = _job(JobKind.ENROLL, payload, "job-1")
    for attempt in (1, 2):
        result = runner.run(enroll.model_copy(update={"attempt": attempt}))
        assert result.outcome is JobOutcome.ERROR
        assert result.error is not None and adcs_web_fake.DENIED_MESSAGE in result.error.message
    assert [r.template for r in adcs.requests.values()].count(adcs_web_fake.DENIED_TEMPLATE) == 1
