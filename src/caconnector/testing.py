"""Helpers for testing code that uses caconnector, shipped with it (as structlog ships `structlog.testing`).

Real material, not stand-ins: a CSR here is signed by a fresh key and passes the connector's own CSR
checks. This module must not import pytest (it ships in the wheel, where pytest is not installed).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from caconnector.pki.keys import PrivateKey, signature_hash_for

__all__ = ["Clock", "TestCA", "make_ca", "make_csr", "make_csr_pem"]


def make_csr(name: str = "app.example.test", key: PrivateKey | None = None) -> x509.CertificateSigningRequest:
    """A CSR for one host name, as a TLS server asks for one: the name as common name and as its only DNS
    SAN, signed by `key` (a new P-256 key when none is given)."""
    signer = key or ec.generate_private_key(ec.SECP256R1())
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(signer, signature_hash_for(signer))
    )


def make_csr_pem(name: str = "app.example.test", key: PrivateKey | None = None) -> str:
    """`make_csr` as the PEM text a job payload or an API request carries."""
    return make_csr(name, key).public_bytes(serialization.Encoding.PEM).decode()


class Clock:
    """A wall clock the test moves by hand (`advance`); call it for the time, as code that takes a `now`
    callable does."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


@dataclass(frozen=True)
class TestCA:
    """A CA certificate and its key, as a fake CA signs with them."""

    __test__ = False  # not a pytest test class, whatever its name

    certificate: x509.Certificate
    key: PrivateKey


def make_ca(
    name: str | x509.Name,
    *,
    issuer: TestCA | None = None,
    key: PrivateKey | None = None,
    days: int = 3650,
    path_length: int | None = None,
) -> TestCA:
    """A CA certificate as the CAs we fake have them: a root (self-signed) unless `issuer` is given, with
    basicConstraints (critical), keyCertSign and cRLSign, and its key identifiers; valid from a day ago
    for `days`. `key` is a new P-256 key when none is given."""
    subject = (
        name if isinstance(name, x509.Name) else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    )
    own = key or ec.generate_private_key(ec.SECP256R1())
    signer = issuer.key if issuer is not None else own
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject if issuer is not None else subject)
        .public_key(own.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(own.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
            critical=False,
        )
    return TestCA(builder.sign(signer, signature_hash_for(signer)), own)
