"""The names in certificates and requests: the common name, SAN entries as text, and the syntax checks
for host names, e-mail addresses and URIs (RFC 5280 4.2.1.6). Pure functions, one copy for every
backend and the manager."""

from __future__ import annotations

import re
from collections.abc import Iterable

from cryptography import x509
from cryptography.x509.oid import NameOID

# RFC 5280 4.2.1.6 wants dNSName in the preferred name syntax (letters, digits, hyphens; IDNs as A-labels).
_DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_MAX_DNS_NAME = 253
_EMAIL_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
# RFC 3986 section 3: a scheme, then unreserved, reserved and %-encoded characters only.
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})+$")
_SAN_PREFIXES: tuple[tuple[type[x509.GeneralName], str], ...] = (
    (x509.DNSName, "DNS"),
    (x509.IPAddress, "IP"),
    (x509.RFC822Name, "email"),
    (x509.UniformResourceIdentifier, "URI"),
)


def common_name(name: x509.Name) -> str | None:
    """The first common name of a subject or issuer, or None when it has none."""
    attributes = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attributes:
        return None
    value = attributes[0].value
    # cryptography types attribute values as str | bytes; only bit-string attributes are bytes.
    return value if isinstance(value, str) else value.decode("utf-8", errors="replace")


def san_strings(names: Iterable[x509.GeneralName]) -> list[str]:
    """Subject alternative names as text, OpenSSL style: `DNS:a.example`, `IP:10.0.0.1`, ..."""
    out = []
    for name in names:
        prefix = next((p for cls, p in _SAN_PREFIXES if isinstance(name, cls)), type(name).__name__)
        out.append(f"{prefix}:{name.value}")
    return out


def alt_name_strings(signed: x509.Certificate | x509.CertificateSigningRequest) -> list[str]:
    """A certificate's or a CSR's subject alternative names as `san_strings` writes them; none without
    the extension."""
    try:
        san = signed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return san_strings(san)


def is_host_name(name: str) -> bool:
    """A dNSName in the preferred name syntax, optionally with a leading wildcard label."""
    labels = name.split(".")
    # A leading "*" label is not RFC 5280 syntax, but TLS clients accept it (RFC 6125) and operators need
    # wildcard certificates; anywhere else it is refused.
    if labels[0] == "*" and len(labels) > 1:
        labels = labels[1:]
    return len(name) <= _MAX_DNS_NAME and all(_DNS_LABEL.match(label) for label in labels)


def is_email(address: str) -> bool:
    """An rfc822Name: RFC 5280 4.2.1.6 asks for an RFC 5322 addr-spec; we take its dot-atom form, which
    every mailer handles, with a host name as the domain."""
    local, at, domain = address.rpartition("@")
    return bool(at) and bool(_EMAIL_LOCAL.match(local)) and "*" not in domain and is_host_name(domain)


def is_uri(uri: str) -> bool:
    """An absolute URI of URI characters only (RFC 3986), others %-encoded."""
    return bool(_URI.match(uri))
