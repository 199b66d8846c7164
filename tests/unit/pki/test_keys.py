from __future__ import annotations

from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x25519

from caconnector.pki.errors import CertificateFormatError, CSRKeyError
from caconnector.pki.keys import (
    KEY_TYPES,
    check_key_allowed,
    generate_private_key,
    key_type_of,
    load_private_key,
    private_key_pem,
    public_keys_equal,
    signature_hash_for,
)


@pytest.mark.parametrize("key_type", [t for t in KEY_TYPES if t not in ("rsa-3072", "rsa-4096")])
def test_generated_keys_have_the_requested_type(key_type: str) -> None:
    key = generate_private_key(key_type)
    assert key_type_of(key.public_key()) == key_type
    assert check_key_allowed(key.public_key()) == key_type


@pytest.mark.slow
@pytest.mark.parametrize("key_type", ["rsa-3072", "rsa-4096"])
def test_generated_large_rsa_keys(key_type: str) -> None:
    assert key_type_of(generate_private_key(key_type).public_key()) == key_type


def test_unknown_key_type_names_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="unknown key type 'rsa-1024'; use one of: ec-p256"):
        generate_private_key("rsa-1024")


def test_key_type_of_other_keys(weak_rsa_key: rsa.RSAPrivateKey) -> None:
    assert key_type_of(ec.generate_private_key(ec.SECP256K1()).public_key()) == "ec-secp256k1"
    assert key_type_of(ed448.Ed448PrivateKey.generate().public_key()) == "ed448"
    assert key_type_of(x25519.X25519PrivateKey.generate().public_key()) == "x25519"
    assert key_type_of(weak_rsa_key.public_key()) == "rsa-1024"


@pytest.mark.slow
def test_key_type_of_dsa() -> None:
    assert key_type_of(dsa.generate_private_key(2048).public_key()) == "dsa-2048"


def test_small_rsa_is_refused(
    weak_rsa_key: rsa.RSAPrivateKey, one_line: Callable[[BaseException], str]
) -> None:
    with pytest.raises(CSRKeyError) as caught:
        check_key_allowed(weak_rsa_key.public_key())
    assert one_line(caught.value) == "CSR key is RSA 1024 bits; RSA keys must be at least 2048 bits"


def test_other_curves_and_types_are_refused(one_line: Callable[[BaseException], str]) -> None:
    with pytest.raises(CSRKeyError) as caught:
        check_key_allowed(ec.generate_private_key(ec.SECP256K1()).public_key())
    assert "secp256k1" in one_line(caught.value)
    with pytest.raises(CSRKeyError) as caught:
        check_key_allowed(ed448.Ed448PrivateKey.generate().public_key())
    assert "ed448 is not allowed" in one_line(caught.value)


@pytest.mark.parametrize(
    "encoding", [serialization.Encoding.PEM, serialization.Encoding.DER], ids=["pem", "der"]
)
@pytest.mark.parametrize("key_type", ["ec-p384", "ed25519"])
def test_private_key_round_trips(key_type: str, encoding: serialization.Encoding) -> None:
    key = generate_private_key(key_type)
    data = key.private_bytes(encoding, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    loaded = load_private_key(data)
    assert public_keys_equal(loaded.public_key(), key.public_key())


def test_private_key_pem_is_unencrypted_pkcs8(rsa_key: rsa.RSAPrivateKey) -> None:
    pem = private_key_pem(rsa_key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert public_keys_equal(load_private_key(pem).public_key(), rsa_key.public_key())


def test_traditional_rsa_pem_loads(rsa_key: rsa.RSAPrivateKey) -> None:
    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    assert isinstance(load_private_key(pem), rsa.RSAPrivateKey)


def test_encrypted_key_is_refused_without_echoing_it(one_line: Callable[[BaseException], str]) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    with pytest.raises(CertificateFormatError) as caught:
        load_private_key(pem)
    message = one_line(caught.value)
    assert "encrypted" in message
    assert "BEGIN" not in message


@pytest.mark.parametrize("data", [b"", b"garbage", b"\x30\x82\x01\x00secret"], ids=["empty", "text", "der"])
def test_bad_key_input_is_refused_without_echoing_it(
    data: bytes, one_line: Callable[[BaseException], str]
) -> None:
    with pytest.raises(CertificateFormatError) as caught:
        load_private_key(data)
    message = one_line(caught.value)
    assert "not an unencrypted PEM or DER key" in message
    assert "secret" not in message
    assert "garbage" not in message
    assert caught.value.__cause__ is None


def test_truncated_pem_key_never_appears_in_the_message(
    one_line: Callable[[BaseException], str],
) -> None:
    pem = private_key_pem(generate_private_key("ec-p256"))
    truncated = pem[: len(pem) // 2]
    with pytest.raises(CertificateFormatError) as caught:
        load_private_key(truncated)
    body = truncated.splitlines()[1].decode()
    assert body not in one_line(caught.value)


def test_unsupported_private_key_type_is_refused() -> None:
    pem = ed448.Ed448PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(CertificateFormatError, match="ed448 is not supported"):
        load_private_key(pem)


@pytest.mark.parametrize(
    ("key_type", "expected"),
    [
        ("ec-p256", hashes.SHA256),
        ("ec-p384", hashes.SHA384),
        ("ec-p521", hashes.SHA512),
        ("rsa-2048", hashes.SHA256),
    ],
)
def test_signature_hash_matches_the_key(key_type: str, expected: type[hashes.HashAlgorithm]) -> None:
    assert isinstance(signature_hash_for(generate_private_key(key_type)), expected)


def test_ed25519_signs_without_a_hash() -> None:
    assert signature_hash_for(ed25519.Ed25519PrivateKey.generate()) is None


def test_public_keys_equal() -> None:
    a = generate_private_key("ec-p256")
    b = generate_private_key("ec-p256")
    assert public_keys_equal(a.public_key(), a.public_key())
    assert not public_keys_equal(a.public_key(), b.public_key())
    assert not public_keys_equal(a.public_key(), ed25519.Ed25519PrivateKey.generate().public_key())
