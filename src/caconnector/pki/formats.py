"""The encodings we hand issued certificates out in, and their HTTP media types."""

from __future__ import annotations

import enum
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7


class OutputFormat(enum.StrEnum):
    PEM = "pem"  # the leaf only
    PEM_CHAIN = "pem-chain"  # leaf then its issuers up to the root: what web servers want
    CHAIN = "chain"  # the issuers only, for servers configured with a separate chain file
    DER = "der"  # the leaf only, binary
    PKCS7 = "pkcs7"  # leaf and issuers in a degenerate SignedData, as Windows and Java tools import


def encode_certificate(
    certificate: x509.Certificate, chain: Sequence[x509.Certificate], fmt: OutputFormat
) -> bytes:
    """Encode the leaf `certificate` and its `chain` (issuer first, root last) in `fmt`."""
    match fmt:
        case OutputFormat.PEM:
            return _pem([certificate])
        case OutputFormat.PEM_CHAIN:
            return _pem([certificate, *chain])
        case OutputFormat.CHAIN:
            return _pem(chain)
        case OutputFormat.DER:
            return certificate.public_bytes(serialization.Encoding.DER)
        case OutputFormat.PKCS7:
            # SignedData.certificates is a SET OF, so DER sorts the certificates by their encoding:
            # the leaf-first order is lost, and readers rebuild the path from signatures (`order_chain`).
            return pkcs7.serialize_certificates([certificate, *chain], serialization.Encoding.DER)


def media_type(fmt: OutputFormat) -> str:
    """The HTTP Content-Type for `fmt` (RFC 8555 section 9.1, RFC 2585, RFC 8551)."""
    match fmt:
        case OutputFormat.PEM | OutputFormat.PEM_CHAIN | OutputFormat.CHAIN:
            return "application/pem-certificate-chain"
        case OutputFormat.DER:
            return "application/pkix-cert"
        case OutputFormat.PKCS7:
            return "application/pkcs7-mime"


def _pem(certificates: Sequence[x509.Certificate]) -> bytes:
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certificates)
