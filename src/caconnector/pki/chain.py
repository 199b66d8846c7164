"""Loading certificates and putting a CA's issuer certificates in order.

CAs hand back chains in every order, with duplicates, sometimes with the root and sometimes without;
`order_chain` rebuilds the path from the leaf by checking signatures, never by trusting the order
or the names alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from caconnector.pki.errors import CertificateFormatError, ChainError

_PEM_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """All certificates in PEM input (other PEM blocks are skipped), or the single certificate in DER."""
    if not data.strip():
        raise CertificateFormatError("certificate data is empty; give PEM or DER certificates")
    if b"-----BEGIN" in data:
        try:
            return x509.load_pem_x509_certificates(data)
        except ValueError:
            raise CertificateFormatError(_pem_problem(data)) from None
    try:
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise CertificateFormatError(
            "certificate data is not PEM or DER, or is truncated or corrupt"
        ) from None


def _pem_problem(data: bytes) -> str:
    labels = [label.decode("ascii") for label in _PEM_BEGIN.findall(data)]
    if "CERTIFICATE" in labels:
        return "certificate PEM is truncated or corrupt; give the complete certificate"
    if labels:
        return f"PEM contains {', '.join(labels)} but no CERTIFICATE"
    return "certificate data is not PEM or DER, or is truncated or corrupt"


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether `issuer` issued `cert`: the names match and `issuer`'s key verifies the signature."""
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        # ValueError: mismatched or unknown signature algorithm; TypeError: issuer key type cannot sign.
        return False
    return True


def is_self_signed(cert: x509.Certificate) -> bool:
    """Whether the certificate is signed by its own key (a root, or a self-signed leaf)."""
    return issued_by(cert, cert)


def order_chain(leaf: x509.Certificate, candidates: Iterable[x509.Certificate]) -> list[x509.Certificate]:
    """The path from `leaf`'s issuer up to a root: [issuer, issuer's issuer, ..., root], leaf excluded.

    Certificates are picked from `candidates`; duplicates and unrelated ones are ignored. The walk stops
    at a self-signed certificate, or returns the partial path when no issuer is found (the caller
    decides whether that is acceptable, see `ensure_complete`). When several candidates verify as the
    issuer (a cross-signed intermediate), a self-signed one is preferred, which gives the shorter path.
    """
    pool = _unique(candidates, exclude=leaf)
    path: list[x509.Certificate] = []
    current = leaf
    # Each certificate is used at most once, so the walk ends even if certificates issue each other.
    while pool and not is_self_signed(current):
        issuers = [candidate for candidate in pool if issued_by(current, candidate)]
        if not issuers:
            break
        current = next((c for c in issuers if is_self_signed(c)), issuers[0])
        path.append(current)
        pool.remove(current)
    return path


def ensure_complete(leaf: x509.Certificate, chain: Sequence[x509.Certificate]) -> None:
    """Raise `ChainError` unless `chain` links `leaf` up to a self-signed root, every link verifying."""
    child = leaf
    for position, parent in enumerate(chain, start=1):
        if not issued_by(child, parent):
            raise ChainError(
                f"chain certificate {position} ({_name(parent)}) did not issue {_name(child)}; "
                "the chain is out of order or contains the wrong certificate"
            )
        child = parent
    if not is_self_signed(child):
        raise ChainError(
            f"chain ends at {_name(child)}, which is not a self-signed root; add the certificate of its "
            f"issuer {child.issuer.rfc4514_string()!r}"
        )


def _name(cert: x509.Certificate) -> str:
    return repr(cert.subject.rfc4514_string())


def _unique(certificates: Iterable[x509.Certificate], *, exclude: x509.Certificate) -> list[x509.Certificate]:
    """Candidates without duplicates and without `exclude`, compared by DER encoding, order kept."""
    seen = {_der(exclude)}
    unique: list[x509.Certificate] = []
    for cert in certificates:
        der = _der(cert)
        if der not in seen:
            seen.add(der)
            unique.append(cert)
    return unique


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)
