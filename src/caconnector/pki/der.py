"""A strict reader for the few DER structures we read ourselves, rather than through `cryptography`.

`cryptography` turns a subject attribute into a `str` and keeps its ASN.1 string type only in a private
field, and it accepts types RFC 5280 does not allow there (an OCTET STRING common name, for one). The
subject policy needs the type and the exact bytes, so it reads the request's subject from its DER with
this. Only definite lengths in their shortest form are accepted: that is what DER is.
"""

from __future__ import annotations

from dataclasses import dataclass

TAG_INTEGER = 0x02
TAG_OID = 0x06
TAG_SEQUENCE = 0x30
TAG_SET = 0x31


class DERError(ValueError):
    """The bytes are not the DER structure expected; `str()` says what is wrong, for a CSRFormatError."""


@dataclass(frozen=True)
class TLV:
    """One DER element: its identifier octet and its content octets."""

    tag: int
    content: bytes


def read_all(data: bytes) -> list[TLV]:
    """Every element of a concatenation of DER elements (the content of a SEQUENCE or SET)."""
    elements: list[TLV] = []
    offset = 0
    while offset < len(data):
        element, offset = _read_one(data, offset)
        elements.append(element)
    return elements


def read_single(data: bytes, tag: int, what: str) -> TLV:
    """Exactly one element of type `tag`, filling `data`."""
    elements = read_all(data)
    if len(elements) != 1 or elements[0].tag != tag:
        raise DERError(f"{what} is not a single DER element of the expected type")
    return elements[0]


def oid_string(content: bytes) -> str:
    """The dotted form of an OBJECT IDENTIFIER's content octets (X.690 8.19)."""
    if not content or content[-1] & 0x80:
        raise DERError("an object identifier is empty or truncated")
    arcs: list[int] = []
    value = 0
    for index, octet in enumerate(content):
        # A leading 0x80 would pad an arc, which DER forbids (X.690 8.19.2).
        if octet == 0x80 and (index == 0 or not content[index - 1] & 0x80):
            raise DERError("an object identifier has a padded arc")
        value = (value << 7) | (octet & 0x7F)
        if not octet & 0x80:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(arc) for arc in (first, arcs[0] - 40 * first, *arcs[1:]))


def _read_one(data: bytes, offset: int) -> tuple[TLV, int]:
    if offset + 2 > len(data):
        raise DERError("a DER element is truncated")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        # High tag numbers never occur in the structures we read.
        raise DERError("a DER element has a multi-byte tag")
    first = data[offset + 1]
    offset += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        # 0x80 is BER's indefinite length; more than four length octets would describe gigabytes.
        if count == 0 or count > 4 or offset + count > len(data):
            raise DERError("a DER element has an invalid length")
        length = int.from_bytes(data[offset : offset + count], "big")
        if length < 0x80 or data[offset] == 0:
            raise DERError("a DER element's length is not in its shortest form")
        offset += count
    end = offset + length
    if end > len(data):
        raise DERError("a DER element is truncated")
    return TLV(tag, data[offset:end]), end
