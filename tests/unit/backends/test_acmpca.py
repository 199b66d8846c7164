"""The acmpca backend on answers moto cannot give: asynchronous issuance, throttling and other AWS errors,
audit reports, the signing algorithm per CA key. The real boto3 client is used with botocore's Stubber,
which answers at the SDK's wire boundary with AWS's own shapes (it validates both requests and responses
against the service model); assertions are on results and on what the backend stored."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from caconnector.backends.acmpca import AcmpcaBackendType
from caconnector.backends.acmpca import backend as acmpca_backend
from caconnector.backends.acmpca.backend import (
    AUDIT_POLL_SECONDS,
    AcmpcaBackend,
    aws_serial,
    idempotency_token,
    template_arn,
)
from caconnector.backends.acmpca.client import connect
from caconnector.backends.acmpca.store import AcmpcaStore
from caconnector.backends.base import BackendContext, EnrollRequest, Issued, Pending, RevokeRequest
from caconnector.backends.configs import AcmpcaConfig
from caconnector.backends.errors import AuthError, ConfigError, NotSupported, Rejected, Transient
from caconnector.backends.registry import BackendTypeUnavailable
from caconnector.pki.revocation import RevocationReason

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
CA_ARN = "arn:aws:acm-pca:us-east-1:111122223333:certificate-authority/11223344-1234-1122-2233-112233445566"
CERT_ARN = f"{CA_ARN}/certificate/e8cbd2bedb122329f97706bcfec990f8"
NOW = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)


# ---- material ---------------------------------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )


@dataclass(frozen=True)
class PKI:
    root: x509.Certificate
    intermediate: x509.Certificate
    leaf: x509.Certificate
    csr: x509.CertificateSigningRequest

    @staticmethod
    def pem(*certificates: x509.Certificate) -> str:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates).decode()


@pytest.fixture(scope="module")
def pki() -> PKI:
    root_key, intermediate_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _certificate("Root", root_key, "Root", root_key, ca=True)
    intermediate = _certificate("Issuing", intermediate_key, "Root", root_key, ca=True)
    leaf = _certificate("app.example.test", leaf_key, "Issuing", intermediate_key, ca=False)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_name("app.example.test"))
        .sign(leaf_key, hashes.SHA256())
    )
    return PKI(root, intermediate, leaf, csr)


def _authority(
    status: str = "ACTIVE", key_algorithm: str = "EC_prime256v1", arn: str = CA_ARN
) -> dict[str, Any]:
    return {
        "Arn": arn,
        "Status": status,
        "Type": "SUBORDINATE",
        "CertificateAuthorityConfiguration": {
            "KeyAlgorithm": key_algorithm,
            "SigningAlgorithm": "SHA256WITHECDSA",
            "Subject": {"CommonName": "Issuing", "Organization": "Example Company", "Country": "US"},
        },
        "NotAfter": NOW + dt.timedelta(days=365),
    }


# ---- the backend with a stubbed client ----------------------------------------------------------------


def _client(service: str) -> Any:
    session = boto3.session.Session(
        aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key=SECRET, region_name="us-east-1"
    )
    # Never reached: the Stubber answers every call before anything is sent.
    return session.client(service, endpoint_url="http://127.0.0.1:9")


@dataclass
class Stubbed:
    backend: AcmpcaBackend
    pca: Stubber
    s3: Stubber
    store: AcmpcaStore
    sleeps: list[float]
    clock: list[dt.datetime]


@pytest.fixture(scope="module")
def clients() -> tuple[Any, Any]:
    # Made once: building a boto3 client loads the service model, which takes a while.
    return _client("acm-pca"), _client("s3")


@pytest.fixture
def stubbed(tmp_path: Path, clients: tuple[Any, Any]) -> Iterator[Stubbed]:
    pca_client, s3_client = clients
    sleeps: list[float] = []
    clock = [NOW]
    store = AcmpcaStore(tmp_path / "state", "corp-aws")
    backend = AcmpcaBackend(
        client=pca_client,
        name="corp-aws",
        store=store,
        s3=s3_client,
        auditbucket="audit-bucket",
        now=lambda: clock[0],
        sleep=sleeps.append,
    )
    with Stubber(pca_client) as pca, Stubber(s3_client) as s3:
        yield Stubbed(backend, pca, s3, store, sleeps, clock)
        pca.assert_no_pending_responses()
        s3.assert_no_pending_responses()


def _expect_issue(stubbed: Stubbed, pki: PKI, **params: Any) -> None:
    stubbed.pca.add_response(
        "issue_certificate",
        {"CertificateArn": CERT_ARN},
        {
            "CertificateAuthorityArn": CA_ARN,
            "Csr": pki.csr.public_bytes(serialization.Encoding.PEM),
            "SigningAlgorithm": ANY,
            "Validity": ANY,
            "IdempotencyToken": ANY,
            **params,
        },
    )


def _expect_certificate(stubbed: Stubbed, pki: PKI, chain: str | None = None) -> None:
    response = {"Certificate": pki.pem(pki.leaf)}
    if chain is None:
        chain = pki.pem(pki.root, pki.intermediate)  # AWS's order is not guaranteed; ours is
    if chain:
        response["CertificateChain"] = chain
    stubbed.pca.add_response(
        "get_certificate", response, {"CertificateAuthorityArn": CA_ARN, "CertificateArn": CERT_ARN}
    )


def _describe(stubbed: Stubbed, **authority: Any) -> None:
    stubbed.pca.add_response(
        "describe_certificate_authority",
        {"CertificateAuthority": _authority(**authority)},
        {"CertificateAuthorityArn": CA_ARN},
    )


# ---- enroll and collect ---------------------------------------------------------------------------------


def test_pending_while_aws_issues_then_collect(stubbed: Stubbed, pki: PKI) -> None:
    _describe(stubbed)
    _expect_issue(
        stubbed,
        pki,
        SigningAlgorithm="SHA256WITHECDSA",
        Validity={"Value": 30, "Type": "DAYS"},
        TemplateArn="arn:aws:acm-pca:::template/EndEntityServerAuthCertificate/V1",
        IdempotencyToken=idempotency_token("req-1"),
    )
    stubbed.pca.add_client_error(
        "get_certificate", "RequestInProgressException", "Your request is already in progress."
    )
    request = EnrollRequest(
        csr=pki.csr,
        request_id="req-1",
        ca=CA_ARN,
        template="EndEntityServerAuthCertificate/V1",
        validity_days=30,
    )
    pending = stubbed.backend.enroll(request)
    assert pending == Pending(
        order_ref=CERT_ARN, reason="AWS Private CA is issuing the certificate", retry_after=2
    )
    assert stubbed.store.certificate_arn("req-1") == CERT_ARN

    _expect_certificate(stubbed, pki)
    issued = stubbed.backend.collect(CERT_ARN)
    assert issued == Issued(certificate=pki.leaf, chain=(pki.intermediate, pki.root), order_ref=CERT_ARN)


def test_a_recorded_request_is_collected_not_reissued(stubbed: Stubbed, pki: PKI) -> None:
    _describe(stubbed)
    _expect_issue(stubbed, pki)
    stubbed.pca.add_client_error("get_certificate", "ThrottlingException", http_status_code=400)
    with pytest.raises(Transient):
        stubbed.backend.enroll(EnrollRequest(csr=pki.csr, request_id="req-2", ca=CA_ARN))
    # Later (past AWS's five-minute token), the job comes again: only GetCertificate is called, the
    # Stubber would refuse a second IssueCertificate.
    stubbed.clock[0] = NOW + dt.timedelta(hours=1)
    _expect_certificate(stubbed, pki)
    issued = stubbed.backend.enroll(EnrollRequest(csr=pki.csr, request_id="req-2", ca=CA_ARN))
    assert isinstance(issued, Issued)
    assert issued.order_ref == CERT_ARN


def test_a_refused_issue_records_nothing(stubbed: Stubbed, pki: PKI) -> None:
    _describe(stubbed)
    stubbed.pca.add_client_error("issue_certificate", "MalformedCSRException", "The request is malformed.")
    with pytest.raises(Rejected, match=r"AWS refused IssueCertificate \(MalformedCSRException: The request"):
        stubbed.backend.enroll(EnrollRequest(csr=pki.csr, request_id="req-3", ca=CA_ARN))
    assert stubbed.store.certificate_arn("req-3") is None


@pytest.mark.parametrize(
    ("key_algorithm", "signing"),
    [
        ("RSA_2048", "SHA256WITHRSA"),
        ("RSA_4096", "SHA256WITHRSA"),
        ("EC_prime256v1", "SHA256WITHECDSA"),
        ("EC_secp384r1", "SHA384WITHECDSA"),
        ("EC_secp521r1", "SHA512WITHECDSA"),
        ("ML_DSA_65", "ML_DSA_65"),
    ],
)
def test_signing_algorithm_follows_the_ca_key(
    stubbed: Stubbed, pki: PKI, key_algorithm: str, signing: str
) -> None:
    # Without -ca, the only ACTIVE CA is used (a DISABLED one is not a candidate).
    stubbed.pca.add_response(
        "list_certificate_authorities",
        {
            "CertificateAuthorities": [
                _authority(status="DISABLED", arn=CA_ARN.replace("1122-2233", "9999-9999")),
                _authority(key_algorithm=key_algorithm),
            ]
        },
        {"MaxResults": 100},
    )
    _expect_issue(stubbed, pki, SigningAlgorithm=signing, Validity={"Value": 90, "Type": "DAYS"})
    _expect_certificate(stubbed, pki)
    assert isinstance(stubbed.backend.enroll(EnrollRequest(csr=pki.csr, request_id="req-s")), Issued)


def test_a_missing_chain_is_completed_from_the_ca(stubbed: Stubbed, pki: PKI) -> None:
    _expect_certificate(stubbed, pki, chain="")
    stubbed.pca.add_response(
        "get_certificate_authority_certificate",
        {"Certificate": pki.pem(pki.intermediate), "CertificateChain": pki.pem(pki.root)},
        {"CertificateAuthorityArn": CA_ARN},
    )
    issued = stubbed.backend.collect(CERT_ARN)
    assert isinstance(issued, Issued)
    assert issued.chain == (pki.intermediate, pki.root)


def test_collect_of_an_unknown_certificate_is_rejected(stubbed: Stubbed) -> None:
    stubbed.pca.add_client_error("get_certificate", "ResourceNotFoundException", "not found")
    with pytest.raises(Rejected, match=f"has no certificate {CERT_ARN}"):
        stubbed.backend.collect(CERT_ARN)


def test_check_pages_through_cas(stubbed: Stubbed, pki: PKI) -> None:
    other = CA_ARN.replace("1122-2233", "7777-7777")
    stubbed.pca.add_response(
        "list_certificate_authorities",
        {"CertificateAuthorities": [_authority()], "NextToken": "page-2"},
        {"MaxResults": 100},
    )
    stubbed.pca.add_response(
        "get_certificate_authority_certificate",
        {"Certificate": pki.pem(pki.intermediate), "CertificateChain": pki.pem(pki.root)},
        {"CertificateAuthorityArn": CA_ARN},
    )
    stubbed.pca.add_response(
        "list_certificate_authorities",
        {"CertificateAuthorities": [_authority(status="DISABLED", key_algorithm="EC_secp384r1", arn=other),
                                    _authority(status="DELETED", arn=other + "0")]},
        {"MaxResults": 100, "NextToken": "page-2"},
    )  # fmt: skip
    cas = stubbed.backend.check().cas
    assert [(c.id, c.state, c.key_type) for c in cas] == [
        (CA_ARN, "active", "ec-p256"),
        (other, "disabled", "ec-p384"),
    ]
    assert cas[0].certificate == pki.intermediate
    assert cas[0].name == "Issuing"
    # Without its certificate, the subject comes from the CA's configuration.
    assert cas[1].subject == "CN=Issuing,O=Example Company,C=US"
    assert (cas[1].serial, cas[1].not_after) == ("", NOW + dt.timedelta(days=365))


# ---- errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status", "meta", "error", "message"),
    [
        ("UnrecognizedClientException", 400, {}, AuthError,
         "AWS refused the access key (UnrecognizedClientException): check -accesskeyid/-secretaccesskey "
         "for backend 'corp-aws'"),
        ("InvalidSignatureException", 400, {}, AuthError, "check -accesskeyid/-secretaccesskey"),
        ("AccessDeniedException", 400, {}, AuthError, "grant it acm-pca:ListCertificateAuthorities"),
        ("ThrottlingException", 400, {"HTTPHeaders": {"retry-after": "7"}}, Transient, "throttling"),
        ("TooManyRequestsException", 429, {}, Transient, "throttling"),
        ("InternalFailure", 500, {}, Transient, "could not complete ListCertificateAuthorities"),
        ("ServiceUnavailable", 503, {}, Transient, "could not complete"),
        ("InvalidRequestException", 400, {}, Rejected, "AWS refused ListCertificateAuthorities"),
    ],
)  # fmt: skip
def test_aws_errors_map_to_the_error_tree(
    stubbed: Stubbed, *, code: str, status: int, meta: dict[str, Any], error: type[Exception], message: str
) -> None:
    stubbed.pca.add_client_error(
        "list_certificate_authorities", code, "AWS says no", http_status_code=status, response_meta=meta
    )
    with pytest.raises(error, match=re.escape(message)) as raised:
        stubbed.backend.check()
    assert SECRET not in str(raised.value)
    assert "AKIAIOSFODNN7EXAMPLE" not in str(raised.value)
    if meta:
        assert isinstance(raised.value, Transient)
        assert raised.value.retry_after == 7


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("LimitExceededException", Rejected),
        ("InvalidArgsException", Rejected),
        ("InvalidStateException", Rejected),
        ("ThrottlingException", Transient),
        ("ResourceNotFoundException", Rejected),
    ],
)
def test_issue_errors(stubbed: Stubbed, pki: PKI, code: str, error: type[Exception]) -> None:
    _describe(stubbed)
    stubbed.pca.add_client_error("issue_certificate", code, "from AWS")
    with pytest.raises(error):
        stubbed.backend.enroll(EnrollRequest(csr=pki.csr, request_id="req-e", ca=CA_ARN))


# ---- revoke -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "aws"),
    [
        (RevocationReason.UNSPECIFIED, "UNSPECIFIED"),
        (RevocationReason.KEY_COMPROMISE, "KEY_COMPROMISE"),
        (RevocationReason.CA_COMPROMISE, "CERTIFICATE_AUTHORITY_COMPROMISE"),
        (RevocationReason.AFFILIATION_CHANGED, "AFFILIATION_CHANGED"),
        (RevocationReason.SUPERSEDED, "SUPERSEDED"),
        (RevocationReason.CESSATION_OF_OPERATION, "CESSATION_OF_OPERATION"),
        (RevocationReason.PRIVILEGE_WITHDRAWN, "PRIVILEGE_WITHDRAWN"),
        (RevocationReason.AA_COMPROMISE, "A_A_COMPROMISE"),
    ],
)
def test_revoke_reasons(stubbed: Stubbed, reason: RevocationReason, aws: str) -> None:
    stubbed.pca.add_response(
        "revoke_certificate",
        {},
        {
            "CertificateAuthorityArn": CA_ARN,
            "CertificateSerial": "e8:cb:d2:be:db:12",
            "RevocationReason": aws,
        },
    )
    stubbed.backend.revoke(RevokeRequest(serial="E8CBD2BEDB12", reason=reason, ca=CA_ARN))


def test_revoke_twice_is_fine_and_hold_is_refused(stubbed: Stubbed) -> None:
    stubbed.pca.add_client_error("revoke_certificate", "RequestAlreadyProcessedException", "already revoked")
    stubbed.backend.revoke(RevokeRequest(serial="0a1b", ca=CA_ARN))
    with pytest.raises(Rejected, match="cannot put a certificate on hold"):
        stubbed.backend.revoke(
            RevokeRequest(serial="0a1b", ca=CA_ARN, reason=RevocationReason.CERTIFICATE_HOLD)
        )
    stubbed.pca.add_client_error("revoke_certificate", "ResourceNotFoundException", "no such certificate")
    with pytest.raises(Rejected, match="has no certificate with serial 0a:1b"):
        stubbed.backend.revoke(RevokeRequest(serial="0a1b", ca=CA_ARN))


# ---- scan through audit reports --------------------------------------------------------------------------


def _report_body(entries: list[dict[str, Any]]) -> StreamingBody:
    data = json.dumps(entries).encode()
    return StreamingBody(io.BytesIO(data), len(data))


def _entry(arn: str, issued_at: str = "2026-04-30T10:00:00+0000", **extra: str) -> dict[str, Any]:
    return {
        "awsAccountId": "111122223333",
        "certificateArn": arn,
        "serial": "e8:cb:d2:be:db:12",
        "subject": "CN=app.example.test",
        "notBefore": "2026-04-30T09:00:00+0000",
        "notAfter": "2027-04-30T09:00:00+0000",
        "issuedAt": issued_at,
        **extra,
    }


def _audit(stubbed: Stubbed, *, create: bool, statuses: list[str]) -> None:
    stubbed.pca.add_response(
        "list_certificate_authorities", {"CertificateAuthorities": [_authority()]}, {"MaxResults": 100}
    )
    if create:
        stubbed.pca.add_response(
            "create_certificate_authority_audit_report",
            {"AuditReportId": "a1b2c3d4-0000-1111-2222-333344445555", "S3Key": "audit-report/ca/a1b2.json"},
            {
                "CertificateAuthorityArn": CA_ARN,
                "S3BucketName": "audit-bucket",
                "AuditReportResponseFormat": "JSON",
            },
        )
    for status in statuses:
        stubbed.pca.add_response(
            "describe_certificate_authority_audit_report",
            {"AuditReportStatus": status},
            {"CertificateAuthorityArn": CA_ARN, "AuditReportId": "a1b2c3d4-0000-1111-2222-333344445555"},
        )


def test_scan_reads_the_audit_report(stubbed: Stubbed, pki: PKI) -> None:
    _audit(stubbed, create=True, statuses=["CREATING", "SUCCESS"])
    stubbed.s3.add_response(
        "get_object",
        {
            "Body": _report_body(
                [
                    _entry(CERT_ARN),
                    _entry(CERT_ARN),  # a certificate listed twice is read once
                    _entry(f"{CA_ARN}/certificate/revoked0", revokedAt="2026-04-30T11:00:00+0000"),
                    _entry(f"{CA_ARN}/certificate/old00000", issued_at="2026-01-01T00:00:00+0000"),
                    _entry(f"{CA_ARN}/certificate/ca000000"),
                ]
            )
        },
        {"Bucket": "audit-bucket", "Key": "audit-report/ca/a1b2.json"},
    )
    _expect_certificate(stubbed, pki)
    # The CA's own certificate is in the report too; check() reports it, scan leaves it out.
    stubbed.pca.add_response(
        "get_certificate",
        {"Certificate": pki.pem(pki.intermediate), "CertificateChain": pki.pem(pki.root)},
        {"CertificateAuthorityArn": CA_ARN, "CertificateArn": f"{CA_ARN}/certificate/ca000000"},
    )
    found = list(stubbed.backend.scan(since=dt.datetime(2026, 4, 1, tzinfo=dt.UTC)))
    assert [(i.certificate, i.order_ref) for i in found] == [(pki.leaf, CERT_ARN)]
    assert stubbed.sleeps == [AUDIT_POLL_SECONDS]

    # Within 30 minutes AWS makes no new report: the last one is read again.
    stubbed.clock[0] = NOW + dt.timedelta(minutes=20)
    _audit(stubbed, create=False, statuses=["SUCCESS"])
    stubbed.s3.add_response("get_object", {"Body": _report_body([])}, {"Bucket": "audit-bucket", "Key": ANY})
    assert list(stubbed.backend.scan()) == []


def test_scan_report_failure_and_timeout(stubbed: Stubbed, monkeypatch: pytest.MonkeyPatch) -> None:
    _audit(stubbed, create=True, statuses=["FAILED"])
    with pytest.raises(ConfigError, match=r"bucket policy must let acm-pca\.amazonaws\.com write"):
        list(stubbed.backend.scan())
    # Forgotten, so the scan after the fix asks for a new report at once.
    assert stubbed.store.audit_report(CA_ARN) is None

    monkeypatch.setattr(acmpca_backend, "AUDIT_POLLS", 3)
    _audit(stubbed, create=True, statuses=["CREATING"] * 3)
    with pytest.raises(Transient, match="still writing the audit report") as raised:
        list(stubbed.backend.scan())
    assert raised.value.retry_after == 60
    assert len(stubbed.sleeps) == 2


def test_scan_without_bucket_is_not_supported(tmp_path: Path) -> None:
    backend = AcmpcaBackend(
        client=_client("acm-pca"), name="corp-aws", store=AcmpcaStore(tmp_path, "corp-aws")
    )
    with pytest.raises(NotSupported, match="scan needs -auditbucket"):
        backend.scan()


def test_s3_refusals(stubbed: Stubbed) -> None:
    _audit(stubbed, create=True, statuses=["SUCCESS"])
    stubbed.s3.add_client_error("get_object", "AccessDenied", "Access Denied", http_status_code=403)
    with pytest.raises(AuthError, match="grant it s3:GetObject"):
        list(stubbed.backend.scan())


# ---- pure helpers and the factory ------------------------------------------------------------------


def test_helpers() -> None:
    assert aws_serial("0a1b2c") == "0a:1b:2c"
    assert aws_serial("A1B2C") == "0a:1b:2c"
    assert aws_serial(0) == "00"
    assert aws_serial("00:ff:01") == "ff:01"
    token = idempotency_token("req-1")
    assert token == idempotency_token("req-1") != idempotency_token("req-2")
    assert len(token) <= 36
    assert token.isalnum()
    assert template_arn("EndEntityServerAuthCertificate/V1") == (
        "arn:aws:acm-pca:::template/EndEntityServerAuthCertificate/V1"
    )
    assert (
        template_arn("EndEntityCertificate", "aws-us-gov")
        == "arn:aws-us-gov:acm-pca:::template/EndEntityCertificate/V1"
    )
    assert template_arn("arn:aws:acm-pca:::template/CodeSigningCertificate/V1").endswith(
        "CodeSigningCertificate/V1"
    )
    # The certificate types a manager profile sends when it names no template.
    assert template_arn("server").endswith(":template/EndEntityServerAuthCertificate/V1")
    assert template_arn("client").endswith(":template/EndEntityClientAuthCertificate/V1")
    with pytest.raises(Rejected, match="not an AWS Private CA template"):
        template_arn("server cert")


def _config(**extra: Any) -> AcmpcaConfig:
    values = {"accesskeyid": "AKIAIOSFODNN7EXAMPLE", "secretaccesskey": SECRET, "region": "eu-west-1"}
    return AcmpcaConfig.model_validate({**values, **extra})


def test_connect_builds_clients_without_network() -> None:
    clients = connect(_config(endpoint="https://acm-pca.vpce-0a1b.eu-west-1.vpce.amazonaws.com"))
    meta: Any = clients.acmpca.meta  # type: ignore[attr-defined]
    assert meta.region_name == "eu-west-1"
    assert meta.endpoint_url == "https://acm-pca.vpce-0a1b.eu-west-1.vpce.amazonaws.com"
    assert meta.config.retries["mode"] == "standard"
    assert (meta.config.connect_timeout, meta.config.read_timeout) == (10, 30)
    assert clients.s3 is None  # scan is off without -auditbucket

    private = connect(
        _config(endpoint="https://acm-pca.vpce-0a1b.eu-west-1.vpce.amazonaws.com", auditbucket="b-1")
    )
    # A private ACM PCA endpoint says nothing about S3, which keeps its regional endpoint.
    assert private.s3 is not None
    assert private.s3.meta.endpoint_url == "https://s3.eu-west-1.amazonaws.com"  # type: ignore[attr-defined]
    local = connect(_config(endpoint="http://127.0.0.1:5000", auditbucket="b-1"))
    assert local.s3 is not None
    assert local.s3.meta.endpoint_url == "http://127.0.0.1:5000"  # type: ignore[attr-defined]


def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3.session", None)
    with pytest.raises(BackendTypeUnavailable, match=r"pip install 'caconnector\[acmpca\]'"):
        connect(_config())


def test_provision_is_offline_and_open_builds_the_backend(tmp_path: Path) -> None:
    context = BackendContext(name="corp-aws", state_dir=tmp_path / "state")
    config = _config()
    factory = AcmpcaBackendType()
    assert factory.provision(config, context) is config
    assert not (tmp_path / "state").exists()
    assert isinstance(factory.open(config, context), AcmpcaBackend)
