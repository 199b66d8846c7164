"""Property tests: whatever bytes `load_csr`, `describe_csr` and the subject policy get, they raise only
the typed `pki` errors (or succeed). Derandomized with a fixed example budget, so CI runs the same cases."""

from __future__ import annotations

import base64
import contextlib
import warnings

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caconnector.pki.csr import describe_csr, load_csr
from caconnector.pki.errors import CSRError
from caconnector.pki.subject import RawAttribute, build_subject, read_subject

EXAMPLES = settings(
    max_examples=400, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
_KEY = ec.derive_private_key(0x1D_8BAD_C5A1, ec.SECP256R1())
_VALID = (
    x509.CertificateSigningRequestBuilder()
    .subject_name(
        x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example"),
                x509.NameAttribute(NameOID.COMMON_NAME, "app.example.test"),
            ]
        )
    )
    .add_extension(x509.SubjectAlternativeName([x509.DNSName("app.example.test")]), critical=False)
    .sign(_KEY, hashes.SHA256())
)
VALID_DER = _VALID.public_bytes(serialization.Encoding.DER)
VALID_PEM = _VALID.public_bytes(serialization.Encoding.PEM)


def _load_and_describe(data: bytes) -> None:
    # Warnings are errors under pytest: a `cryptography` warning escaping load_csr would fail too.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            describe_csr(load_csr(data))
        except CSRError as exc:
            assert str(exc)
            assert "\n" not in str(exc)


@EXAMPLES
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_give_only_csr_errors(data: bytes) -> None:
    _load_and_describe(data)


@EXAMPLES
@given(st.binary(max_size=512))
def test_arbitrary_bytes_after_a_sequence_tag_give_only_csr_errors(data: bytes) -> None:
    _load_and_describe(b"\x30" + data)


@EXAMPLES
@given(st.lists(st.tuples(st.integers(0, len(VALID_DER) - 1), st.integers(0, 255)), min_size=1, max_size=6))
def test_mutated_der_gives_only_csr_errors(changes: list[tuple[int, int]]) -> None:
    der = bytearray(VALID_DER)
    for offset, value in changes:
        der[offset] = value
    _load_and_describe(bytes(der))


@EXAMPLES
@given(st.integers(0, len(VALID_DER)), st.binary(max_size=64))
def test_truncated_or_extended_der_gives_only_csr_errors(cut: int, tail: bytes) -> None:
    _load_and_describe(VALID_DER[:cut] + tail)


@EXAMPLES
@given(st.integers(0, len(VALID_PEM) - 1), st.binary(min_size=1, max_size=8))
def test_mutated_pem_gives_only_csr_errors(offset: int, replacement: bytes) -> None:
    _load_and_describe(VALID_PEM[:offset] + replacement + VALID_PEM[offset + len(replacement) :])


@EXAMPLES
@given(st.binary(max_size=600))
def test_pem_wrapped_garbage_gives_only_csr_errors(body: bytes) -> None:
    encoded = base64.encodebytes(body)
    _load_and_describe(
        b"-----BEGIN CERTIFICATE REQUEST-----\n" + encoded + b"-----END CERTIFICATE REQUEST-----\n"
    )


@EXAMPLES
@given(st.binary(max_size=1024))
def test_read_subject_of_any_request_info_gives_only_csr_errors(info: bytes) -> None:
    with contextlib.suppress(CSRError):
        read_subject(info)


_OIDS = st.sampled_from(
    ["2.5.4.3", "2.5.4.6", "2.5.4.10", "2.5.4.5", "0.9.2342.19200300.100.1.25", "1.2.3.4"]
)
_TAGS = st.sampled_from([0x0C, 0x13, 0x16, 0x1E, 0x1C, 0x14, 0x04, 0x05, 0x02, 0x03, 0x30])
_VALUES = st.one_of(
    st.binary(max_size=80), st.text(max_size=80).map(lambda text: text.encode("utf-8", "replace"))
)
_ATTRIBUTES = st.builds(RawAttribute, oid=_OIDS, tag=_TAGS, value=_VALUES)


@EXAMPLES
@given(st.lists(st.lists(_ATTRIBUTES, max_size=3), max_size=4))
def test_the_subject_policy_builds_a_clean_name_or_refuses(rdns: list[list[RawAttribute]]) -> None:
    try:
        subject = build_subject(rdns)
    except CSRError as exc:
        assert str(exc)
        return
    for attribute in subject:
        value = attribute.value
        assert isinstance(value, str)
        assert value.strip()
        assert all(ord(char) >= 0x20 and char != "\x7f" for char in value)
        assert not set(value) & set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
    subject.public_bytes()  # encodable as it stands


@pytest.mark.parametrize("data", [VALID_DER, VALID_PEM])
def test_the_seed_request_itself_is_accepted(data: bytes) -> None:
    # Guards the properties above: mutants of a request that never loaded would test only the parser.
    assert describe_csr(load_csr(data)).common_name == "app.example.test"
