"""Real test material built with `cryptography`: keys, CSRs and a root -> intermediate -> leaf hierarchy."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from caconnector.pki.keys import signature_hash_for

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)

MakeCSR = Callable[..., x509.CertificateSigningRequest]


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _hash_for(key: CertificateIssuerPrivateKeyTypes) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | None:
    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        return signature_hash_for(key)
    return hashes.SHA256()


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def weak_rsa_key() -> rsa.RSAPrivateKey:
    """A 1024-bit RSA key, for testing that such keys are refused."""
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505  # refused on purpose


@pytest.fixture(scope="session")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="session")
def make_csr(ec_key: ec.EllipticCurvePrivateKey) -> MakeCSR:
    """Build a CSR: `make_csr(key=..., common_name=..., sans=[...])`; defaults to a P-256 key."""

    def build(
        *,
        key: CertificateIssuerPrivateKeyTypes | None = None,
        common_name: str | None = "www.example.com",
        sans: Sequence[x509.GeneralName] = (),
        extensions: Sequence[x509.ExtensionType] = (),
    ) -> x509.CertificateSigningRequest:
        signing_key = key if key is not None else ec_key
        subject = _name(common_name) if common_name is not None else x509.Name([])
        builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
        for extension in extensions:
            builder = builder.add_extension(extension, critical=False)
        return builder.sign(signing_key, _hash_for(signing_key))

    return build


@dataclass(frozen=True)
class Hierarchy:
    root: x509.Certificate
    intermediate: x509.Certificate
    leaf: x509.Certificate
    unrelated: x509.Certificate  # a self-signed root that issued nothing here
    impostor: x509.Certificate  # named like the intermediate, but with another key


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="session")
def hierarchy() -> Hierarchy:
    root_key = ec.generate_private_key(ec.SECP256R1())
    intermediate_key = ec.generate_private_key(ec.SECP256R1())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    other_key = ec.generate_private_key(ec.SECP256R1())
    root = _certificate("Test Root CA", root_key, "Test Root CA", root_key, ca=True)
    intermediate = _certificate("Test Intermediate CA", intermediate_key, "Test Root CA", root_key, ca=True)
    leaf = _certificate("leaf.example.com", leaf_key, "Test Intermediate CA", intermediate_key, ca=False)
    unrelated = _certificate("Unrelated Root CA", other_key, "Unrelated Root CA", other_key, ca=True)
    impostor = _certificate("Test Intermediate CA", other_key, "Test Intermediate CA", other_key, ca=True)
    return Hierarchy(root=root, intermediate=intermediate, leaf=leaf, unrelated=unrelated, impostor=impostor)


@pytest.fixture
def one_line() -> Callable[[BaseException], str]:
    """Return str(err) after checking it is a single non-empty line."""

    def check(err: BaseException) -> str:
        message = str(err)
        assert message
        assert "\n" not in message
        return message

    return check
