"""The local CA's certificate profile against pkilint's RFC 5280 linters.

Findings of severity ERROR or FATAL fail the test (the profile is then wrong, not the test); WARNING,
NOTICE and INFO findings are printed, so a run with `-s` shows what pkilint remarks on.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from pkilint import loader, pkix, validation
from pkilint.bin import lint_pkix_signer_signee_cert_chain as signer_signee
from pkilint.pkix import certificate, crl, extension, name

from caconnector.backends.base import BackendContext, EnrollRequest, RevokeRequest
from caconnector.backends.configs import LocalConfig
from caconnector.backends.local import LocalBackendType
from caconnector.backends.local.backend import LocalCA
from caconnector.pki.keys import PrivateKey, generate_private_key, signature_hash_for
from caconnector.pki.revocation import RevocationReason

pytestmark = pytest.mark.slow

FAILING = validation.ValidationFindingSeverity.ERROR  # this and anything more severe (FATAL) fails


def _certificate_validator() -> Any:
    # The same validator set `lint_pkix_cert lint` builds (pkilint/bin/lint_pkix_cert.py).
    return certificate.create_pkix_certificate_validator_container(
        certificate.create_decoding_validators(name.ATTRIBUTE_TYPE_MAPPINGS, extension.EXTENSION_MAPPINGS),
        [
            certificate.create_issuer_validator_container([]),
            certificate.create_validity_validator_container(),
            certificate.create_subject_validator_container([]),
            certificate.create_extensions_validator_container([]),
            certificate.create_spki_validator_container([]),
        ],
    )


def _crl_validator() -> Any:
    # The same validator set `lint_crl lint -t CRL -p PKIX` builds (pkilint/bin/lint_crl.py).
    return crl.create_pkix_crl_validator_container(
        [
            pkix.create_attribute_decoder(name.ATTRIBUTE_TYPE_MAPPINGS),
            pkix.create_extension_decoder(extension.EXTENSION_MAPPINGS),
        ],
        [
            crl.create_issuer_validator_container([]),
            crl.create_validity_validator_container([]),
            crl.create_extensions_validator_container([]),
        ],
    )


def _findings(results: Iterable[Any]) -> list[tuple[validation.ValidationFindingSeverity, str]]:
    """Every finding as (severity, "code at path: message"), most severe first."""
    found = [
        (
            description.finding.severity,
            f"{description.finding.code} at {result.node.path}"
            + (f": {description.message}" if description.message else ""),
        )
        for result in results
        for description in result.finding_descriptions
    ]
    return sorted(found, key=lambda item: item[0])


def _der(document: x509.Certificate | x509.CertificateRevocationList) -> bytes:
    return document.public_bytes(serialization.Encoding.DER)


def lint_certificate(cert: x509.Certificate) -> list[tuple[validation.ValidationFindingSeverity, str]]:
    document = loader.RFC5280CertificateDocumentLoader().load_der_document(_der(cert), "certificate")
    return _findings(_certificate_validator().validate(document.root))


def lint_crl(
    revocation_list: x509.CertificateRevocationList,
) -> list[tuple[validation.ValidationFindingSeverity, str]]:
    document = loader.RFC5280CertificateListDocumentLoader().load_der_document(_der(revocation_list), "crl")
    return _findings(_crl_validator().validate(document.root))


def lint_issuer_and_subject(
    issuer: x509.Certificate, subject: x509.Certificate
) -> list[tuple[validation.ValidationFindingSeverity, str]]:
    """pkilint's issuer/subject pair checks: name chaining, AKI = issuer's SKI, and the signature."""
    # The same steps as `lint_pkix_signer_signee_cert_chain lint ISSUER SUBJECT`.
    documents: dict[str, Any] = {}
    load = loader.RFC5280CertificateDocumentLoader().load_der_document
    documents["issuer"] = load(_der(issuer), "issuer.der", "issuer", documents)
    documents["subject"] = load(_der(subject), "subject.der", "subject", documents)
    decoders = signer_signee.create_decoder_validation_container()
    results = decoders.validate(documents["issuer"].root)
    results += decoders.validate(documents["subject"].root)
    results += signer_signee.create_issuer_validation_container().validate(documents["issuer"].root)
    results += signer_signee.create_subject_validation_container().validate(documents["subject"].root)
    return _findings(results)


def assert_clean(what: str, findings: list[tuple[validation.ValidationFindingSeverity, str]]) -> None:
    for severity, text in findings:
        print(f"pkilint {what}: {severity.name} {text}")
    failing = [f"{severity.name} {text}" for severity, text in findings if severity <= FAILING]
    assert failing == [], f"pkilint reports for {what}:\n" + "\n".join(failing)


def _csr(
    key: PrivateKey, *, common_name: str, sans: list[x509.GeneralName]
) -> x509.CertificateSigningRequest:
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, signature_hash_for(key))
    )


@pytest.fixture(scope="module")
def leaf_keys() -> dict[str, PrivateKey]:
    return {key_type: generate_private_key(key_type) for key_type in ("rsa-2048", "ec-p256", "ed25519")}


@pytest.mark.parametrize("ca_key_type", ["ec-p256", "ec-p384", "rsa-2048", "ed25519"])
def test_local_ca_profile_passes_pkilint(
    tmp_path: Path, leaf_keys: dict[str, PrivateKey], ca_key_type: str
) -> None:
    context = BackendContext(name="lint", state_dir=tmp_path / "state", now=lambda: dt.datetime.now(dt.UTC))
    factory = LocalBackendType()
    config = factory.provision(
        LocalConfig.model_validate({"subject": "CN=Lint Local CA,O=Example,C=DE", "keytype": ca_key_type}),
        context,
    )
    ca: LocalCA = factory.open(config, context)
    assert_clean(f"{ca_key_type} CA certificate", lint_certificate(ca.certificate))
    assert_clean(
        f"{ca_key_type} CA certificate (self-issued pair)",
        lint_issuer_and_subject(ca.certificate, ca.certificate),
    )

    issued: list[x509.Certificate] = []
    cases: list[tuple[str, str, str, list[x509.GeneralName]]] = [
        ("rsa-2048", "server", "rsa.example.test", [x509.DNSName("rsa.example.test")]),
        (
            "ec-p256",
            "server",
            "ec.example.test",
            [x509.DNSName("ec.example.test"), x509.DNSName("api.ec.example.test")],
        ),
        ("ed25519", "server", "ed.example.test", [x509.DNSName("ed.example.test")]),
        ("ec-p256", "client", "alice", [x509.RFC822Name("alice@example.test")]),
        ("rsa-2048", "client", "bob", [x509.UniformResourceIdentifier("https://example.test/users/bob")]),
    ]
    for key_type, template, common_name, sans in cases:
        csr = _csr(leaf_keys[key_type], common_name=common_name, sans=sans)
        request = EnrollRequest(csr=csr, request_id=f"{key_type}-{template}-{common_name}", template=template)
        cert = ca.enroll(request).certificate
        issued.append(cert)
        what = f"{template} certificate ({key_type} key, {ca_key_type} CA)"
        assert_clean(what, lint_certificate(cert))
        assert_clean(f"{what} with its issuer", lint_issuer_and_subject(ca.certificate, cert))

    assert_clean(f"empty CRL ({ca_key_type} CA)", lint_crl(ca.crl()))
    ca.revoke(RevokeRequest(serial=f"{issued[0].serial_number:x}", reason=RevocationReason.KEY_COMPROMISE))
    ca.revoke(RevokeRequest(serial=f"{issued[1].serial_number:x}"))
    ca.revoke(RevokeRequest(serial=f"{issued[3].serial_number:x}", reason=RevocationReason.CERTIFICATE_HOLD))
    revocation_list = ca.crl()
    assert len(revocation_list) == 3
    assert_clean(f"CRL with entries ({ca_key_type} CA)", lint_crl(revocation_list))


def test_the_lint_helper_reports_errors() -> None:
    # The helper must be able to fail: a CA certificate without keyUsage or a critical basicConstraints
    # breaks RFC 5280 MUSTs that pkilint checks.
    key = generate_private_key("ec-p256")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bad CA")])
    now = dt.datetime.now(dt.UTC)
    bad = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=False)
        .sign(key, signature_hash_for(key))
    )
    assert [text for severity, text in lint_certificate(bad) if severity <= FAILING]


def test_subjects_of_hostile_csrs_are_rebuilt_or_refused(tmp_path: Path) -> None:
    # Requests in encodings the CA must rewrite (UTF8String C, BMPString O, UniversalString CN) issue
    # pkilint-clean certificates; ones carrying what no certificate should carry are refused.
    from tests.fuzz.mutations import (  # noqa: PLC0415 - the corpus's DER helpers, only needed here
        Forge,
        attribute,
        dns,
        extension_request,
        name,
        pem,
        san,
    )

    from caconnector.backends.errors import Rejected  # noqa: PLC0415 - only this test uses it
    from caconnector.pki.csr import load_csr  # noqa: PLC0415 - as above

    context = BackendContext(name="lint", state_dir=tmp_path / "state", now=lambda: dt.datetime.now(dt.UTC))
    factory = LocalBackendType()
    ca: LocalCA = factory.open(factory.provision(LocalConfig(), context), context)
    forge = Forge()
    rewritten = name(
        [attribute("2.5.4.6", 0x0C, b"DE")],
        [attribute("2.5.4.10", 0x1E, "Zürich Büro".encode("utf-16-be"))],
        [attribute("2.5.4.3", 0x1C, "app.example.test".encode("utf-32-be"))],
    )
    request = forge.request(rewritten, extension_request(san(dns("app.example.test"))))
    cert = ca.enroll(EnrollRequest(csr=load_csr(pem(request).encode()), request_id="rewritten")).certificate
    assert cert.subject.rfc4514_string() == "CN=app.example.test,O=Zürich Büro,C=DE"
    assert_clean("certificate from a rewritten subject", lint_certificate(cert))
    assert_clean("rewritten, with its issuer", lint_issuer_and_subject(ca.certificate, cert))

    for hostile in (b"app\x00.example.test", "app\u202etset".encode(), b"a" * 5000):
        subject = name([attribute("2.5.4.3", 0x0C, hostile)])
        csr = x509.load_der_x509_csr(forge.request(subject, extension_request(san(dns("app.example.test")))))
        with pytest.raises(Rejected, match="CSR subject attribute CN"):
            ca.enroll(EnrollRequest(csr=csr, request_id=f"hostile-{len(hostile)}"))
