"""Installation tokens and API keys: random, shown once, stored as hashes.

Both carry at least 192 random bits, so a plain SHA-256 is the right hash (a slow KDF protects
low-entropy passwords; it adds nothing here and would slow every API call).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

TOKEN_PREFIX = "cat_"  # noqa: S105  (a prefix that marks connector installation tokens)
API_KEY_PREFIX = "cak_"


def new_installation_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(24)


def new_api_key() -> tuple[str, str]:
    """(lookup prefix, full key). The prefix is stored in clear to find the row; the key only hashed."""
    lookup = secrets.token_hex(6)
    return lookup, f"{API_KEY_PREFIX}{lookup}_{secrets.token_urlsafe(24)}"


def api_key_lookup(key: str) -> str | None:
    if not key.startswith(API_KEY_PREFIX):
        return None
    lookup, sep, _ = key.removeprefix(API_KEY_PREFIX).partition("_")
    return lookup if sep and lookup else None


def hash_secret(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def matches(value: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(value), stored_hash)
