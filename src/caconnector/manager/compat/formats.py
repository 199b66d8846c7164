"""The collect formats the cert_manager client knows, built from the leaf and its chain (issuer first,
root last) with pki's encoders. What each holds is in the README's table."""

from __future__ import annotations

import enum
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

PEM_TEXT = "application/x-pem-file"
# The client decodes every answer as text (its charset, else ASCII): binary PKCS#7 is sent as ISO-8859-1,
# which maps each byte to one character, so `collect(...).encode("latin-1")` gives the bytes back.
BINARY = "application/pkcs7-mime; charset=ISO-8859-1"


class CollectFormat(enum.StrEnum):
    X509 = "x509"  # leaf, then its issuers up to the root
    X509_CO = "x509CO"  # the leaf only
    X509_IO = "x509IO"  # the issuers only, root first
    X509_IOR = "x509IOR"  # the issuers only, issuer first (reverse)
    BASE64 = "base64"  # PKCS#7, PEM (base64 with its armor)
    BIN = "bin"  # PKCS#7, DER
    PEM = "pem"  # root first, down to the leaf (the chain, then the certificate)
    PEM_CO = "pemco"  # the leaf only
    PEM_IA = "pemia"  # leaf, then its issuer(s) after it


def encode(
    leaf: x509.Certificate, chain: Sequence[x509.Certificate], fmt: CollectFormat
) -> tuple[bytes, str]:
    """The body and its Content-Type."""
    issuers = list(chain)
    if fmt is CollectFormat.BASE64:
        return pkcs7.serialize_certificates([leaf, *issuers], serialization.Encoding.PEM), PEM_TEXT
    if fmt is CollectFormat.BIN:
        return pkcs7.serialize_certificates([leaf, *issuers], serialization.Encoding.DER), BINARY
    order = {
        CollectFormat.X509: [leaf, *issuers],
        CollectFormat.PEM_IA: [leaf, *issuers],
        CollectFormat.X509_CO: [leaf],
        CollectFormat.PEM_CO: [leaf],
        CollectFormat.X509_IO: issuers[::-1],
        CollectFormat.X509_IOR: issuers,
        CollectFormat.PEM: [*issuers[::-1], leaf],
    }
    return _pem(order[fmt]), PEM_TEXT


def _pem(certificates: Sequence[x509.Certificate]) -> bytes:
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certificates)
