from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from cryptography.hazmat.primitives import serialization

from caconnector.pki.chain import ensure_complete, is_self_signed, issued_by, load_certificates, order_chain
from caconnector.pki.errors import CertificateFormatError, ChainError

if TYPE_CHECKING:
    from .conftest import Hierarchy

OneLine = Callable[[BaseException], str]


def test_issued_by_checks_name_and_signature(hierarchy: Hierarchy) -> None:
    assert issued_by(hierarchy.leaf, hierarchy.intermediate)
    assert issued_by(hierarchy.intermediate, hierarchy.root)
    assert not issued_by(hierarchy.leaf, hierarchy.root)
    assert not issued_by(hierarchy.intermediate, hierarchy.unrelated)


def test_issued_by_refuses_a_name_match_with_the_wrong_key(hierarchy: Hierarchy) -> None:
    assert hierarchy.impostor.subject == hierarchy.leaf.issuer
    assert not issued_by(hierarchy.leaf, hierarchy.impostor)


def test_is_self_signed(hierarchy: Hierarchy) -> None:
    assert is_self_signed(hierarchy.root)
    assert is_self_signed(hierarchy.unrelated)
    assert not is_self_signed(hierarchy.intermediate)
    assert not is_self_signed(hierarchy.leaf)


def test_order_chain_from_shuffled_candidates(hierarchy: Hierarchy) -> None:
    candidates = [
        hierarchy.root,
        hierarchy.intermediate,
        hierarchy.unrelated,
        hierarchy.impostor,
        hierarchy.leaf,  # the leaf itself, as some CAs return it
    ]
    # Every order, each with a duplicate intermediate appended.
    for order in itertools.permutations(candidates):
        chain = order_chain(hierarchy.leaf, [*order, hierarchy.intermediate])
        assert chain == [hierarchy.intermediate, hierarchy.root], order
        ensure_complete(hierarchy.leaf, chain)


def test_order_chain_returns_a_partial_path(hierarchy: Hierarchy) -> None:
    assert order_chain(hierarchy.leaf, [hierarchy.intermediate, hierarchy.unrelated]) == [
        hierarchy.intermediate
    ]
    assert order_chain(hierarchy.leaf, [hierarchy.root, hierarchy.unrelated]) == []
    assert order_chain(hierarchy.leaf, []) == []


def test_order_chain_of_a_root_is_empty(hierarchy: Hierarchy) -> None:
    assert order_chain(hierarchy.root, [hierarchy.root, hierarchy.intermediate]) == []
    ensure_complete(hierarchy.root, [])


def test_order_chain_accepts_a_generator(hierarchy: Hierarchy) -> None:
    chain = order_chain(hierarchy.leaf, (c for c in (hierarchy.root, hierarchy.intermediate)))
    assert chain == [hierarchy.intermediate, hierarchy.root]


def test_missing_intermediate_is_incomplete(hierarchy: Hierarchy, one_line: OneLine) -> None:
    with pytest.raises(ChainError) as caught:
        ensure_complete(hierarchy.leaf, order_chain(hierarchy.leaf, [hierarchy.root]))
    message = one_line(caught.value)
    assert "not a self-signed root" in message
    assert "CN=Test Intermediate CA" in message


def test_missing_root_is_incomplete(hierarchy: Hierarchy, one_line: OneLine) -> None:
    with pytest.raises(ChainError) as caught:
        ensure_complete(hierarchy.leaf, [hierarchy.intermediate])
    assert "add the certificate of its issuer 'CN=Test Root CA'" in one_line(caught.value)


def test_wrong_order_is_refused(hierarchy: Hierarchy, one_line: OneLine) -> None:
    with pytest.raises(ChainError) as caught:
        ensure_complete(hierarchy.leaf, [hierarchy.root, hierarchy.intermediate])
    assert "did not issue 'CN=leaf.example.com'" in one_line(caught.value)


def test_load_one_or_many_pem_certificates(hierarchy: Hierarchy) -> None:
    certs = [hierarchy.leaf, hierarchy.intermediate, hierarchy.root]
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
    assert load_certificates(pem) == certs
    assert load_certificates(b"\n" + certs[0].public_bytes(serialization.Encoding.PEM)) == certs[:1]


def test_load_der_certificate(hierarchy: Hierarchy) -> None:
    assert load_certificates(hierarchy.leaf.public_bytes(serialization.Encoding.DER)) == [hierarchy.leaf]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "empty"),
        (b"garbage", "not PEM or DER"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "PRIVATE KEY but no CERTIFICATE"),
    ],
    ids=["empty", "garbage", "key"],
)
def test_load_certificates_refuses_bad_input(data: bytes, problem: str, one_line: OneLine) -> None:
    with pytest.raises(CertificateFormatError) as caught:
        load_certificates(data)
    assert problem in one_line(caught.value)


def test_load_certificates_refuses_truncated_input(hierarchy: Hierarchy, one_line: OneLine) -> None:
    pem = hierarchy.leaf.public_bytes(serialization.Encoding.PEM)
    with pytest.raises(CertificateFormatError) as caught:
        load_certificates(pem[: len(pem) // 2])
    assert "truncated or corrupt" in one_line(caught.value)
    der = hierarchy.leaf.public_bytes(serialization.Encoding.DER)
    with pytest.raises(CertificateFormatError) as caught:
        load_certificates(der[:-10])
    assert "truncated or corrupt" in one_line(caught.value)
