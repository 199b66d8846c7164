"""The on-behalf-of request: a PKCS#10 wrapped in a CMS SignedData signed with the Enrollment Agent key.

AD CS reads the request as "CMS with PKCS #10" ([MS-WCCE] 2.2.2.6.2 and 3.2.1.4.2.1.4): the content is
the DER PKCS#10 as id-data, the signer is the Enrollment Agent certificate (carried in `certificates`), and
the requester's name travels as a signed enrollment name-value pair (szOID_ENROLLMENT_NAME_VALUE_PAIR,
1.3.6.1.4.1.311.13.2.1) named `requestername`. The CA checks the signature, that the signer's certificate
carries the Certificate Request Agent EKU, and issues to the named requester.

`parse_on_behalf_of` reads such a request back and verifies it: the tests and the fake CA use it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from asn1crypto import algos, cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

ENROLLMENT_NAME_VALUE_PAIR = "1.3.6.1.4.1.311.13.2.1"
CERTIFICATE_REQUEST_AGENT = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.1")
REQUESTER_NAME = "requestername"

AgentKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class EnrollmentNameValuePair(core.Sequence):  # type: ignore[misc]  # asn1crypto is untyped
    """[MS-WCCE] 2.2.2.7.10 EnrollmentNameValuePair ::= SEQUENCE { name BMPString, value BMPString }."""

    _fields = [("name", core.BMPString), ("value", core.BMPString)]  # noqa: RUF012  (asn1crypto's schema)


class EnrollmentNameValuePairs(core.SetOf):  # type: ignore[misc]  # asn1crypto is untyped
    _child_spec = EnrollmentNameValuePair


class CMSError(ValueError):
    """An on-behalf-of request that does not parse or verify; the message says which part."""


def has_agent_eku(certificate: x509.Certificate) -> bool:
    try:
        usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return CERTIFICATE_REQUEST_AGENT in usages


def _digest_name(key: AgentKey) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        return "sha384"
    return "sha256"


def on_behalf_of(
    csr: x509.CertificateSigningRequest,
    requester: str,
    agent_certificate: x509.Certificate,
    agent_key: AgentKey,
) -> bytes:
    """The DER ContentInfo of a SignedData over `csr`, signed by the agent, naming `requester`."""
    content = csr.public_bytes(serialization.Encoding.DER)
    digest_name = _digest_name(agent_key)
    digest = hashlib.new(digest_name, content).digest()
    pair = EnrollmentNameValuePair({"name": REQUESTER_NAME, "value": requester})
    signed_attrs = cms.CMSAttributes(
        [
            cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
            cms.CMSAttribute({"type": "message_digest", "values": [digest]}),
            # asn1crypto does not know the Microsoft attribute: its values are given as parsed DER.
            cms.CMSAttribute({"type": ENROLLMENT_NAME_VALUE_PAIR, "values": [core.Any.load(pair.dump())]}),
        ]
    )
    # The signature covers the DER of the attributes as a SET OF (RFC 5652 5.4), not their [0] form.
    to_sign = signed_attrs.dump()
    hash_algorithm = hashes.SHA384() if digest_name == "sha384" else hashes.SHA256()
    if isinstance(agent_key, rsa.RSAPrivateKey):
        signature = agent_key.sign(to_sign, padding.PKCS1v15(), hash_algorithm)
        signature_algorithm = "rsassa_pkcs1v15"
    else:
        signature = agent_key.sign(to_sign, ec.ECDSA(hash_algorithm))
        signature_algorithm = f"{digest_name}_ecdsa"
    agent = asn1_x509.Certificate.load(agent_certificate.public_bytes(serialization.Encoding.DER))
    signer = cms.SignerInfo(
        {
            "version": "v1",
            "sid": cms.SignerIdentifier(
                {
                    "issuer_and_serial_number": cms.IssuerAndSerialNumber(
                        {"issuer": agent.issuer, "serial_number": agent.serial_number}
                    )
                }
            ),
            "digest_algorithm": algos.DigestAlgorithm({"algorithm": digest_name}),
            "signed_attrs": signed_attrs,
            "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": signature_algorithm}),
            "signature": signature,
        }
    )
    signed_data = cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [algos.DigestAlgorithm({"algorithm": digest_name})],
            "encap_content_info": {"content_type": "data", "content": content},
            "certificates": [agent],
            "signer_infos": [signer],
        }
    )
    return bytes(cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump())


@dataclass(frozen=True)
class OnBehalfOf:
    """A verified on-behalf-of request: the inner PKCS#10, the signer's certificate, the requester."""

    csr: x509.CertificateSigningRequest
    agent: x509.Certificate
    requester: str | None


def is_cms(der: bytes) -> bool:
    """Whether a decoded request is a CMS ContentInfo (rather than a bare PKCS#10)."""
    try:
        info = cms.ContentInfo.load(der, strict=True)
        return bool(info["content_type"].native == "signed_data")
    except (ValueError, TypeError):
        return False


def parse_on_behalf_of(der: bytes) -> OnBehalfOf:
    """Read an on-behalf-of request and verify its signature; raise CMSError saying what is wrong."""
    try:
        info = cms.ContentInfo.load(der, strict=True)
        signed = info["content"]
        if info["content_type"].native != "signed_data":
            raise CMSError("the request is a CMS message but not SignedData")
        content = signed["encap_content_info"]["content"].native
        signers = list(signed["signer_infos"])
        certificates = [x509.load_der_x509_certificate(c.chosen.dump()) for c in signed["certificates"] or []]
    except (ValueError, TypeError, KeyError) as exc:
        raise CMSError(f"the CMS request does not parse: {exc}") from None
    if not isinstance(content, bytes) or len(signers) != 1 or not certificates:
        raise CMSError("the CMS request needs one signer, its certificate and the PKCS#10 content")
    signer = signers[0]
    agent = _signer_certificate(signer, certificates)
    digest_name = signer["digest_algorithm"]["algorithm"].native
    message_digest, requester = _read_attributes(signer["signed_attrs"])
    if message_digest != hashlib.new(digest_name, content).digest():
        raise CMSError("the CMS request's message digest does not match its content")
    _verify_signature(signer, agent, digest_name)
    try:
        csr = x509.load_der_x509_csr(content)
    except ValueError as exc:
        raise CMSError(f"the CMS request's content is not a PKCS#10: {exc}") from None
    return OnBehalfOf(csr=csr, agent=agent, requester=requester)


def _signer_certificate(signer: cms.SignerInfo, certificates: list[x509.Certificate]) -> x509.Certificate:
    sid = signer["sid"].chosen
    if isinstance(sid, cms.IssuerAndSerialNumber):
        for candidate in certificates:
            if candidate.serial_number == sid["serial_number"].native:
                return candidate
    raise CMSError("the CMS request does not carry the certificate of its signer")


def _read_attributes(attrs: cms.CMSAttributes) -> tuple[object, str | None]:
    """The message digest and the requester name among the signed attributes."""
    message_digest: object = None
    requester = None
    for attribute in attrs:
        if attribute["type"].dotted == ENROLLMENT_NAME_VALUE_PAIR:
            for value in attribute["values"]:
                pair = EnrollmentNameValuePair.load(value.dump())
                if str(pair["name"].native).lower() == REQUESTER_NAME:
                    requester = str(pair["value"].native)
        elif attribute["type"].native == "message_digest":
            message_digest = attribute["values"][0].native
    return message_digest, requester


def _verify_signature(signer: cms.SignerInfo, agent: x509.Certificate, digest_name: str) -> None:
    # The signature covers the attributes re-encoded as a SET OF (tag 0x31) instead of [0] IMPLICIT.
    signed_bytes = b"\x31" + signer["signed_attrs"].dump()[1:]
    hash_algorithm = hashes.SHA384() if digest_name == "sha384" else hashes.SHA256()
    public_key = agent.public_key()
    signature = signer["signature"].native
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, signed_bytes, padding.PKCS1v15(), hash_algorithm)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, signed_bytes, ec.ECDSA(hash_algorithm))
        else:
            raise CMSError("the signer's key type is not RSA or EC")
    except InvalidSignature:
        raise CMSError("the CMS request's signature does not verify with its signer's certificate") from None
