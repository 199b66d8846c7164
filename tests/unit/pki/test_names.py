"""The shared name policy: common names, SANs as text, and the host name, e-mail and URI syntax checks."""

from __future__ import annotations

import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from caconnector.pki.names import alt_name_strings, common_name, is_email, is_host_name, is_uri, san_strings


def test_common_name_is_the_first_cn_or_none() -> None:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Corp"),
            x509.NameAttribute(NameOID.COMMON_NAME, "first.example"),
            x509.NameAttribute(NameOID.COMMON_NAME, "second.example"),
        ]
    )
    assert common_name(name) == "first.example"
    assert common_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Corp")])) is None


def test_common_name_keeps_non_ascii_text() -> None:
    cn = x509.NameAttribute(NameOID.COMMON_NAME, "caf\u00e9 CA")
    assert common_name(x509.Name([cn])) == "caf\u00e9 CA"


def test_san_strings_are_openssl_style() -> None:
    names = [
        x509.DNSName("a.example"),
        x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
        x509.RFC822Name("ops@corp.example"),
        x509.UniformResourceIdentifier("spiffe://corp/svc"),
        x509.RegisteredID(NameOID.COMMON_NAME),
    ]
    assert san_strings(names) == [
        "DNS:a.example",
        "IP:10.0.0.1",
        "email:ops@corp.example",
        "URI:spiffe://corp/svc",
        "RegisteredID:<ObjectIdentifier(oid=2.5.4.3, name=commonName)>",
    ]


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("host.example", True),
        ("*.example", True),
        ("xn--caf-dma.example", True),
        ("a" * 63 + ".example", True),
        ("a" * 64 + ".example", False),
        (".".join(["a" * 60] * 5), False),  # over 253 characters
        ("a.*.example", False),  # a wildcard only as the leftmost label
        ("*", False),
        ("-lead.example", False),
        ("trail-.example", False),
        ("under_score.example", False),
        ("caf\u00e9.example", False),  # IDNs in their A-label form only
        ("", False),
        ("dot..example", False),
    ],
)
def test_is_host_name(name: str, valid: bool) -> None:
    assert is_host_name(name) is valid


@pytest.mark.parametrize(
    ("address", "valid"),
    [
        ("ops@corp.example", True),
        ("first.last+tag@corp.example", True),
        ("no-at-sign.example", False),
        ("@corp.example", False),
        ("ops@*.example", False),
        ("ops@bad_host.example", False),
        ("two..dots@corp.example", False),
        ("caf\u00e9@corp.example", False),
    ],
)
def test_is_email(address: str, valid: bool) -> None:
    assert is_email(address) is valid


@pytest.mark.parametrize(
    ("uri", "valid"),
    [
        ("https://corp.example/path?q=1#frag", True),
        ("spiffe://corp/svc", True),
        ("urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66", True),
        ("https://corp.example/a%20b", True),
        ("https://corp.example/a b", False),
        ("https://corp.example/%zz", False),
        ("//corp.example/relative", False),
        ("1http://corp.example", False),
        ("https:", False),
    ],
)
def test_is_uri(uri: str, valid: bool) -> None:
    assert is_uri(uri) is valid


def test_alt_name_strings_read_a_csr_or_a_certificate_and_none_without_the_extension() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a.example")])
    san = x509.SubjectAlternativeName([x509.DNSName("a.example"), x509.DNSName("b.example")])
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    with_san = builder.add_extension(san, critical=False).sign(key, hashes.SHA256())
    assert alt_name_strings(with_san) == ["DNS:a.example", "DNS:b.example"]
    bare = builder.sign(key, hashes.SHA256())
    assert alt_name_strings(bare) == []
