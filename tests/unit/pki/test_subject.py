"""The subject policy: what a CSR's subject may carry, and how the certificate's subject is encoded."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

from caconnector.pki.csr import describe_csr, load_csr
from caconnector.pki.errors import CSRFormatError, CSRSubjectError
from caconnector.pki.subject import RawAttribute, build_subject, checked_subject, read_subject

OneLine = Callable[[BaseException], str]
CN, C, ORG, SERIAL, DC = "2.5.4.3", "2.5.4.6", "2.5.4.10", "2.5.4.5", "0.9.2342.19200300.100.1.25"
UTF8, PRINTABLE, IA5, BMP, UNIVERSAL = 0x0C, 0x13, 0x16, 0x1E, 0x1C


def _one(oid: str, tag: int, value: bytes) -> x509.Name:
    return build_subject([[RawAttribute(oid, tag, value)]])


def _tlv(tag: int, content: bytes) -> bytes:
    assert len(content) < 0x80
    return bytes([tag, len(content)]) + content


def test_printable_values_become_printable_strings_and_others_utf8() -> None:
    subject = build_subject(
        [
            [RawAttribute(C, UTF8, b"DE")],
            [RawAttribute(ORG, BMP, "Zürich".encode("utf-16-be"))],
            [RawAttribute(CN, UNIVERSAL, b"app.example.test".decode().encode("utf-32-be"))],
            [RawAttribute(DC, UTF8, b"example")],
        ]
    )
    types = [(a.oid, a.value, a._type) for a in subject]
    assert types == [
        (NameOID.COUNTRY_NAME, "DE", _ASN1Type.PrintableString),
        (NameOID.ORGANIZATION_NAME, "Zürich", _ASN1Type.UTF8String),
        (NameOID.COMMON_NAME, "app.example.test", _ASN1Type.PrintableString),
        (NameOID.DOMAIN_COMPONENT, "example", _ASN1Type.IA5String),
    ]
    # The DER says so too: PrintableString (0x13) for C, UTF8String (0x0C) for the ORG with an umlaut.
    der = subject.public_bytes()
    assert _tlv(0x13, b"DE") in der
    assert _tlv(0x0C, "Zürich".encode()) in der


def test_an_empty_subject_is_allowed() -> None:
    assert build_subject([]) == x509.Name([])


@pytest.mark.parametrize(
    ("rdns", "words"),
    [
        ([[RawAttribute(CN, 0x05, b"")]], ("CN", "NULL")),
        ([[RawAttribute(CN, 0x03, b"\x00ab")]], ("CN", "BIT STRING")),
        ([[RawAttribute(CN, 0x02, b"\x05")]], ("CN", "INTEGER")),
        ([[RawAttribute(CN, 0x04, b"app")]], ("CN", "OCTET STRING")),
        ([[RawAttribute(CN, 0x14, b"caf\xe9")]], ("CN", "TeletexString")),
        ([[RawAttribute(CN, 0x7F, b"x")]], ("CN", "tag 0x7f")),
        ([[RawAttribute(CN, UTF8, b"\xff\xfe")]], ("CN", "not valid UTF8String")),
        ([[RawAttribute(CN, BMP, b"abc")]], ("CN", "not valid BMPString")),
        ([[RawAttribute(CN, PRINTABLE, b"a@b")]], ("CN", "outside its alphabet")),
        ([[RawAttribute(CN, UTF8, b"a\x00b")]], ("CN", "control characters")),
        ([[RawAttribute(ORG, UTF8, b"line\nbreak")]], ("O", "control characters")),
        ([[RawAttribute(CN, UTF8, "gpj.\u202eexe".encode())]], ("CN", "bidirectional")),
        ([[RawAttribute(CN, UTF8, "a\u2066b".encode())]], ("CN", "bidirectional")),
        ([[RawAttribute(CN, UTF8, b"a" * 65)]], ("CN", "65 characters", "limit of 64")),
        ([[RawAttribute(CN, UTF8, b"a" * 5000)]], ("CN", "5000 characters")),
        ([[RawAttribute(CN, UTF8, b"")]], ("CN", "empty")),
        ([[RawAttribute(ORG, UTF8, b"   ")]], ("O", "empty")),
        ([[RawAttribute(C, PRINTABLE, b"DEU")]], ("C", "two-letter")),
        ([[RawAttribute(C, PRINTABLE, b"de")]], ("C", "two-letter")),
        ([[RawAttribute(C, UTF8, "DÉ".encode())]], ("C", "two-letter")),
        ([[RawAttribute(SERIAL, UTF8, "Nr. ü".encode())]], ("serialNumber", "letters, digits")),
        ([[RawAttribute(DC, UTF8, "bücher".encode())]], ("DC", "ASCII", "xn--")),
        ([[RawAttribute("1.2.840.113549.1.9.1", IA5, b"a@example.test")]], ("emailAddress", "rfc822Name")),
        ([[RawAttribute("1.2.3.4", UTF8, b"x")]], ("1.2.3.4", "use only CN")),
        ([[]], ("empty RDN",)),
        ([[RawAttribute(CN, UTF8, b"a"), RawAttribute(CN, UTF8, b"a")]], ("repeats",)),
    ],
)
def test_what_the_policy_refuses(
    rdns: list[list[RawAttribute]], words: tuple[str, ...], one_line: OneLine
) -> None:
    with pytest.raises(CSRSubjectError) as caught:
        build_subject(rdns)
    message = one_line(caught.value)
    for word in words:
        assert word in message


def test_refusals_never_quote_the_value(one_line: OneLine) -> None:
    with pytest.raises(CSRSubjectError) as caught:
        _one(CN, UTF8, b"secret\x00value")
    assert "secret" not in one_line(caught.value)


def test_upper_bounds_count_characters_and_a_cn_also_bytes(one_line: OneLine) -> None:
    assert _one(ORG, UTF8, ("ü" * 64).encode()).rfc4514_string() == "O=" + "ü" * 64
    assert _one(CN, UTF8, ("ü" * 32).encode()).rfc4514_string() == "CN=" + "ü" * 32
    with pytest.raises(CSRSubjectError) as caught:
        _one(CN, UTF8, ("ü" * 33).encode())
    assert "66 bytes" in one_line(caught.value)


@pytest.mark.parametrize(
    "info",
    [b"", b"\x31\x00", b"\x30\x03\x02\x01\x00", b"\x30\x80\x00\x00", b"\x30\x81\x05\x02\x01\x00\x30\x00"],
    ids=["empty", "a-set", "no-subject", "indefinite-length", "long-form-short-length"],
)
def test_unreadable_request_info_is_a_format_error(info: bytes) -> None:
    with pytest.raises(CSRFormatError, match="subject cannot be read"):
        read_subject(info)


def test_read_subject_returns_types_and_raw_values() -> None:
    name = _tlv(0x30, _tlv(0x31, _tlv(0x30, bytes.fromhex("0603550403") + _tlv(0x04, b"app"))))
    info = _tlv(0x30, _tlv(0x02, b"\x00") + name)
    assert read_subject(info) == [[RawAttribute(CN, 0x04, b"app")]]


def test_load_csr_applies_the_policy_and_describe_shows_the_rebuilt_subject() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "DE", _type=_ASN1Type.UTF8String),
            x509.NameAttribute(NameOID.COMMON_NAME, "app.example.test"),
        ]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    info = describe_csr(load_csr(csr.public_bytes(serialization.Encoding.PEM)))
    assert info.subject == checked_subject(csr)
    assert [a._type for a in info.subject] == [_ASN1Type.PrintableString] * 2

    hostile = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "app\u202eexe")])
    bad = x509.CertificateSigningRequestBuilder().subject_name(hostile).sign(key, hashes.SHA256())
    with pytest.raises(CSRSubjectError, match="bidirectional"):
        load_csr(bad.public_bytes(serialization.Encoding.DER))
