"""AES-256-GCM sealing of the connector's secret option values.

Each value is sealed on its own, under a fresh random nonce, with the name of the entry it is stored
under (for example ``backends/corp-aws/secret_key``) as associated data. Binding the name means a
ciphertext copied to another entry in ``secrets.json`` fails authentication instead of silently
handing one backend's credential to another.

Only the cryptography lives here; where the key comes from (a 0600 file) is the caller's business.
It sits in pki because both programs seal secrets with it: the connector its CA credentials, the
manager the copies of unused installation tokens.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_SIZE = 32  # AES-256
# 96 bits is GCM's native nonce size. Random nonces are safe here because one key seals at most a few
# thousand values over its life, far below the 2**32 messages NIST allows per key with random nonces.
NONCE_SIZE = 12


class SecretBoxError(Exception):
    """A sealed value could not be opened: wrong key, altered ciphertext, or a malformed entry."""


def generate_key() -> bytes:
    """A new random key for `SecretBox`."""
    return os.urandom(KEY_SIZE)


class SecretBox:
    """Seals and opens string values with one AES-256-GCM key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_SIZE:
            raise ValueError(f"an AES-256 key is {KEY_SIZE} bytes, not {len(key)}")
        self._aead = AESGCM(key)

    def seal(self, entry: str, plaintext: str) -> dict[str, str]:
        """Encrypt `plaintext` for storage under the name `entry`.

        The result is JSON-ready: ``{"nonce": base64, "ciphertext": base64}`` (the ciphertext carries
        the 16-byte GCM tag at its end).
        """
        nonce = os.urandom(NONCE_SIZE)
        ciphertext = self._aead.encrypt(nonce, plaintext.encode("utf-8"), entry.encode("utf-8"))
        return {"nonce": _b64encode(nonce), "ciphertext": _b64encode(ciphertext)}

    def open(self, entry: str, sealed: Mapping[str, object]) -> str:
        """Decrypt a value sealed by `seal` under the same `entry` name with the same key.

        Raises `SecretBoxError` when the value was sealed under another key or another name, was
        altered, or is not shaped like the output of `seal`. The message never contains key or
        plaintext material.
        """
        nonce = _b64decode(sealed.get("nonce"), "nonce")
        ciphertext = _b64decode(sealed.get("ciphertext"), "ciphertext")
        if len(nonce) != NONCE_SIZE:
            raise SecretBoxError(f"the nonce is {len(nonce)} bytes, not {NONCE_SIZE}")
        try:
            plaintext = self._aead.decrypt(nonce, ciphertext, entry.encode("utf-8"))
        except InvalidTag:
            # One error for every cause on purpose: GCM cannot tell a wrong key from an altered value.
            raise SecretBoxError("authentication failed") from None
        try:
            return plaintext.decode("utf-8")
        except UnicodeDecodeError:
            # Cannot happen for values we sealed (they were str), but an authentic non-UTF-8 value
            # would mean a foreign writer holds our key; refuse rather than guess.
            raise SecretBoxError("the decrypted value is not UTF-8 text") from None


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise SecretBoxError(f"the {what} is missing or not a string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise SecretBoxError(f"the {what} is not valid base64") from None
