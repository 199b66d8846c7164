from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7

from caconnector.pki.formats import OutputFormat, encode_certificate, media_type

if TYPE_CHECKING:
    from .conftest import Hierarchy


def test_pem_is_the_leaf_only(hierarchy: Hierarchy) -> None:
    data = encode_certificate(hierarchy.leaf, [hierarchy.intermediate, hierarchy.root], OutputFormat.PEM)
    assert x509.load_pem_x509_certificates(data) == [hierarchy.leaf]


def test_pem_chain_is_leaf_then_issuers(hierarchy: Hierarchy) -> None:
    chain = [hierarchy.intermediate, hierarchy.root]
    data = encode_certificate(hierarchy.leaf, chain, OutputFormat.PEM_CHAIN)
    assert x509.load_pem_x509_certificates(data) == [hierarchy.leaf, *chain]


def test_chain_is_the_issuers_only(hierarchy: Hierarchy) -> None:
    chain = [hierarchy.intermediate, hierarchy.root]
    data = encode_certificate(hierarchy.leaf, chain, OutputFormat.CHAIN)
    assert x509.load_pem_x509_certificates(data) == chain


def test_der_is_the_leaf(hierarchy: Hierarchy) -> None:
    data = encode_certificate(hierarchy.leaf, [hierarchy.intermediate], OutputFormat.DER)
    assert x509.load_der_x509_certificate(data) == hierarchy.leaf


def test_pkcs7_holds_leaf_and_chain(hierarchy: Hierarchy) -> None:
    chain = [hierarchy.intermediate, hierarchy.root]
    data = encode_certificate(hierarchy.leaf, chain, OutputFormat.PKCS7)
    loaded = pkcs7.load_der_pkcs7_certificates(data)
    # `certificates` is a SET OF, which DER sorts by encoding: the order is not ours to choose.
    assert len(loaded) == 3
    assert set(loaded) == {hierarchy.leaf, *chain}


def test_formats_parse_from_their_names() -> None:
    assert OutputFormat("pem-chain") is OutputFormat.PEM_CHAIN
    assert [str(f) for f in OutputFormat] == ["pem", "pem-chain", "chain", "der", "pkcs7"]


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        (OutputFormat.PEM, "application/pem-certificate-chain"),
        (OutputFormat.PEM_CHAIN, "application/pem-certificate-chain"),
        (OutputFormat.CHAIN, "application/pem-certificate-chain"),
        (OutputFormat.DER, "application/pkix-cert"),
        (OutputFormat.PKCS7, "application/pkcs7-mime"),
    ],
)
def test_media_types(fmt: OutputFormat, expected: str) -> None:
    assert media_type(fmt) == expected


@pytest.mark.slow
def test_openssl_verifies_the_pem_chain(hierarchy: Hierarchy, tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not on PATH")
    chain = [hierarchy.intermediate, hierarchy.root]
    root = tmp_path / "root.pem"
    root.write_bytes(encode_certificate(hierarchy.root, [], OutputFormat.PEM))
    bundle = tmp_path / "fullchain.pem"
    bundle.write_bytes(encode_certificate(hierarchy.leaf, chain, OutputFormat.PEM_CHAIN))
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(encode_certificate(hierarchy.leaf, chain, OutputFormat.PEM))
    result = subprocess.run(
        [openssl, "verify", "-CAfile", str(root), "-untrusted", str(bundle), str(leaf)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert result.stdout.strip().endswith(": OK")
