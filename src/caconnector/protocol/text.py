"""Constrained text: the string types of every field that crosses a boundary (the connector channel and
the REST API, whose models reuse these), declared once instead of a validator per field.

Every one is proper Unicode (a lone surrogate such as "\\ud800" is refused: it cannot be encoded, so it
broke token hashing, logging and PostgreSQL) and bounded in length. A `Line` (names, ids, versions) has no
control characters at all; a `Text` (PEM, free comments) may hold tabs and line breaks but no other
control character (NUL is refused by PostgreSQL). `Prose` is for messages meant for people (a backend's
error, a pending reason): rather than refuse a whole poll over one long or odd message, it is clipped and
its unprintable characters replaced, so a connector's result is never stuck on its wording.

The patterns appear in the OpenAPI document, so generated clients and fuzzers know the rule too.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints

# C0 controls, DEL and C1 controls: never part of a name.
LINE_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"
# The same, but tab, line feed and carriage return are allowed (PEM, comments).
TEXT_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"

_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")

# Shared limits, in characters.
ID_MAX = 64  # our ids are 32 hex digits; a connector's job ids and request ids are ours too
NAME_MAX = 128
REF_MAX = 255  # a backend's own reference: an ARN, a CAS resource path, an order number
SHORT_MAX = 32  # enumerations as text: states, types, key types
VERSION_MAX = 64
PROSE_MAX = 4096
PEM_MAX = 65_536  # a certificate or CSR with a generous chain of extensions
# base64 CRLs: room for the 16 MiB DER the manager keeps at most; the channel's body limit is tighter.
BLOB_MAX = 24 * 1024 * 1024

# List sizes.
LIST_MAX = 1024


def line(max_length: int, min_length: int = 0) -> Any:
    """`Annotated[str, line(n)]`: one line of at most `n` characters, no control characters."""
    return StringConstraints(min_length=min_length, max_length=max_length, pattern=LINE_PATTERN)


def text(max_length: int) -> Any:
    """`Annotated[str, text(n)]`: at most `n` characters; tabs and line breaks allowed."""
    return StringConstraints(max_length=max_length, pattern=TEXT_PATTERN)


def _tidy(limit: int) -> Any:
    def tidy(value: object) -> object:
        if not isinstance(value, str):
            return value  # the str validation after this names the wrong type
        return _UNPRINTABLE.sub("\ufffd", value[:limit])

    return BeforeValidator(tidy)


Id = Annotated[str, line(ID_MAX, min_length=1)]
Name = Annotated[str, line(NAME_MAX)]
Ref = Annotated[str, line(REF_MAX)]
Short = Annotated[str, line(SHORT_MAX)]
Version = Annotated[str, line(VERSION_MAX)]
Pem = Annotated[str, text(PEM_MAX)]
Blob = Annotated[str, line(BLOB_MAX)]
Prose = Annotated[str, _tidy(PROSE_MAX), text(PROSE_MAX)]

# ---- JSON objects whose shape the model leaves open (job payloads and results) --------------------

JSON_DEPTH_MAX = 32
JSON_ITEMS_MAX = 100_000


def _check_json(value: dict[str, Any]) -> dict[str, Any]:
    """Every key and string proper Unicode without NUL (PostgreSQL's jsonb refuses both), nesting and
    size bounded, so what is stored can be stored and what is served can be encoded."""
    budget = JSON_ITEMS_MAX
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        budget -= 1
        if budget < 0:
            raise ValueError(f"more than {JSON_ITEMS_MAX} values")
        if depth > JSON_DEPTH_MAX:
            raise ValueError(f"nested deeper than {JSON_DEPTH_MAX} levels")
        if isinstance(item, str):
            _check_json_string(item)
        elif isinstance(item, dict):
            for key, child in item.items():
                _check_json_string(str(key))
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError("NaN and infinity are not JSON numbers")
    return value


def _check_json_string(value: str) -> None:
    if "\x00" in value or _has_surrogate(value):
        raise ValueError("a string holds NUL or a lone surrogate (not proper Unicode)")


def _has_surrogate(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


JsonObject = Annotated[dict[str, Any], AfterValidator(_check_json)]


def bounded_list(max_length: int = LIST_MAX) -> Any:
    """`Annotated[list[T], bounded_list()]`."""
    return Field(max_length=max_length)


# ---- echoing what others sent ----------------------------------------------------------------------

CLIP_DEFAULT = 64


def clip(value: object, limit: int = CLIP_DEFAULT) -> str:
    """A value someone else sent, fit to echo in a log line or an error message: as it is when it is
    short and printable, else its repr (controls and surrogates escaped) cut to `limit` characters with
    the number left out. The one place that decides how much of a stranger's input we repeat."""
    shown = value if isinstance(value, str) else str(value)
    if len(shown) <= limit and shown.isprintable():
        return shown
    head = repr(shown[:limit])
    rest = len(shown) - limit
    return f"{head}...(+{rest} characters)" if rest > 0 else head
