"""The acmpca backend against moto's server over real HTTP: the real boto3 client, the real wire.

Each test starts from an empty moto account with one ACTIVE root CA. Assertions read results, moto's
stored state (what the CA issued and revoked) and our own records, not which methods were called; the
one call count (IssueCertificate) is observed on the wire through botocore's event hooks.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from tests.peers.moto_server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, MotoCA, MotoPeer
from tests.support import openssl_csr

from caconnector.backends.acmpca.backend import TEMPLATES, AcmpcaBackend, aws_serial
from caconnector.backends.acmpca.client import connect
from caconnector.backends.acmpca.store import AcmpcaStore
from caconnector.backends.base import BackendContext, EnrollRequest, Issued, RevokeRequest
from caconnector.backends.configs import AcmpcaConfig
from caconnector.backends.errors import NotSupported, Rejected, Transient
from caconnector.backends.registry import load_type
from caconnector.pki.csr import load_csr
from caconnector.pki.revocation import RevocationReason
from caconnector.pki.serial import canonical_serial


def _config(endpoint: str, **extra: Any) -> AcmpcaConfig:
    return AcmpcaConfig.model_validate(
        {
            "accesskeyid": ACCESS_KEY_ID,
            "secretaccesskey": SECRET_ACCESS_KEY,
            "region": "us-east-1",
            "endpoint": endpoint,
            **extra,
        }
    )


@pytest.fixture
def context(tmp_path: Path) -> BackendContext:
    return BackendContext(name="corp-aws", state_dir=tmp_path / "state")


@pytest.fixture
def backend(moto: MotoPeer, root: MotoCA, context: BackendContext) -> AcmpcaBackend:
    # Through the entry point, as the connector opens it.
    opened = load_type("acmpca").open(_config(moto.url), context)
    assert isinstance(opened, AcmpcaBackend)
    return opened


@pytest.fixture
def csr(tmp_path: Path) -> x509.CertificateSigningRequest:
    path = openssl_csr(tmp_path, "app", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256")
    return load_csr(path.read_bytes())


def _verify(tmp_path: Path, issued: Issued, root: x509.Certificate) -> subprocess.CompletedProcess[str]:
    """openssl verify of the leaf with the chain as untrusted, trusting moto's CA certificate only."""
    pem = serialization.Encoding.PEM
    leaf, chain, anchor = tmp_path / "leaf.pem", tmp_path / "chain.pem", tmp_path / "root.pem"
    leaf.write_bytes(issued.certificate.public_bytes(pem))
    chain.write_bytes(b"".join(c.public_bytes(pem) for c in issued.chain))
    anchor.write_bytes(root.public_bytes(pem))
    return subprocess.run(
        ["openssl", "verify", "-CAfile", str(anchor), "-untrusted", str(chain), str(leaf)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_check_lists_moto_cas(backend: AcmpcaBackend, moto: MotoPeer, root: MotoCA) -> None:
    pending = moto.pending_ca("Waiting CA")
    result = backend.check()
    by_id = {ca.id: ca for ca in result.cas}
    assert set(by_id) == {root.arn, pending}
    active = by_id[root.arn]
    assert active.name == "Moto Root CA"
    assert active.subject == "CN=Moto Root CA,O=Test Org"
    assert active.key_type == "rsa-2048"
    assert active.serial == canonical_serial(root.certificate.serial_number)
    assert active.state == "active"
    assert active.certificate == root.certificate
    assert active.not_after == root.certificate.not_valid_after_utc
    waiting = by_id[pending]
    assert (waiting.name, waiting.state, waiting.serial, waiting.certificate) == (
        "Waiting CA",
        "pending_certificate",
        "",
        None,
    )
    assert waiting.subject == "CN=Waiting CA,O=Test Org"
    assert result.templates == TEMPLATES


def test_enroll_issues_a_certificate_openssl_verifies(
    backend: AcmpcaBackend, root: MotoCA, csr: x509.CertificateSigningRequest, tmp_path: Path, moto: MotoPeer
) -> None:
    result = backend.enroll(EnrollRequest(csr=csr, request_id="req-1", validity_days=30))
    assert isinstance(result, Issued)
    assert result.order_ref is not None
    assert result.order_ref.startswith(f"{root.arn}/certificate/")
    assert result.certificate.public_key() == csr.public_key()
    assert result.certificate.issuer == root.certificate.subject
    assert result.chain == (root.certificate,)
    verified = _verify(tmp_path, result, root.certificate)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert moto.issued_arns(root.arn) == [result.order_ref]


def test_named_ca_and_short_template(
    backend: AcmpcaBackend, root: MotoCA, csr: x509.CertificateSigningRequest
) -> None:
    result = backend.enroll(
        EnrollRequest(csr=csr, request_id="req-t", ca=root.arn, template="EndEntityCertificate/V1")
    )
    assert isinstance(result, Issued)
    # moto applies this template: an end-entity certificate with serverAuth and clientAuth.
    usage = result.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in usage


def test_same_request_id_issues_once(
    moto: MotoPeer, root: MotoCA, context: BackendContext, csr: x509.CertificateSigningRequest
) -> None:
    calls: list[str] = []

    def opened() -> AcmpcaBackend:
        # Each open is a fresh client and store, as each job of the connector gets.
        client = connect(_config(moto.url)).acmpca
        client.meta.events.register(  # type: ignore[attr-defined]
            "before-call.acm-pca.IssueCertificate", lambda **_: calls.append("IssueCertificate")
        )
        return AcmpcaBackend(client=client, name=context.name, store=AcmpcaStore(context.state_dir, "x"))

    first = opened().enroll(EnrollRequest(csr=csr, request_id="req-2"))
    again = opened().enroll(EnrollRequest(csr=csr, request_id="req-2"))
    assert isinstance(first, Issued)
    assert isinstance(again, Issued)
    assert again.certificate == first.certificate
    assert calls == ["IssueCertificate"]
    assert moto.issued_arns(root.arn) == [first.order_ref]
    assert AcmpcaStore(context.state_dir, "x").certificate_arn("req-2") == first.order_ref

    other = opened().enroll(EnrollRequest(csr=csr, request_id="req-3"))
    assert isinstance(other, Issued)
    assert other.certificate.serial_number != first.certificate.serial_number
    assert len(moto.issued_arns(root.arn)) == 2


def test_collect_by_order_ref(
    backend: AcmpcaBackend, csr: x509.CertificateSigningRequest, root: MotoCA
) -> None:
    issued = backend.enroll(EnrollRequest(csr=csr, request_id="req-c"))
    assert isinstance(issued, Issued)
    assert issued.order_ref is not None
    assert backend.collect(issued.order_ref) == issued
    # (An unknown certificate ARN makes moto fail with a 500 where AWS says ResourceNotFoundException;
    # the unit tests cover that answer.)
    with pytest.raises(Rejected, match="not an AWS Private CA certificate ARN"):
        backend.collect(root.arn)


def test_revoke_sends_the_serial_aws_documents(
    backend: AcmpcaBackend, root: MotoCA, csr: x509.CertificateSigningRequest, moto: MotoPeer
) -> None:
    issued = backend.enroll(EnrollRequest(csr=csr, request_id="req-r"))
    assert isinstance(issued, Issued)
    serial = canonical_serial(issued.certificate.serial_number)
    backend.revoke(RevokeRequest(serial=serial, reason=RevocationReason.KEY_COMPROMISE))
    expected = aws_serial(issued.certificate.serial_number)
    assert ":" in expected
    assert moto.revocations(root.arn) == {expected: "KEY_COMPROMISE"}

    backend.revoke(RevokeRequest(serial=serial, reason=RevocationReason.SUPERSEDED, ca=root.arn))
    assert moto.revocations(root.arn) == {expected: "SUPERSEDED"}  # moto keeps the last; AWS the first
    with pytest.raises(Rejected, match="on hold"):
        backend.revoke(RevokeRequest(serial=serial, reason=RevocationReason.CERTIFICATE_HOLD))


def test_several_active_cas_must_be_named(
    backend: AcmpcaBackend, root: MotoCA, csr: x509.CertificateSigningRequest, moto: MotoPeer
) -> None:
    second = moto.active_ca("Second CA")
    with pytest.raises(Rejected, match="2 CAs are ACTIVE") as refused:
        backend.enroll(EnrollRequest(csr=csr, request_id="req-m"))
    assert root.arn in refused.value.message
    assert second.arn in refused.value.message
    with pytest.raises(Rejected, match="name the one"):
        backend.revoke(RevokeRequest(serial="0a"))
    assert moto.issued_arns(root.arn) == []

    issued = backend.enroll(EnrollRequest(csr=csr, request_id="req-m", ca=second.arn))
    assert isinstance(issued, Issued)
    assert issued.chain == (second.certificate,)


def test_unusable_cas_are_rejected(
    backend: AcmpcaBackend, root: MotoCA, csr: x509.CertificateSigningRequest, moto: MotoPeer
) -> None:
    pending = moto.pending_ca()
    with pytest.raises(Rejected, match="PENDING_CERTIFICATE, so it cannot issue"):
        backend.enroll(EnrollRequest(csr=csr, request_id="req-p", ca=pending))
    unknown = root.arn[:-4] + "0000"
    with pytest.raises(Rejected, match=f"has no CA {unknown}.*backend cas lists them"):
        backend.enroll(EnrollRequest(csr=csr, request_id="req-u", ca=unknown))
    with pytest.raises(Rejected, match="is not a CA ARN"):
        backend.enroll(EnrollRequest(csr=csr, request_id="req-x", ca="Moto Root CA"))
    assert moto.issued_arns(root.arn) == []


def test_scan_without_audit_bucket_is_not_supported(backend: AcmpcaBackend) -> None:
    with pytest.raises(NotSupported, match="scan needs -auditbucket: AWS Private CA lists issued"):
        backend.scan()


@pytest.fixture
def closed_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]  # bound but not listening: connections are refused


def test_unreachable_endpoint_is_transient(context: BackendContext, closed_port: int) -> None:
    opened = load_type("acmpca").open(_config(f"http://127.0.0.1:{closed_port}"), context)
    with pytest.raises(Transient, match=r"cannot reach AWS Private CA at http://127\.0\.0\.1.*-region"):
        opened.check()
