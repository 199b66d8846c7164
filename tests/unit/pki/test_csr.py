from __future__ import annotations

import base64
import ipaddress
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtensionOID

from caconnector.pki.csr import MAX_CSR_BYTES, describe_csr, load_csr
from caconnector.pki.errors import (
    CSRError,
    CSRFormatError,
    CSRKeyError,
    CSRSignatureError,
    CSRTooLargeError,
    PKIError,
)

if TYPE_CHECKING:
    from .conftest import Hierarchy, MakeCSR

OneLine = Callable[[BaseException], str]


def _pem(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.PEM)


def _der(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.DER)


def test_error_tree() -> None:
    for error in (CSRFormatError, CSRSignatureError, CSRKeyError, CSRTooLargeError):
        assert issubclass(error, CSRError)
    assert issubclass(CSRError, PKIError)
    assert issubclass(PKIError, ValueError)


def test_pki_error_messages_stay_on_one_line() -> None:
    assert str(PKIError("first line\nsecond line")) == "first line second line"


def test_pem_csr_is_accepted(make_csr: MakeCSR) -> None:
    csr = make_csr()
    assert load_csr(_pem(csr)) == csr


def test_der_csr_is_accepted(make_csr: MakeCSR) -> None:
    csr = make_csr()
    assert load_csr(_der(csr)) == csr


def test_pem_with_whitespace_and_old_header_is_accepted(make_csr: MakeCSR) -> None:
    csr = make_csr()
    pem = _pem(csr).replace(b"CERTIFICATE REQUEST", b"NEW CERTIFICATE REQUEST")
    assert load_csr(b"\n\n  " + pem + b"\n  \n") == csr
    assert load_csr(pem.replace(b"\n", b"\r\n")) == csr


def test_pem_after_text_is_accepted(make_csr: MakeCSR) -> None:
    csr = make_csr()
    assert load_csr(b"Certificate Request:\n    Data: ...\n" + _pem(csr)) == csr


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "CSR is empty"),
        (b" \n\t", "CSR is empty"),
        (b"this is not a certificate request", "not a PEM or DER certificate request"),
        (b"\x00\x01\x02\xff" * 20, "not a PEM or DER certificate request"),
        (b"\x30\x03\x02\x01\x00", "DER is truncated or corrupt"),
        (b"-----BEGIN SOMETHING-----\nAAAA\n-----END SOMETHING-----\n", "PEM SOMETHING, not a"),
    ],
    ids=["empty", "whitespace", "text", "binary", "der-garbage", "other-pem"],
)
def test_garbage_is_a_format_error(data: bytes, problem: str, one_line: OneLine) -> None:
    with pytest.raises(CSRFormatError) as caught:
        load_csr(data)
    assert problem in one_line(caught.value)


def test_truncated_pem_is_a_format_error(make_csr: MakeCSR, one_line: OneLine) -> None:
    pem = _pem(make_csr())
    # Cut in the middle of the base64 body: no END line at all.
    with pytest.raises(CSRFormatError) as caught:
        load_csr(pem[: len(pem) // 2])
    assert "truncated" in one_line(caught.value)


def test_pem_with_missing_body_lines_is_a_format_error(make_csr: MakeCSR, one_line: OneLine) -> None:
    lines = _pem(make_csr()).splitlines(keepends=True)
    # Drop a line from the middle of the body: the framing is intact, the DER inside is short.
    damaged = b"".join(lines[:2] + lines[3:])
    with pytest.raises(CSRFormatError) as caught:
        load_csr(damaged)
    assert "truncated or corrupt" in one_line(caught.value)


def test_truncated_der_is_a_format_error(make_csr: MakeCSR, one_line: OneLine) -> None:
    der = _der(make_csr())
    with pytest.raises(CSRFormatError) as caught:
        load_csr(der[: len(der) // 2])
    assert "truncated or corrupt" in one_line(caught.value)


def test_certificate_instead_of_csr_says_so(hierarchy: Hierarchy, one_line: OneLine) -> None:
    pem = hierarchy.leaf.public_bytes(serialization.Encoding.PEM)
    with pytest.raises(CSRFormatError) as caught:
        load_csr(pem)
    assert "PEM CERTIFICATE, not a CERTIFICATE REQUEST" in one_line(caught.value)
    der = hierarchy.leaf.public_bytes(serialization.Encoding.DER)
    with pytest.raises(CSRFormatError) as caught:
        load_csr(der)
    assert "DER certificate, not a certificate request" in one_line(caught.value)


@pytest.mark.parametrize("encode", [_pem, _der], ids=["pem", "der"])
def test_altered_csr_fails_its_signature(
    make_csr: MakeCSR, encode: Callable[[x509.CertificateSigningRequest], bytes], one_line: OneLine
) -> None:
    csr = make_csr(common_name="www.example.com")
    der = _der(csr)
    # Change the requested name after signing: still well-formed, but the signature no longer matches.
    altered = x509.load_der_x509_csr(der.replace(b"www.example.com", b"www.examp1e.com"))
    with pytest.raises(CSRSignatureError) as caught:
        load_csr(encode(altered))
    assert one_line(caught.value) == (
        "CSR signature does not verify (the request was altered or signed with another key)"
    )


def test_flipped_signature_byte_fails(make_csr: MakeCSR) -> None:
    csr = make_csr(key=ed25519.Ed25519PrivateKey.generate())
    der = bytearray(_der(csr))
    der[-1] ^= 0x01  # an Ed25519 signature is the last 64 bytes of the DER
    with pytest.raises(CSRSignatureError):
        load_csr(bytes(der))


def test_rsa_1024_is_refused(make_csr: MakeCSR, weak_rsa_key: rsa.RSAPrivateKey, one_line: OneLine) -> None:
    csr = make_csr(key=weak_rsa_key)
    with pytest.raises(CSRKeyError) as caught:
        load_csr(_pem(csr))
    assert one_line(caught.value) == "CSR key is RSA 1024 bits; RSA keys must be at least 2048 bits"


def test_secp256k1_is_refused(make_csr: MakeCSR, one_line: OneLine) -> None:
    csr = make_csr(key=ec.generate_private_key(ec.SECP256K1()))
    with pytest.raises(CSRKeyError) as caught:
        load_csr(_pem(csr))
    assert "secp256k1" in one_line(caught.value)


@pytest.mark.parametrize(
    "data",
    [b"A" * (MAX_CSR_BYTES + 1), b"-----BEGIN CERTIFICATE REQUEST-----\n" + b"QUFB\n" * 20_000],
    ids=["garbage", "pem-shaped"],
)
def test_oversized_input_is_refused_before_parsing(data: bytes, one_line: OneLine) -> None:
    with pytest.raises(CSRTooLargeError) as caught:
        load_csr(data)
    assert f"over the {MAX_CSR_BYTES}-byte limit" in one_line(caught.value)


def test_size_limit_can_be_lowered(make_csr: MakeCSR) -> None:
    pem = _pem(make_csr())
    with pytest.raises(CSRTooLargeError):
        load_csr(pem, max_bytes=len(pem) - 1)
    assert load_csr(pem, max_bytes=len(pem))


def test_accepted_key_types(make_csr: MakeCSR, rsa_key: rsa.RSAPrivateKey) -> None:
    keys = [
        (rsa_key, "rsa-2048"),
        (ec.generate_private_key(ec.SECP256R1()), "ec-p256"),
        (ec.generate_private_key(ec.SECP384R1()), "ec-p384"),
        (ec.generate_private_key(ec.SECP521R1()), "ec-p521"),
        (ed25519.Ed25519PrivateKey.generate(), "ed25519"),
    ]
    for key, key_type in keys:
        csr = load_csr(_pem(make_csr(key=key)))
        assert describe_csr(csr).key_type == key_type


def test_describe_reads_all_san_types(make_csr: MakeCSR) -> None:
    csr = make_csr(
        common_name="www.example.com",
        sans=[
            x509.DNSName("www.example.com"),
            x509.DNSName("example.com"),
            x509.IPAddress(ipaddress.ip_address("192.0.2.10")),
            x509.IPAddress(ipaddress.ip_address("2001:db8::1")),
            x509.RFC822Name("admin@example.com"),
            x509.UniformResourceIdentifier("spiffe://example.com/service"),
        ],
    )
    info = describe_csr(load_csr(_pem(csr)))
    assert info.common_name == "www.example.com"
    assert info.subject == csr.subject
    assert info.dns_names == ("www.example.com", "example.com")
    assert info.ip_addresses == ("192.0.2.10", "2001:db8::1")
    assert info.emails == ("admin@example.com",)
    assert info.uris == ("spiffe://example.com/service",)
    assert info.key_type == "ec-p256"


def test_describe_without_sans_or_common_name(make_csr: MakeCSR) -> None:
    info = describe_csr(make_csr(common_name=None))
    assert info.common_name is None
    assert info.subject == x509.Name([])
    assert (info.dns_names, info.ip_addresses, info.emails, info.uris) == ((), (), (), ())


def test_describe_refuses_a_malformed_san(make_csr: MakeCSR, one_line: OneLine) -> None:
    broken = x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x30\x03garbage")
    csr = make_csr(extensions=[broken])
    with pytest.raises(CSRFormatError) as caught:
        describe_csr(csr)
    assert "malformed extension request" in one_line(caught.value)


def test_signature_hash_used_by_fixture_is_sane(make_csr: MakeCSR) -> None:
    csr = make_csr(key=ec.generate_private_key(ec.SECP384R1()))
    assert isinstance(csr.signature_hash_algorithm, hashes.SHA384)


@pytest.mark.parametrize("version", [1, 2, 5, 127])
def test_a_request_version_other_than_0_is_a_format_error(
    make_csr: MakeCSR, version: int, one_line: OneLine
) -> None:
    # Unsigned on purpose (the signature no longer covers the changed version): the version is read first.
    der = _der(make_csr()).replace(b"\x02\x01\x00", b"\x02\x01" + bytes([version]), 1)
    for data in (der, _pem_of(der)):
        with pytest.raises(CSRFormatError) as caught:
            load_csr(data)
        assert f"version {version}" in one_line(caught.value)


def _pem_of(der: bytes) -> bytes:
    body = base64.encodebytes(der)
    return b"-----BEGIN CERTIFICATE REQUEST-----\n" + body + b"-----END CERTIFICATE REQUEST-----\n"
