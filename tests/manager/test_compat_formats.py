"""The compatible API's collect formats, over a chain of two issuers (the local CA's has one)."""

from __future__ import annotations

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7

from caconnector.manager.compat.formats import BINARY, CollectFormat, encode


def _chain() -> tuple[x509.Certificate, list[x509.Certificate]]:
    root = trustme.CA()
    intermediate = root.create_child_ca()
    issued = intermediate.issue_cert("app.example.test")
    leaf = x509.load_pem_x509_certificate(issued.cert_chain_pems[0].bytes())
    issuers = [x509.load_pem_x509_certificate(ca.cert_pem.bytes()) for ca in (intermediate, root)]
    return leaf, issuers


LEAF, (INTERMEDIATE, ROOT) = _chain()


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        (CollectFormat.X509, [LEAF, INTERMEDIATE, ROOT]),
        (CollectFormat.PEM_IA, [LEAF, INTERMEDIATE, ROOT]),
        (CollectFormat.X509_CO, [LEAF]),
        (CollectFormat.PEM_CO, [LEAF]),
        (CollectFormat.X509_IO, [ROOT, INTERMEDIATE]),
        (CollectFormat.X509_IOR, [INTERMEDIATE, ROOT]),
        (CollectFormat.PEM, [ROOT, INTERMEDIATE, LEAF]),
    ],
)
def test_pem_formats_hold_their_certificates_in_their_order(
    fmt: CollectFormat, expected: list[x509.Certificate]
) -> None:
    body, media_type = encode(LEAF, [INTERMEDIATE, ROOT], fmt)
    assert x509.load_pem_x509_certificates(body) == expected
    assert media_type == "application/x-pem-file"


def test_pkcs7_formats_hold_the_whole_chain() -> None:
    armored, _ = encode(LEAF, [INTERMEDIATE, ROOT], CollectFormat.BASE64)
    binary, media_type = encode(LEAF, [INTERMEDIATE, ROOT], CollectFormat.BIN)
    assert armored.startswith(b"-----BEGIN PKCS7-----")
    assert set(pkcs7.load_pem_pkcs7_certificates(armored)) == {LEAF, INTERMEDIATE, ROOT}
    assert set(pkcs7.load_der_pkcs7_certificates(binary)) == {LEAF, INTERMEDIATE, ROOT}
    # Sent as ISO-8859-1 text: every byte survives the client's decode and our encode back.
    assert media_type == BINARY and binary.decode("latin-1").encode("latin-1") == binary
