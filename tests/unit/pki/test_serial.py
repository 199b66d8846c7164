from __future__ import annotations

import pytest

from caconnector.pki.serial import canonical_serial, serial_to_int


@pytest.mark.parametrize(
    "spelling",
    [
        "0a1b2c",
        "0A1B2C",
        "a1b2c",
        "0a:1b:2c",
        "0A:1B:2C",
        "0a 1b 2c",
        "0a-1b-2c",
        "0x0a1b2c",
        "0X0A:1B:2C",
        "  000a1b2c\n",
        0x0A1B2C,
    ],
)
def test_many_spellings_give_one_canonical_form(spelling: int | str) -> None:
    assert canonical_serial(spelling) == "a1b2c"


@pytest.mark.parametrize("spelling", [0, "0", "00", "00:00", "0x0"])
def test_zero_is_a_single_digit(spelling: int | str) -> None:
    assert canonical_serial(spelling) == "0"


def test_large_serial_keeps_every_digit() -> None:
    digits = "7f3a" + "00" * 16 + "ff"  # a 20-octet serial, the RFC 5280 maximum
    value = int(digits, 16)
    assert canonical_serial(value) == digits
    assert canonical_serial(format(value, "X")) == canonical_serial(value)


def test_serial_to_int() -> None:
    assert serial_to_int("0A:1B:2C") == 0x0A1B2C
    assert serial_to_int("0") == 0


@pytest.mark.parametrize(
    ("spelling", "problem"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("::", "empty"),
        ("0x", "empty"),
        ("0g:1b", "not hexadecimal"),
        ("serial", "not hexadecimal"),
        ("12.5", "not hexadecimal"),
        ("-0a", "negative"),
        (-1, "negative"),
    ],
)
def test_bad_serials_are_refused(spelling: int | str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as caught:
        canonical_serial(spelling)
    assert "\n" not in str(caught.value)


def test_serial_to_int_refuses_non_hex() -> None:
    with pytest.raises(ValueError, match="not hexadecimal"):
        serial_to_int("xyz")


def test_bool_is_not_a_serial() -> None:
    with pytest.raises(TypeError, match="bool"):
        canonical_serial(True)
