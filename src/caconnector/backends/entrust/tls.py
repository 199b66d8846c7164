"""The TLS context of every Entrust API call: mutual TLS with the user's certificate and private key, both
loaded from memory, and the system's trust anchors plus those of `-cacert`.

Why a memfd: Python's `ssl` module loads a certificate chain and key only from a path
(`SSLContext.load_cert_chain`), and httpx takes an `ssl.SSLContext` (pyOpenSSL's `use_privatekey` takes a
key object, but builds an `OpenSSL.SSL.Context`, which httpx cannot use). A temporary file would put the key
in clear on a filesystem, if only for a moment, where backups, snapshots or another process could catch
it. `os.memfd_create` makes an anonymous file that lives only in memory (it has no name in any
directory); OpenSSL reads it through `/proc/self/fd/N`, and the descriptor is closed at once, which frees
it. The key material reaches OpenSSL, never a disk.
"""

from __future__ import annotations

import os
import ssl
from contextlib import suppress
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from caconnector.backends.entrust.config import EntrustConfig
from caconnector.backends.errors import ConfigError
from caconnector.pki.chain import load_certificates
from caconnector.pki.errors import PKIError
from caconnector.pki.keys import load_private_key


def _credentials_pem(config: EntrustConfig) -> bytes:
    """The certificate (and any chain given with it) and the key, as one PEM document for OpenSSL."""
    certificates = load_certificates(config.cert.get_secret_value().encode())
    key = load_private_key(config.key.get_secret_value().encode())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    chain_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)
    return chain_pem + key_pem


def _load_from_memory(context: ssl.SSLContext, pem: bytes) -> None:
    """`load_cert_chain` from an anonymous in-memory file (see the module's doc)."""
    fd = os.memfd_create("entrust-client-credentials", os.MFD_CLOEXEC)
    try:
        view = memoryview(pem)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        # The same file through /proc: OpenSSL opens it by path, and reads it from the start.
        context.load_cert_chain(str(Path("/proc/self/fd") / str(fd)))
    finally:
        with suppress(OSError):
            os.close(fd)


def client_context(config: EntrustConfig, backend: str) -> ssl.SSLContext:
    """The TLS context for the Entrust API; raises ConfigError naming -cert, -key or -cacert."""
    if not hasattr(os, "memfd_create"):
        raise ConfigError(
            f"backend {backend!r}: -type entrust needs Linux (its private key is handed to TLS through an "
            "in-memory file, never written to disk)"
        )
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if config.cacert is not None:
        try:
            anchors = load_certificates(config.cacert.encode())
            context.load_verify_locations(
                cadata="".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in anchors)
            )
        except (PKIError, ssl.SSLError):
            raise ConfigError(f"backend {backend!r}: -cacert holds no usable CA certificate") from None
    try:
        pem = _credentials_pem(config)
    except PKIError:
        raise ConfigError(
            f"backend {backend!r}: -cert or -key cannot be read; give the user's Entrust certificate and "
            "its unencrypted private key again with backend update"
        ) from None
    try:
        _load_from_memory(context, pem)
    except ssl.SSLError:
        # Never OpenSSL's text: it may quote what it could not parse.
        raise ConfigError(
            f"backend {backend!r}: -key cannot be used for TLS with the certificate of -cert "
            "(OpenSSL refused the pair); give an RSA or EC key in PKCS#8"
        ) from None
    return context
