"""Key generation, loading and the key policy shared by every backend.

Key types are named by short strings (`ec-p256`, `rsa-3072`, `ed25519`) so that config files, the CLI,
the API and stored records all spell them the same way.
"""

from __future__ import annotations

from typing import TypeAlias

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from caconnector.pki.errors import CertificateFormatError, CSRKeyError

KEY_TYPES: tuple[str, ...] = ("ec-p256", "ec-p384", "ec-p521", "rsa-2048", "rsa-3072", "rsa-4096", "ed25519")

PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey: TypeAlias = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

# RSA below 2048 bits is no longer accepted by public CAs (CA/Browser Forum) and is factorable in
# practice; above 16384 bits signing a CSR takes long enough to be a denial-of-service vector.
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 16384

_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "ec-p256": ec.SECP256R1,
    "ec-p384": ec.SECP384R1,
    "ec-p521": ec.SECP521R1,
}
# Our names for the NIST curves; other curves are reported by their OpenSSL name (`ec-secp256k1`).
_CURVE_NAMES: dict[str, str] = {"secp256r1": "ec-p256", "secp384r1": "ec-p384", "secp521r1": "ec-p521"}
_RSA_SIZES: dict[str, int] = {"rsa-2048": 2048, "rsa-3072": 3072, "rsa-4096": 4096}
# Names for the other key families; RSA and DSA names get their size appended (`dsa-2048`). Finite-field
# DH is left out on purpose: touching `dh` warns of its deprecation, and it cannot be in a CSR anyway.
_FAMILIES: tuple[tuple[type[object], str], ...] = (
    (rsa.RSAPublicKey, "rsa"),
    (dsa.DSAPublicKey, "dsa"),
    (ed25519.Ed25519PublicKey, "ed25519"),
    (ed448.Ed448PublicKey, "ed448"),
    (x25519.X25519PublicKey, "x25519"),
    (x448.X448PublicKey, "x448"),
)


def generate_private_key(key_type: str) -> PrivateKey:
    """Generate a new private key of one of `KEY_TYPES`."""
    if key_type in _CURVES:
        return ec.generate_private_key(_CURVES[key_type]())
    if key_type in _RSA_SIZES:
        # 65537 is the only public exponent any CA or client expects.
        return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_SIZES[key_type])
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown key type {key_type!r}; use one of: {', '.join(KEY_TYPES)}")


def key_type_of(public_key: PublicKeyTypes) -> str:
    """Name the key's type and size the way `KEY_TYPES` does, or descriptively for anything else."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        name = public_key.curve.name
        return _CURVE_NAMES.get(name, f"ec-{name}")
    # Anything not in the table (ML-DSA, DH) is named after its class: `MLDSA65PublicKey` -> "mldsa65".
    fallback = type(public_key).__name__.lower().removesuffix("publickey")
    family = next((name for cls, name in _FAMILIES if isinstance(public_key, cls)), fallback)
    if isinstance(public_key, rsa.RSAPublicKey | dsa.DSAPublicKey):
        return f"{family}-{public_key.key_size}"
    return family


def check_key_allowed(public_key: PublicKeyTypes) -> str:
    """Return the key's type name, or raise `CSRKeyError` if our policy does not allow it.

    Allowed: RSA of 2048 to 16384 bits, EC on P-256, P-384 or P-521, and Ed25519: what every CA we
    connect to can sign and every relying party can verify.
    """
    key_type = key_type_of(public_key)
    if isinstance(public_key, rsa.RSAPublicKey):
        bits = public_key.key_size
        if bits < MIN_RSA_BITS:
            raise CSRKeyError(f"CSR key is RSA {bits} bits; RSA keys must be at least {MIN_RSA_BITS} bits")
        if bits > MAX_RSA_BITS:
            raise CSRKeyError(f"CSR key is RSA {bits} bits; RSA keys must be at most {MAX_RSA_BITS} bits")
        return key_type
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.name not in _CURVE_NAMES:
            raise CSRKeyError(
                f"CSR key is EC on curve {public_key.curve.name}; EC keys must use P-256, P-384 or P-521"
            )
        return key_type
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return key_type
    raise CSRKeyError(
        f"CSR key type {key_type} is not allowed; use RSA (2048 bits or more), EC P-256/P-384/P-521 "
        "or Ed25519"
    )


def load_private_key(data: bytes) -> PrivateKey:
    """Load an unencrypted private key from PEM or DER.

    Error messages never quote the input: it is key material and messages end up in logs.
    """
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_private_key(data, password=None)
        else:
            key = serialization.load_der_private_key(data, password=None)
    except TypeError:
        # cryptography's way of saying "encrypted, and no password given".
        raise CertificateFormatError(
            "private key is encrypted; supply it unencrypted (for example `openssl pkey -in key.pem`)"
        ) from None
    except UnsupportedAlgorithm:
        raise CertificateFormatError("private key uses an unsupported algorithm") from None
    except ValueError:
        # `from None`: the library's message is harmless today, but nothing about key input gets chained.
        raise CertificateFormatError(
            "private key is not an unencrypted PEM or DER key, or is truncated or corrupt"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        raise CertificateFormatError(
            f"private key type {key_type_of(key.public_key())} is not supported; use RSA, EC or Ed25519"
        )
    return key


def private_key_pem(key: PrivateKey) -> bytes:
    """Serialise a private key as unencrypted PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`)."""
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def signature_hash_for(private_key: PrivateKey) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | None:
    """The hash to pass to `builder.sign(private_key, ...)` for this key.

    EC keys get a hash matching the curve strength (RFC 5480 section 4, and what CA/B Forum BR 7.1.3.2
    requires for P-256/P-384); Ed25519 signs the message itself, so the hash must be None. The return
    type names the concrete hashes because `builder.sign` is typed to accept only those.
    """
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        size = private_key.curve.key_size
        if size > 384:
            return hashes.SHA512()
        if size > 256:
            return hashes.SHA384()
    return hashes.SHA256()


def public_keys_equal(a: PublicKeyTypes, b: PublicKeyTypes) -> bool:
    """Whether two public keys are the same key, compared by their SubjectPublicKeyInfo DER."""
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return a.public_bytes(der, spki) == b.public_bytes(der, spki)
