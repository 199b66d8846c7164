"""Loading and checking certificate signing requests, and reading the names they ask for.

`load_csr` is the one gate every CSR passes before it reaches a CA: size, then format, then signature,
then the subject policy (`subject`) and the extension request, then key policy. The order matters: the
cheap size check runs before any parsing, and a subject or key that fails policy is only reported once we
know the requester actually holds the key (the signature verifies). Every way a request can fail is a
`CSRError`: `cryptography` parses parts of a request lazily, on first access, and raises `ValueError`,
`TypeError` or its own exception types there, so every such access in this module is guarded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from caconnector.pki.errors import CSRFormatError, CSRKeyError, CSRSignatureError, CSRTooLargeError
from caconnector.pki.keys import check_key_allowed, key_type_of
from caconnector.pki.names import common_name
from caconnector.pki.subject import checked_subject

# A CSR with a 16384-bit RSA key and a few hundred SANs stays far below this; anything bigger is a
# mistake or an attempt to make the parser work hard.
MAX_CSR_BYTES = 64 * 1024

# "NEW CERTIFICATE REQUEST" is what Netscape-era tools and Windows `certreq` still write.
_CSR_LABELS = (b"CERTIFICATE REQUEST", b"NEW CERTIFICATE REQUEST")
_PEM_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")
_DER_SEQUENCE = b"\x30"  # every DER CSR (and certificate) starts with a SEQUENCE tag
_UNSUPPORTED_ALGORITHM = (
    "CSR uses an unsupported key or signature algorithm; use RSA (2048 bits or more), "
    "EC P-256/P-384/P-521 or Ed25519"
)
_MALFORMED_EXTENSIONS = (
    "CSR has a malformed extension request (subjectAltName or another extension cannot be parsed)"
)


@dataclass(frozen=True)
class CSRInfo:
    """What a CSR asks for, in plain Python values (SANs as text, in the order the CSR lists them)."""

    subject: x509.Name
    common_name: str | None
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    emails: tuple[str, ...]
    uris: tuple[str, ...]
    key_type: str


def load_csr(data: bytes, *, max_bytes: int = MAX_CSR_BYTES) -> x509.CertificateSigningRequest:
    """Parse a PEM or DER CSR and check its signature and key; raise a `CSRError` subclass otherwise."""
    if len(data) > max_bytes:
        raise CSRTooLargeError(
            f"CSR is {len(data)} bytes, over the {max_bytes}-byte limit; send a single certificate request"
        )
    csr = _parse(data)
    try:
        signature_ok = csr.is_signature_valid
    except (UnsupportedAlgorithm, ValueError, TypeError):
        raise CSRKeyError(_UNSUPPORTED_ALGORITHM) from None
    if not signature_ok:
        raise CSRSignatureError(
            "CSR signature does not verify (the request was altered or signed with another key)"
        )
    # The policy reads the subject from the DER itself: `cryptography`'s own reading (`csr.subject`)
    # raises or warns on malformed attributes, so nothing of ours reads it; `describe_csr` gives the
    # subject as the policy rebuilds it.
    checked_subject(csr)
    _extensions(csr)
    check_key_allowed(_public_key(csr))
    return csr


def describe_csr(csr: x509.CertificateSigningRequest) -> CSRInfo:
    """Read the subject (as the subject policy rebuilds it), common name, SANs and key type of a CSR."""
    subject = checked_subject(csr)
    try:
        san = _extensions(csr).get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = x509.SubjectAlternativeName([])
    return CSRInfo(
        subject=subject,
        common_name=common_name(subject),
        dns_names=tuple(san.get_values_for_type(x509.DNSName)),
        ip_addresses=tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress)),
        emails=tuple(san.get_values_for_type(x509.RFC822Name)),
        uris=tuple(san.get_values_for_type(x509.UniformResourceIdentifier)),
        key_type=key_type_of(_public_key(csr)),
    )


def _extensions(csr: x509.CertificateSigningRequest) -> x509.Extensions:
    try:
        return csr.extensions
    except (ValueError, TypeError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
        raise CSRFormatError(_MALFORMED_EXTENSIONS) from None


def _public_key(csr: x509.CertificateSigningRequest) -> PublicKeyTypes:
    try:
        return csr.public_key()
    except (UnsupportedAlgorithm, ValueError, TypeError):
        raise CSRKeyError(_UNSUPPORTED_ALGORITHM) from None


def _parse(data: bytes) -> x509.CertificateSigningRequest:
    if not data.strip():
        raise CSRFormatError("CSR is empty; send a PEM or DER certificate request")
    # Text before the PEM block is tolerated (`openssl req -text` prints the decoded request first),
    # unless the input starts like DER, where the marker could be part of a subject string.
    starts_pem = data.lstrip().startswith(b"-----BEGIN")
    if starts_pem or (b"-----BEGIN" in data and not data.startswith(_DER_SEQUENCE)):
        return _parse_pem(data)
    if data.startswith(_DER_SEQUENCE):
        return _parse_der(data)
    raise CSRFormatError("input is not a PEM or DER certificate request")


def _parse_pem(data: bytes) -> x509.CertificateSigningRequest:
    labels = _PEM_BEGIN.findall(data)
    label = next((found for found in labels if found in _CSR_LABELS), None)
    if label is None:
        if labels:
            other = labels[0].decode("ascii")
            raise CSRFormatError(f"input is a PEM {other}, not a CERTIFICATE REQUEST; send the CSR instead")
        raise CSRFormatError("input is not a PEM or DER certificate request")
    if b"-----END " + label + b"-----" not in data:
        raise CSRFormatError(
            f"CSR PEM is truncated (no END {label.decode('ascii')} line); send the complete request"
        )
    try:
        return x509.load_pem_x509_csr(data)
    except x509.InvalidVersion as exc:
        raise _version_error(exc) from None
    except ValueError:
        raise CSRFormatError(
            "CSR PEM is truncated or corrupt (its base64 body is not a complete certificate request); "
            "send the complete request"
        ) from None


def _parse_der(data: bytes) -> x509.CertificateSigningRequest:
    try:
        return x509.load_der_x509_csr(data)
    except x509.InvalidVersion as exc:
        raise _version_error(exc) from None
    except ValueError:
        pass
    # A common mix-up is uploading the issued certificate instead of the request; say so.
    try:
        x509.load_der_x509_certificate(data)
    except ValueError:
        raise CSRFormatError(
            "CSR DER is truncated or corrupt (not a complete certificate request); send the complete request"
        ) from None
    raise CSRFormatError("input is a DER certificate, not a certificate request; send the CSR instead")


def _version_error(exc: x509.InvalidVersion) -> CSRFormatError:
    # RFC 2986 defines one version, v1, encoded as 0; `cryptography` refuses others with its own type.
    return CSRFormatError(
        f"CSR has version {exc.parsed_version}; the only certificate request version is 0 (v1)"
    )
