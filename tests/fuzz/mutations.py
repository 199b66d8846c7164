"""Malformed and hostile certificate requests from a seed: the corpus of tests/fuzz/test_csr_corpus.py.

Requests are assembled from DER by hand (`cryptography`'s builder refuses to write most of them) and, where
the point is what lies behind the signature check, signed with a real key, so that the subject, version
and extension checks are what the mutant reaches. The rest are bit flips, truncations and garbage of a
valid request, which the parser or the signature check must stop.

Each mutant carries the PEM text the API takes (`csr` is a string field) and the name of its kind, so a
failure report says which family broke.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

OID_CN = "2.5.4.3"
OID_C = "2.5.4.6"
OID_O = "2.5.4.10"
OID_OU = "2.5.4.11"
OID_L = "2.5.4.7"
OID_EMAIL = "1.2.840.113549.1.9.1"
OID_EXTENSION_REQUEST = "1.2.840.113549.1.9.14"
OID_SAN = "2.5.29.17"
OID_BASIC_CONSTRAINTS = "2.5.29.19"
OID_ECDSA_SHA256 = "1.2.840.10045.4.3.2"

UTF8, PRINTABLE, IA5, BMP, UNIVERSAL, T61 = 0x0C, 0x13, 0x16, 0x1E, 0x1C, 0x14
HOST = "app.example.test"
# Over load_csr's 64 KiB but under the API's text limit (so load_csr is what refuses it), and over both.
OVERSIZED = (70 * 1024, 140 * 1024)


def tlv(tag: int, content: bytes) -> bytes:
    """One DER element."""
    length = len(content)
    if length < 0x80:
        return bytes([tag, length]) + content
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + content


def oid(dotted: str) -> bytes:
    arcs = [int(arc) for arc in dotted.split(".")]
    body = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        rest = arc
        chunk = [rest & 0x7F]
        while rest > 0x7F:
            rest >>= 7
            chunk.append(0x80 | (rest & 0x7F))
        body.extend(reversed(chunk))
    return tlv(0x06, bytes(body))


def attribute(type_oid: str, tag: int, value: bytes) -> bytes:
    return tlv(0x30, oid(type_oid) + tlv(tag, value))


def name(*rdns: list[bytes]) -> bytes:
    """A Name from RDNs, each a list of encoded attributes."""
    return tlv(0x30, b"".join(tlv(0x31, b"".join(rdn)) for rdn in rdns))


def extension(type_oid: str, value: bytes, *, critical: bytes = b"") -> bytes:
    return tlv(0x30, oid(type_oid) + critical + tlv(0x04, value))


def extension_request(*extensions: bytes) -> bytes:
    return tlv(0x30, oid(OID_EXTENSION_REQUEST) + tlv(0x31, tlv(0x30, b"".join(extensions))))


def san(*general_names: bytes) -> bytes:
    return extension(OID_SAN, tlv(0x30, b"".join(general_names)))


def dns(host: str | bytes) -> bytes:
    return tlv(0x82, host.encode() if isinstance(host, str) else host)


class Forge:
    """Signs hand-made request infos with one P-256 key (the profile allows ec-p256)."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.spki = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        valid = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)]))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.valid_der = valid.public_bytes(serialization.Encoding.DER)

    def request(
        self,
        subject: bytes,
        *attributes: bytes,
        version: bytes = b"\x00",
        algorithm: str = OID_ECDSA_SHA256,
    ) -> bytes:
        """A signed CertificationRequest (RFC 2986) with this subject and these attributes."""
        info = tlv(0x30, tlv(0x02, version) + subject + self.spki + tlv(0xA0, b"".join(attributes)))
        signature = self.key.sign(info, ec.ECDSA(hashes.SHA256()))
        return tlv(0x30, info + tlv(0x30, oid(algorithm)) + tlv(0x03, b"\x00" + signature))


def pem(der: bytes) -> str:
    body = base64.encodebytes(der).decode("ascii")
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"


def host_request(forge: Forge, subject: bytes, *extensions: bytes) -> str:
    """A signed request naming HOST in subjectAltName (so a server certificate may be issued for it)."""
    return pem(forge.request(subject, extension_request(san(dns(HOST)), *extensions)))


@dataclass(frozen=True)
class Mutant:
    kind: str
    csr: str


Family = Callable[[Forge, random.Random], str]

_HOSTILE_CHARACTERS = (
    "\x00",
    "\u202e",
    "\u202d",
    "\u2066",
    "\u200f",
    "\n",
    "\r",
    "\x1b",
    "\x7f",
    "\t",
    "\x85",
)
_WRONG_TYPES: tuple[tuple[int, bytes], ...] = (
    (0x05, b""),  # NULL
    (0x03, b"\x00ab"),  # BIT STRING
    (0x02, b"\x05"),  # INTEGER
    (0x04, b"host"),  # OCTET STRING
    (0x30, b""),  # SEQUENCE
    (0x01, b"\xff"),  # BOOLEAN
    (T61, b"caf\xe9"),
    (IA5, b"app"),
    (UTF8, b"\xff\xfe"),  # bad UTF-8
    (UTF8, b"\xc3"),  # truncated UTF-8
    (UTF8, b"\xed\xa0\x80"),  # an encoded surrogate
    (BMP, b"abc"),  # odd length
    (UNIVERSAL, b"\x00\x00a"),  # not a multiple of four
    (PRINTABLE, b"a@b"),  # outside the PrintableString alphabet
    (PRINTABLE, b"a\xffb"),
)
_GOOD_VALUES = ("Example GmbH", "Zürich Büro", "東京", "ops (EU)", "R&D", "a", "x" * 64, "Ünïcødé — ok")


def _valid_subject(forge: Forge, rng: random.Random) -> str:
    # Requests the CA must accept, in encodings it must rewrite (UTF8String C, BMPString O, ...).
    rdns: list[list[bytes]] = []
    if rng.random() < 0.7:
        rdns.append([attribute(OID_C, rng.choice((PRINTABLE, UTF8)), b"DE")])
    value = rng.choice(_GOOD_VALUES)
    tag = rng.choice((UTF8, BMP, UNIVERSAL))
    codec = {UTF8: "utf-8", BMP: "utf-16-be", UNIVERSAL: "utf-32-be"}[tag]
    rdns.append([attribute(OID_O, tag, value.encode(codec))])
    if rng.random() < 0.5:
        rdns.append([attribute(OID_OU, UTF8, b"Ops")])
    if rng.random() < 0.5:
        rdns.append([attribute(OID_EMAIL, IA5, b"ops@example.test")])
    rdns.append([attribute(OID_CN, rng.choice((UTF8, PRINTABLE)), HOST.encode())])
    return host_request(forge, name(*rdns))


def _hostile_characters(forge: Forge, rng: random.Random) -> str:
    value = list("app example")
    for _ in range(rng.randint(1, 3)):
        value.insert(rng.randint(0, len(value)), rng.choice(_HOSTILE_CHARACTERS))
    type_oid = rng.choice((OID_CN, OID_O, OID_OU, OID_L))
    return host_request(forge, name([attribute(type_oid, UTF8, "".join(value).encode())]))


def _oversized_values(forge: Forge, rng: random.Random) -> str:
    type_oid, bound = rng.choice(((OID_CN, 64), (OID_O, 64), (OID_OU, 64), (OID_L, 128), (OID_EMAIL, 255)))
    length = rng.choice((bound + 1, bound * 2, 5000, 20000))
    tag = IA5 if type_oid == OID_EMAIL else UTF8
    return host_request(forge, name([attribute(type_oid, tag, b"a" * length)]))


def _empty_values(forge: Forge, rng: random.Random) -> str:
    value = rng.choice((b"", b" ", b"   "))
    return host_request(forge, name([attribute(rng.choice((OID_CN, OID_O, OID_C)), UTF8, value)]))


def _wrong_types(forge: Forge, rng: random.Random) -> str:
    tag, value = rng.choice(_WRONG_TYPES)
    return host_request(forge, name([attribute(rng.choice((OID_CN, OID_O, OID_EMAIL)), tag, value)]))


def _countries(forge: Forge, rng: random.Random) -> str:
    value = rng.choice((b"DEU", b"D", b"de", b"1A", b"D E", b"", "DÉ".encode(), b"US\x00", b"XXXX"))
    return host_request(forge, name([attribute(OID_C, rng.choice((PRINTABLE, UTF8)), value)]))


def _broken_names(forge: Forge, rng: random.Random) -> str:
    cn = attribute(OID_CN, UTF8, HOST.encode())
    choices = (
        name([]),  # an empty RDN
        name([cn], []),
        name([cn, cn]),  # a repeated attribute in one RDN
        name([attribute("1.2.3.4.5", UTF8, b"x")]),  # an attribute the CA does not issue
        name([tlv(0x30, oid(OID_CN))]),  # a type without a value
        name([tlv(0x30, tlv(0x06, b"\x80\x01") + tlv(UTF8, b"x"))]),  # a padded OID
        name([tlv(0x04, b"")]),  # an attribute that is not a SEQUENCE
        tlv(0x30, tlv(0x30, cn)),  # an RDN that is a SEQUENCE, not a SET
    )
    return host_request(forge, rng.choice(choices))


def _versions(forge: Forge, rng: random.Random) -> str:
    version = rng.choice((b"\x01", b"\x02", b"\x03", b"\x7f", b"\xff", b"\x01\x00", b"\x00\x00"))
    subject = name([attribute(OID_CN, UTF8, HOST.encode())])
    return pem(forge.request(subject, extension_request(san(dns(HOST))), version=version))


def _extensions(forge: Forge, rng: random.Random) -> str:
    subject = name([attribute(OID_CN, UTF8, HOST.encode())])
    choices = (
        extension_request(extension(OID_SAN, b"\x05\x00")),  # SAN value is NULL
        extension_request(extension(OID_SAN, tlv(0x31, dns(HOST)))),  # a SET, not a SEQUENCE
        extension_request(san(tlv(0x87, b"\x0a\x00\x00"))),  # an IP address of three octets
        extension_request(san(tlv(0x82, b"\xff\xfe"))),  # a dNSName that is not IA5
        extension_request(san(tlv(0x8F, b"x"))),  # an unknown GeneralName choice
        extension_request(san(dns(HOST)), san(dns(HOST))),  # SAN twice
        extension_request(san(dns(HOST)), extension(OID_BASIC_CONSTRAINTS, b"\x02\x01\x05")),
        extension_request(extension(OID_SAN, tlv(0x30, dns(HOST)), critical=tlv(0x02, b"\x01"))),
        extension_request(extension("1.2.3.4", tlv(0x04, b"x")), san(dns(HOST))),  # unknown, ignored
        tlv(0x30, oid(OID_EXTENSION_REQUEST) + tlv(0x31, tlv(0x02, b"\x01"))),  # not Extensions
        tlv(0x30, oid(OID_EXTENSION_REQUEST)),  # no values at all
        tlv(0x30, oid(OID_EXTENSION_REQUEST) + tlv(0x31, b"")),
    )
    return pem(forge.request(subject, rng.choice(choices)))


def _hostile_sans(forge: Forge, rng: random.Random) -> str:
    # Well-formed DER the manager accepts: what the local CA then does with each name is its own policy.
    choices = (
        dns("app\x00.example.test"),
        dns("app example.test"),
        dns("-app.example.test"),
        dns("a" * 64 + ".example.test"),
        dns("*.*.example.test"),
        dns(""),
        tlv(0x81, b"ops\x00@example.test"),
        tlv(0x81, b"not an email"),
        tlv(0x86, b"https://example.test/a b"),
        tlv(0x86, b"no-scheme"),
        tlv(0x87, b"\x0a\x00\x00\x01"),
        tlv(0x87, bytes(16)),
    )
    names = [rng.choice(choices) for _ in range(rng.randint(1, 3))]
    if rng.random() < 0.5:
        names.append(dns(HOST))
    subject = name([attribute(OID_CN, UTF8, HOST.encode())]) if rng.random() < 0.5 else name()
    return pem(forge.request(subject, extension_request(san(*names))))


def _many_sans(forge: Forge, rng: random.Random) -> str:
    count = rng.choice((300, 1000, 3000, 6000))
    names = [dns(f"h{index}.example.test") for index in range(count)]
    return pem(forge.request(name(), extension_request(san(*names))))


def _algorithms(forge: Forge, rng: random.Random) -> str:
    algorithm = rng.choice(("1.2.840.113549.1.1.11", "1.2.3.4", "1.2.840.10045.4.3.4", "2.5.4.3"))
    subject = name([attribute(OID_CN, UTF8, HOST.encode())])
    return pem(forge.request(subject, extension_request(san(dns(HOST))), algorithm=algorithm))


def _bit_flips(forge: Forge, rng: random.Random) -> str:
    der = bytearray(forge.valid_der)
    for _ in range(rng.randint(1, 4)):
        bit = rng.randrange(len(der) * 8)
        der[bit // 8] ^= 1 << (bit % 8)
    return pem(bytes(der))


def _truncations(forge: Forge, rng: random.Random) -> str:
    if rng.random() < 0.5:
        return pem(forge.valid_der[: rng.randrange(len(forge.valid_der))])
    text = pem(forge.valid_der)
    return text[: rng.randrange(len(text))]


def _garbage(forge: Forge, rng: random.Random) -> str:
    junk = rng.randbytes(rng.randint(0, 600))
    choices = (
        pem(junk),
        pem(b"\x30" + junk),
        junk.decode("latin-1"),
        "-----BEGIN CERTIFICATE-----\n"
        + base64.b64encode(forge.valid_der).decode()
        + "\n-----END CERTIFICATE-----",
        pem(forge.valid_der).replace("M", "*", 1),
        pem(forge.valid_der + junk),  # trailing data after the request
        "-----BEGIN CERTIFICATE REQUEST-----\n"
        + "A" * rng.randint(0, 80)
        + "\n-----END CERTIFICATE REQUEST-----",
    )
    return rng.choice(choices)


def _oversized(forge: Forge, rng: random.Random) -> str:
    size = rng.choice(OVERSIZED)
    return pem(forge.valid_der + bytes(size))[:size]


# Weights: most mutants take the cheap refusal path; valid subjects and hostile SANs reach the CA.
FAMILIES: tuple[tuple[Family, int], ...] = (
    (_valid_subject, 3),
    (_hostile_characters, 12),
    (_oversized_values, 6),
    (_empty_values, 4),
    (_wrong_types, 12),
    (_countries, 6),
    (_broken_names, 8),
    (_versions, 6),
    (_extensions, 8),
    (_hostile_sans, 3),
    (_many_sans, 1),
    (_algorithms, 3),
    (_bit_flips, 16),
    (_truncations, 8),
    (_garbage, 6),
    (_oversized, 1),
)


def corpus(seed: int, count: int, forge: Forge | None = None) -> Iterator[Mutant]:
    """`count` mutants, the same ones for the same seed (the key differs per Forge, the structure not)."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible corpus, not secrets
    forge = forge or Forge()
    families = [family for family, _ in FAMILIES]
    weights = [weight for _, weight in FAMILIES]
    for _ in range(count):
        family = rng.choices(families, weights)[0]
        yield Mutant(kind=family.__name__.lstrip("_"), csr=family(forge, rng))
