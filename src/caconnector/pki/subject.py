"""The subject policy: which attributes a CSR's subject may carry, and how a certificate encodes them.

A CA that copies a requested subject verbatim hands relying parties whatever the requester wrote: NUL
bytes and right-to-left overrides that make a name display as another, control characters that break
log lines, a 5,000-character CN, a three-letter country, a CN sent as an OCTET STRING. So the subject is
read from the request's DER (see `der`), every attribute is checked against the rules below, and the
certificate's subject is built anew from the checked values, each in the encoding RFC 5280 wants:
PrintableString where the value allows it, UTF8String otherwise (section 4.1.2.6), IA5String for the
attributes whose syntax is IA5.

`build_subject` is the policy itself (a pure function of the attributes); `checked_subject` applies it to
a CSR. Both raise `CSRSubjectError`, whose message names the attribute and the problem.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from cryptography import x509
from cryptography.x509.name import _ASN1Type  # the only way to choose an attribute's string type
from cryptography.x509.oid import NameOID

from caconnector.pki.der import (
    TAG_INTEGER,
    TAG_OID,
    TAG_SEQUENCE,
    TAG_SET,
    DERError,
    oid_string,
    read_all,
    read_single,
)
from caconnector.pki.errors import CSRFormatError, CSRSubjectError

_UTF8 = 0x0C
_PRINTABLE = 0x13
_IA5 = 0x16
_UNIVERSAL = 0x1C
_BMP = 0x1E
# DirectoryString (RFC 5280 4.1.2.4) minus TeletexString, whose character set nobody decodes the same way.
_DIRECTORY_TYPES = (_UTF8, _PRINTABLE, _BMP, _UNIVERSAL)
_TYPE_NAMES = {
    0x01: "BOOLEAN",
    0x02: "INTEGER",
    0x03: "BIT STRING",
    0x04: "OCTET STRING",
    0x05: "NULL",
    0x06: "OBJECT IDENTIFIER",
    _UTF8: "UTF8String",
    0x12: "NumericString",
    _PRINTABLE: "PrintableString",
    0x14: "TeletexString",
    0x15: "VideotexString",
    _IA5: "IA5String",
    0x17: "UTCTime",
    0x18: "GeneralizedTime",
    0x1A: "VisibleString",
    _UNIVERSAL: "UniversalString",
    _BMP: "BMPString",
    TAG_SEQUENCE: "SEQUENCE",
    TAG_SET: "SET",
}
# X.680 41.4: the PrintableString alphabet.
_PRINTABLE_VALUE = re.compile(r"^[A-Za-z0-9 '()+,\-./:=?]*$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
# Unicode's Bidi_Control characters: embeddings, overrides, isolates and the invisible direction marks.
# Each can make a name display as a different one (the "Trojan Source" class of tricks).
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


class _Syntax(Enum):
    DIRECTORY = "directory"  # DirectoryString: PrintableString if it fits, else UTF8String
    PRINTABLE = "printable"  # PrintableString only (X.520 serialNumber, dnQualifier)
    COUNTRY = "country"  # two capital letters, PrintableString (ISO 3166 alpha-2)
    IA5 = "ia5"  # IA5String (domainComponent)


@dataclass(frozen=True)
class _Rule:
    oid: x509.ObjectIdentifier
    name: str
    upper_bound: int
    syntax: _Syntax


# The attributes we issue, with their upper bounds from RFC 5280 Appendix A (ub-* values, in characters);
# those it does not bound (street, postalCode, dnQualifier, DC) have the X.520 or a DNS-label bound.
_RULES: dict[str, _Rule] = {
    rule.oid.dotted_string: rule
    for rule in (
        _Rule(NameOID.COMMON_NAME, "CN", 64, _Syntax.DIRECTORY),
        _Rule(NameOID.SURNAME, "SN", 32768, _Syntax.DIRECTORY),
        _Rule(NameOID.SERIAL_NUMBER, "serialNumber", 64, _Syntax.PRINTABLE),
        _Rule(NameOID.COUNTRY_NAME, "C", 2, _Syntax.COUNTRY),
        _Rule(NameOID.LOCALITY_NAME, "L", 128, _Syntax.DIRECTORY),
        _Rule(NameOID.STATE_OR_PROVINCE_NAME, "ST", 128, _Syntax.DIRECTORY),
        _Rule(NameOID.STREET_ADDRESS, "street", 128, _Syntax.DIRECTORY),
        _Rule(NameOID.ORGANIZATION_NAME, "O", 64, _Syntax.DIRECTORY),
        _Rule(NameOID.ORGANIZATIONAL_UNIT_NAME, "OU", 64, _Syntax.DIRECTORY),
        _Rule(NameOID.TITLE, "title", 64, _Syntax.DIRECTORY),
        _Rule(NameOID.POSTAL_CODE, "postalCode", 40, _Syntax.DIRECTORY),
        _Rule(NameOID.GIVEN_NAME, "givenName", 32768, _Syntax.DIRECTORY),
        _Rule(NameOID.INITIALS, "initials", 32768, _Syntax.DIRECTORY),
        _Rule(NameOID.GENERATION_QUALIFIER, "generationQualifier", 32768, _Syntax.DIRECTORY),
        _Rule(NameOID.DN_QUALIFIER, "dnQualifier", 64, _Syntax.PRINTABLE),
        _Rule(NameOID.PSEUDONYM, "pseudonym", 128, _Syntax.DIRECTORY),
        _Rule(NameOID.DOMAIN_COMPONENT, "DC", 63, _Syntax.IA5),
    )
}
_ALLOWED = ", ".join(rule.name for rule in _RULES.values())


@dataclass(frozen=True)
class RawAttribute:
    """One subject attribute as the request encodes it: type OID, ASN.1 string tag, content octets."""

    oid: str
    tag: int
    value: bytes


def checked_subject(csr: x509.CertificateSigningRequest) -> x509.Name:
    """The subject a certificate for `csr` gets: the request's, checked and re-encoded by `build_subject`."""
    return build_subject(read_subject(csr.tbs_certrequest_bytes))


def read_subject(request_info: bytes) -> list[list[RawAttribute]]:
    """The subject's RDNs from a DER CertificationRequestInfo (RFC 2986 section 4.1), in DER order."""
    try:
        return _rdns(request_info)
    except DERError as exc:
        raise CSRFormatError(f"CSR subject cannot be read ({exc}); send a well-formed request") from None


def _rdns(request_info: bytes) -> list[list[RawAttribute]]:
    info = read_single(request_info, TAG_SEQUENCE, "the request info")
    fields = read_all(info.content)
    if len(fields) < 2 or fields[0].tag != TAG_INTEGER or fields[1].tag != TAG_SEQUENCE:
        raise DERError("the request info does not start with a version and a subject")
    rdns: list[list[RawAttribute]] = []
    for rdn in read_all(fields[1].content):
        if rdn.tag != TAG_SET:
            raise DERError("a subject RDN is not a SET")
        rdns.append([_attribute(element.tag, element.content) for element in read_all(rdn.content)])
    return rdns


def _attribute(tag: int, content: bytes) -> RawAttribute:
    if tag != TAG_SEQUENCE:
        raise DERError("a subject attribute is not a SEQUENCE")
    parts = read_all(content)
    if len(parts) != 2 or parts[0].tag != TAG_OID:
        raise DERError("a subject attribute is not a type and a value")
    return RawAttribute(oid=oid_string(parts[0].content), tag=parts[1].tag, value=parts[1].content)


def build_subject(rdns: Sequence[Sequence[RawAttribute]]) -> x509.Name:
    """Check every attribute against the policy and build the certificate's subject from the values.

    Raises `CSRSubjectError` naming the first attribute that breaks it. An empty subject is allowed (the
    identity is then in subjectAltName); an RDN without attributes is not.
    """
    built: list[x509.RelativeDistinguishedName] = []
    for rdn in rdns:
        if not rdn:
            raise CSRSubjectError("CSR subject has an empty RDN (a SET without attributes); remove it")
        attributes = [_checked(attribute) for attribute in rdn]
        try:
            built.append(x509.RelativeDistinguishedName(attributes))
        except ValueError:
            raise CSRSubjectError(
                "CSR subject has an RDN that repeats an attribute; put each value in its own RDN"
            ) from None
    return x509.Name(built)


def _checked(attribute: RawAttribute) -> x509.NameAttribute[str]:
    rule = _RULES.get(attribute.oid)
    if attribute.oid == NameOID.EMAIL_ADDRESS.dotted_string:
        # RFC 5280 4.1.2.6: new certificates carry email addresses as rfc822Name in subjectAltName.
        raise CSRSubjectError(
            "CSR subject attribute emailAddress is not issued; ask for the address as an rfc822Name "
            "in subjectAltName instead"
        )
    if rule is None:
        raise CSRSubjectError(
            f"CSR subject attribute {attribute.oid} is not one the CA issues; use only {_ALLOWED}"
        )
    value = _decoded(rule, attribute)
    _check_characters(rule, value)
    if len(value) > rule.upper_bound:
        raise CSRSubjectError(
            f"CSR subject attribute {rule.name} is {len(value)} characters long, over the RFC 5280 limit "
            f"of {rule.upper_bound}; shorten it"
        )
    if rule.oid == NameOID.COMMON_NAME and len(value.encode()) > rule.upper_bound:
        # RFC 5280 bounds characters, but `cryptography` bounds a CN in UTF-8 bytes and warns on every
        # later reading of a longer one (the manager and the CA both read what was issued).
        raise CSRSubjectError(
            f"CSR subject attribute CN is {len(value.encode())} bytes long in UTF-8, over the "
            f"{rule.upper_bound} the CA can encode; shorten it"
        )
    return x509.NameAttribute(rule.oid, value, _type=_output_type(rule, value))


def _decoded(rule: _Rule, attribute: RawAttribute) -> str:
    allowed = (_IA5, _UTF8) if rule.syntax is _Syntax.IA5 else _DIRECTORY_TYPES
    type_name = _TYPE_NAMES.get(attribute.tag, f"an ASN.1 element with tag 0x{attribute.tag:02x}")
    if attribute.tag not in allowed:
        wanted = "IA5String" if rule.syntax is _Syntax.IA5 else "UTF8String or PrintableString"
        raise CSRSubjectError(f"CSR subject attribute {rule.name} is encoded as {type_name}; use {wanted}")
    codec = {_UTF8: "utf-8", _PRINTABLE: "ascii", _IA5: "ascii", _BMP: "utf-16-be", _UNIVERSAL: "utf-32-be"}
    try:
        value = attribute.value.decode(codec[attribute.tag])
    except UnicodeDecodeError:
        raise CSRSubjectError(
            f"CSR subject attribute {rule.name} is not valid {type_name} (bad character encoding); "
            "send it as UTF-8"
        ) from None
    if attribute.tag == _PRINTABLE and not _PRINTABLE_VALUE.match(value):
        raise CSRSubjectError(
            f"CSR subject attribute {rule.name} is a PrintableString with characters outside its "
            "alphabet; send it as UTF8String"
        )
    return value


def _check_characters(rule: _Rule, value: str) -> None:
    if not value.strip():
        raise CSRSubjectError(f"CSR subject attribute {rule.name} is empty; give it a value or leave it out")
    if any(unicodedata.category(char) == "Cc" for char in value):
        raise CSRSubjectError(
            f"CSR subject attribute {rule.name} contains control characters (such as NUL or newline); "
            "remove them"
        )
    if any(char in _BIDI_CONTROLS for char in value):
        raise CSRSubjectError(
            f"CSR subject attribute {rule.name} contains bidirectional override, embedding or mark "
            "characters, which can make a name display as another; remove them"
        )
    if rule.syntax is _Syntax.COUNTRY and not _COUNTRY.match(value):
        raise CSRSubjectError(
            "CSR subject attribute C is not a two-letter ISO 3166 country code; give one in capitals, "
            "such as DE"
        )
    if rule.syntax is _Syntax.PRINTABLE and not _PRINTABLE_VALUE.match(value):
        raise CSRSubjectError(
            f"CSR subject attribute {rule.name} may only hold letters, digits, spaces and ' ( ) + , - . "
            "/ : = ?; fix it"
        )
    if rule.syntax is _Syntax.IA5 and not value.isascii():
        raise CSRSubjectError(
            f"CSR subject attribute {rule.name} must be ASCII (IA5String); write internationalised "
            "domain names in their xn-- form"
        )


def _output_type(rule: _Rule, value: str) -> _ASN1Type:
    if rule.syntax is _Syntax.IA5:
        return _ASN1Type.IA5String
    if rule.syntax is not _Syntax.DIRECTORY or _PRINTABLE_VALUE.match(value):
        return _ASN1Type.PrintableString
    return _ASN1Type.UTF8String
