"""One canonical spelling of certificate serial numbers, used everywhere we store or compare them.

CAs, browsers and tools print serials differently (`0A:1B`, `0a 1b`, `0x0A1B`, `a1b`). Comparing those
as text silently fails, so every serial is normalised once, at the edge, to lower-case hex with no
separators and no leading zeros ("0" for zero), which is also what `format(n, "x")` gives.
"""

from __future__ import annotations

import re
import string

# Separators seen in the wild: colons (openssl, browsers), spaces (Windows), hyphens (some CA portals).
_SEPARATORS = re.compile(r"[\s:\-]")
_HEX_DIGITS = frozenset(string.hexdigits)


def canonical_serial(value: int | str) -> str:
    """Return the canonical form of a serial given as an int or as hex text in any common spelling."""
    if isinstance(value, bool):
        # bool is an int subclass; a True serial is always a bug upstream, not serial 1.
        raise TypeError("serial number must be an int or hex text, not a bool")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"serial number {value} is negative; serial numbers are positive integers")
        return format(value, "x")
    return format(_parse_hex(value), "x")


def serial_to_int(text: str) -> int:
    """Return the integer value of a serial given as hex text in any common spelling."""
    return _parse_hex(text)


def _parse_hex(text: str) -> int:
    stripped = text.strip()
    if stripped.startswith("-"):
        raise ValueError(f"serial number {text!r} is negative; serial numbers are positive integers")
    digits = _SEPARATORS.sub("", stripped).lower()
    digits = digits.removeprefix("0x")
    if not digits:
        raise ValueError("serial number is empty; give it as hex, for example 0a:1b:2c")
    bad = sorted({c for c in digits if c not in _HEX_DIGITS})
    if bad:
        shown = "".join(bad)
        raise ValueError(
            f"serial number {text!r} is not hexadecimal (unexpected {shown!r}); give it as hex, "
            "for example 0a:1b:2c"
        )
    return int(digits, 16)
