"""Request signing on the connector channel.

After registration every request carries `Authorization: Bearer <JWT>`: EdDSA (Ed25519) signed with the
connector's private key, `kid` = connector id, bound to the HTTP method and path (`htm`, `htu`, as in
DPoP), valid for a short time, with a unique `jti` the manager remembers until it expires so a captured
request cannot be replayed. Unlike client certificates this survives TLS-terminating load balancers.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from caconnector.protocol.text import clip

ALGORITHM = "EdDSA"
LIFETIME = dt.timedelta(seconds=120)
MAX_LIFETIME = dt.timedelta(minutes=5)
CLOCK_LEEWAY = dt.timedelta(seconds=60)
# Claims we read: `iat`/`exp` up to the year 9999 (datetime's limit); the strings as long as a
# connector id, a path of ours or a uuid4 hex need, with room (the manager stores `jti` in 64).
MAX_TIMESTAMP = 253_402_300_799
MAX_CLAIM_LENGTH = 64
# A header of ours is about 80 characters ({"alg","kid","typ"}); a longer one is not a connector's.
MAX_HEADER_SEGMENT = 1024
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


class SignatureInvalid(ValueError):
    pass


@dataclass(frozen=True)
class VerifiedRequest:
    connector_id: str
    jti: str
    expires_at: dt.datetime


def generate_connector_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def public_key_pem(key: ed25519.Ed25519PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def load_public_key(pem: str) -> ed25519.Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except ValueError:
        raise SignatureInvalid("the public key is not a PEM SubjectPublicKeyInfo") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise SignatureInvalid("the connector key must be Ed25519")
    return key


def sign_request(
    key: ed25519.Ed25519PrivateKey, connector_id: str, method: str, path: str, now: dt.datetime | None = None
) -> str:
    issued = now or dt.datetime.now(dt.UTC)
    claims = {
        "iss": connector_id,
        "htm": method.upper(),
        "htu": path,
        "iat": int(issued.timestamp()),
        "exp": int((issued + LIFETIME).timestamp()),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": connector_id})


def unverified_connector_id(token: str) -> str:
    """The `kid` header, to find which public key to verify with. Proves nothing by itself.

    Read here, not with PyJWT's `get_unverified_header`: that decodes and checks every segment of the
    token, a character at a time in Python, and every signed request asks this before it is verified
    (which decodes them all again)."""
    header_segment, dot, _ = token.partition(".")
    if not dot or len(header_segment) > MAX_HEADER_SEGMENT or not _BASE64URL.fullmatch(header_segment):
        raise SignatureInvalid("the Authorization token is not a JWT")
    try:
        header = json.loads(base64.urlsafe_b64decode(header_segment + "=" * (-len(header_segment) % 4)))
    except (ValueError, binascii.Error):  # UnicodeDecodeError and json's errors are ValueErrors
        raise SignatureInvalid("the Authorization token is not a JWT") from None
    kid = header.get("kid") if isinstance(header, dict) else None
    if not isinstance(kid, str) or not kid:
        raise SignatureInvalid("the Authorization token names no connector (kid)")
    return kid


def verify_request(
    token: str,
    public_key: ed25519.Ed25519PublicKey,
    method: str,
    path: str,
    now: dt.datetime | None = None,
) -> VerifiedRequest:
    """Check signature, lifetime, and the method/path binding.

    Replay is the caller's job: it has the store of seen `jti`s.
    """
    current = now or dt.datetime.now(dt.UTC)
    try:
        decoded = jwt.decode_complete(
            token,
            public_key,
            algorithms=[ALGORITHM],
            # Lifetime is checked below against `now`, with CLOCK_LEEWAY: PyJWT's own checks use the
            # system clock without leeway and would refuse a connector whose clock is a second ahead.
            options={
                "require": ["iss", "htm", "htu", "iat", "exp", "jti"],
                "verify_exp": False,
                "verify_iat": False,
            },
        )
    except jwt.PyJWTError as exc:
        raise SignatureInvalid(f"the request signature does not verify ({clip(str(exc))})") from None
    claims: dict[str, Any] = decoded["payload"]
    issued, expires = _lifetime(claims)
    for name in ("iss", "htm", "htu", "jti"):
        if not isinstance(claims[name], str) or not 0 < len(claims[name]) <= MAX_CLAIM_LENGTH:
            raise SignatureInvalid(f"the signed request's {name} claim is not a string of 1-64 characters")
    if expires <= current - CLOCK_LEEWAY:
        raise SignatureInvalid("the signed request has expired; check the connector's clock")
    if issued > current + CLOCK_LEEWAY:
        raise SignatureInvalid("the signed request is from the future; check the connector's clock")
    if expires - issued > MAX_LIFETIME:
        raise SignatureInvalid("the signed request is valid for too long (at most 5 minutes)")
    if claims["htm"] != method.upper() or claims["htu"] != path:
        raise SignatureInvalid("the signed request was made for another method or path")
    if claims["iss"] != decoded["header"].get("kid"):
        raise SignatureInvalid("the signed request's issuer and key id differ")
    return VerifiedRequest(connector_id=claims["iss"], jti=claims["jti"], expires_at=expires)


def _lifetime(claims: dict[str, Any]) -> tuple[dt.datetime, dt.datetime]:
    """`iat` and `exp` as times. A signed request is still a stranger's input: a string, a bool, NaN or
    1e20 would make `fromtimestamp` raise, so only whole seconds within a sane range pass."""
    times = []
    for name in ("iat", "exp"):
        value = claims[name]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TIMESTAMP:
            raise SignatureInvalid(
                f"the signed request's {name} claim is not a time (whole seconds since 1970)"
            )
        times.append(dt.datetime.fromtimestamp(value, dt.UTC))
    return times[0], times[1]
