"""JSON Web Signatures as ACME sends them (RFC 8555 §6.2, RFC 7515 flattened JSON): parsing, the account
keys (RFC 7517 JWK: RSA, EC P-256/384/521, Ed25519), signature checks for RS256, ES256/384/512 and
EdDSA, RFC 7638 thumbprints, and the HS256 MAC of an External Account Binding.

Pure functions over `cryptography`; every refusal is an AcmeError naming what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from caconnector.manager.acme.problems import AcmeError, malformed

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

SIGNATURE_ALGORITHMS = ("RS256", "ES256", "ES384", "ES512", "EdDSA")
MAC_ALGORITHMS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
_CURVES: dict[str, tuple[ec.EllipticCurve, str, int]] = {
    "P-256": (ec.SECP256R1(), "ES256", 32),
    "P-384": (ec.SECP384R1(), "ES384", 48),
    "P-521": (ec.SECP521R1(), "ES512", 66),
}
_HASHES: dict[str, hashes.HashAlgorithm] = {
    "ES256": hashes.SHA256(),
    "ES384": hashes.SHA384(),
    "ES512": hashes.SHA512(),
}
MIN_RSA_BITS = 2048


def b64decode(value: object, what: str) -> bytes:
    if not isinstance(value, str) or "=" in value:
        raise malformed(f"{what} is not unpadded base64url text")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise malformed(f"{what} is not base64url") from None


def b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        raise malformed(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise malformed(f"{what} is not a JSON object")
    return value


@dataclass(frozen=True)
class Jws:
    """A flattened JWS, its parts decoded but nothing verified yet."""

    protected: dict[str, Any]
    protected_b64: str
    payload: bytes
    payload_b64: str
    signature: bytes

    @property
    def signing_input(self) -> bytes:
        return f"{self.protected_b64}.{self.payload_b64}".encode()

    def payload_json(self) -> dict[str, Any]:
        return json_object(self.payload, "the JWS payload")


def parse(document: object, what: str = "the request body") -> Jws:
    if not isinstance(document, dict):
        raise malformed(f"{what} is not a flattened JWS (a JSON object with protected, payload, signature)")
    if "signatures" in document or "header" in document:
        raise malformed(f"{what}: ACME takes one signature in flattened JSON, with no unprotected header")
    parts = [document.get(name) for name in ("protected", "payload", "signature")]
    if not all(isinstance(part, str) for part in parts):
        raise malformed(f"{what} needs string members protected, payload and signature")
    protected_b64, payload_b64, signature_b64 = (str(part) for part in parts)
    protected = json_object(b64decode(protected_b64, "protected"), "the protected header")
    return Jws(
        protected,
        protected_b64,
        b64decode(payload_b64, "payload"),
        payload_b64,
        b64decode(signature_b64, "signature"),
    )


def public_key(jwk: object) -> PublicKey:
    """The key a JWK describes; badPublicKey when it is not one ACME accounts may use."""
    if not isinstance(jwk, dict):
        raise AcmeError("badPublicKey", "jwk is not a JSON object")
    kty = jwk.get("kty")
    try:
        if kty == "RSA":
            n = int.from_bytes(b64decode(jwk.get("n"), "jwk n"), "big")
            e = int.from_bytes(b64decode(jwk.get("e"), "jwk e"), "big")
            return _rsa(rsa.RSAPublicNumbers(e, n).public_key())
        if kty == "EC":
            curve = _curve(jwk.get("crv"))
            x = int.from_bytes(b64decode(jwk.get("x"), "jwk x"), "big")
            y = int.from_bytes(b64decode(jwk.get("y"), "jwk y"), "big")
            return ec.EllipticCurvePublicNumbers(x, y, curve[0]).public_key()
        if kty == "OKP" and jwk.get("crv") == "Ed25519":
            return ed25519.Ed25519PublicKey.from_public_bytes(b64decode(jwk.get("x"), "jwk x"))
    except AcmeError as exc:
        if exc.kind == "malformed":
            raise AcmeError("badPublicKey", exc.detail) from None
        raise
    except ValueError:
        raise AcmeError("badPublicKey", "the jwk does not describe a valid public key") from None
    raise AcmeError("badPublicKey", "account keys are RSA, EC (P-256, P-384, P-521) or OKP Ed25519")


def _rsa(key: rsa.RSAPublicKey) -> rsa.RSAPublicKey:
    if key.key_size < MIN_RSA_BITS:
        raise AcmeError("badPublicKey", f"an RSA account key has at least {MIN_RSA_BITS} bits")
    return key


def _curve(name: object) -> tuple[ec.EllipticCurve, str, int]:
    curve = _CURVES.get(str(name))
    if curve is None:
        raise AcmeError("badPublicKey", "EC keys are on P-256, P-384 or P-521")
    return curve


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638: SHA-256 over the key's required members, sorted, without white space."""
    required = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}
    members = required.get(str(jwk.get("kty")))
    if members is None:
        raise AcmeError("badPublicKey", "unknown key type")
    canonical = json.dumps({m: jwk.get(m) for m in members}, separators=(",", ":"), sort_keys=True)
    return b64encode(hashlib.sha256(canonical.encode()).digest())


def public_jwk(key: PublicKey) -> dict[str, Any]:
    """The JWK of a public key: what a certificate's key is compared with in revokeCert."""
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        return {"kty": "RSA", "n": _int(numbers.n), "e": _int(numbers.e)}
    if isinstance(key, ec.EllipticCurvePublicKey):
        name = next(n for n, c in _CURVES.items() if c[0].name == key.curve.name)
        size = _CURVES[name][2]
        point = key.public_numbers()
        return {"kty": "EC", "crv": name, "x": _int(point.x, size), "y": _int(point.y, size)}
    return {"kty": "OKP", "crv": "Ed25519", "x": b64encode(key.public_bytes(Encoding.Raw, PublicFormat.Raw))}


def _int(value: int, size: int | None = None) -> str:
    length = size or max(1, (value.bit_length() + 7) // 8)
    return b64encode(value.to_bytes(length, "big"))


def verify(jws: Jws, key: PublicKey) -> None:
    """The signature checks under `alg` with `key`; malformed (with the algorithms) when it does not."""
    alg = jws.protected.get("alg")
    if alg not in SIGNATURE_ALGORITHMS:
        raise AcmeError(
            "badSignatureAlgorithm",
            f"alg {alg!r} is not accepted; use one of {', '.join(SIGNATURE_ALGORITHMS)}",
            algorithms=list(SIGNATURE_ALGORITHMS),
        )
    try:
        if alg == "RS256" and isinstance(key, rsa.RSAPublicKey):
            key.verify(jws.signature, jws.signing_input, padding.PKCS1v15(), hashes.SHA256())
            return
        if alg == "EdDSA" and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(jws.signature, jws.signing_input)
            return
        if isinstance(key, ec.EllipticCurvePublicKey) and alg in _HASHES:
            curve = next(c for c in _CURVES.values() if c[0].name == key.curve.name)
            if curve[1] == alg and len(jws.signature) == 2 * curve[2]:
                r = int.from_bytes(jws.signature[: curve[2]], "big")
                s = int.from_bytes(jws.signature[curve[2] :], "big")
                key.verify(encode_dss_signature(r, s), jws.signing_input, ec.ECDSA(_HASHES[alg]))
                return
    except InvalidSignature:
        raise malformed("the JWS signature does not verify with the account key") from None
    raise AcmeError(
        "badSignatureAlgorithm",
        f"alg {alg} does not match the key's type",
        algorithms=list(SIGNATURE_ALGORITHMS),
    )


def verify_mac(jws: Jws, key: bytes) -> bool:
    """The External Account Binding's MAC (RFC 8555 §7.3.4: HS256, or HS384/HS512)."""
    digest = MAC_ALGORITHMS.get(str(jws.protected.get("alg")))
    if digest is None:
        raise malformed("externalAccountBinding alg must be HS256 (or HS384, HS512)")
    expected = hmac.new(key, jws.signing_input, digest).digest()
    return hmac.compare_digest(expected, jws.signature)
