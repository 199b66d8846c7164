"""The on-behalf-of wrapper: parsed back with asn1crypto and its signature checked with cryptography,
independently of the module's own reader; then the reader against good and tampered requests."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from caconnector.backends.msca.cms import (
    CERTIFICATE_REQUEST_AGENT,
    ENROLLMENT_NAME_VALUE_PAIR,
    CMSError,
    EnrollmentNameValuePair,
    has_agent_eku,
    is_cms,
    on_behalf_of,
    parse_on_behalf_of,
)
from caconnector.testing import make_csr

AgentKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _agent(key: AgentKey, *, eku: bool = True) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agent")])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(0x1234ABCD)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage([CERTIFICATE_REQUEST_AGENT]), critical=False)
    return builder.sign(key, hashes.SHA256())


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_the_wrapper_is_signed_data_over_the_pkcs10_naming_the_requester(rsa_key: rsa.RSAPrivateKey) -> None:
    agent = _agent(rsa_key)
    csr = make_csr("web.example.test")
    der = on_behalf_of(csr, "CORP\\alice", agent, rsa_key)

    info = cms.ContentInfo.load(der)
    assert info["content_type"].native == "signed_data"
    signed = info["content"]
    content = signed["encap_content_info"]["content"].native
    assert signed["encap_content_info"]["content_type"].native == "data"
    assert content == csr.public_bytes(serialization.Encoding.DER)
    assert [c.chosen.dump() for c in signed["certificates"]] == [
        agent.public_bytes(serialization.Encoding.DER)
    ]
    (signer,) = signed["signer_infos"]
    assert signer["sid"].chosen["serial_number"].native == agent.serial_number
    attributes = {a["type"].dotted: a["values"] for a in signer["signed_attrs"]}
    pairs = [EnrollmentNameValuePair.load(v.dump()).native for v in attributes[ENROLLMENT_NAME_VALUE_PAIR]]
    assert pairs == [{"name": "requestername", "value": "CORP\\alice"}]
    digest = signer["signed_attrs"][
        [a["type"].native for a in signer["signed_attrs"]].index("message_digest")
    ]
    assert digest["values"][0].native == hashlib.sha256(content).digest()
    # RFC 5652 5.4: the signature is over the DER SET OF the attributes (tag 0x31, not the [0] of the field).
    signed_bytes = b"\x31" + signer["signed_attrs"].dump()[1:]
    rsa_key.public_key().verify(signer["signature"].native, signed_bytes, padding.PKCS1v15(), hashes.SHA256())


def test_the_reader_verifies_the_signature_and_finds_the_requester(rsa_key: rsa.RSAPrivateKey) -> None:
    agent = _agent(rsa_key)
    csr = make_csr()
    der = on_behalf_of(csr, "CORP\\bob", agent, rsa_key)
    assert is_cms(der)
    assert not is_cms(csr.public_bytes(serialization.Encoding.DER))
    parsed = parse_on_behalf_of(der)
    assert (parsed.csr, parsed.agent, parsed.requester) == (csr, agent, "CORP\\bob")
    assert has_agent_eku(parsed.agent)
    assert not has_agent_eku(_agent(rsa_key, eku=False))


def test_an_ec_agent_signs_with_ecdsa() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    der = on_behalf_of(make_csr(), "CORP\\carol", _agent(key), key)
    assert parse_on_behalf_of(der).requester == "CORP\\carol"


def test_a_request_signed_by_another_key_or_tampered_does_not_verify(rsa_key: rsa.RSAPrivateKey) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    # The agent certificate says rsa_key, the signature is other's.
    forged = on_behalf_of(make_csr(), "CORP\\mallory", _agent(rsa_key), other)
    with pytest.raises(CMSError, match="signature does not verify"):
        parse_on_behalf_of(forged)
    good = on_behalf_of(make_csr("a.example.test"), "CORP\\alice", _agent(rsa_key), rsa_key)
    tampered = good.replace(b"a.example.test", b"b.example.test")
    with pytest.raises(CMSError, match="message digest"):
        parse_on_behalf_of(tampered)
    with pytest.raises(CMSError):
        parse_on_behalf_of(b"\x30\x03\x02\x01\x01")
