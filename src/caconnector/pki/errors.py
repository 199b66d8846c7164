"""The exceptions of `caconnector.pki`, grouped by what the caller can do about them.

Every class derives from `ValueError`: all of them mean "the input you gave me is unusable", so code that
only cares about bad input can catch `ValueError`, while an API layer can map `CSRError` to a 400 that
tells the requester to fix their CSR, and `ChainError` to a problem with the CA's configuration.
"""

from __future__ import annotations


class PKIError(ValueError):
    """Base of all `caconnector.pki` errors; `str()` is one line naming the problem (and the fix)."""

    def __init__(self, message: str) -> None:
        # The message ends up in log lines and HTTP problem details, where a stray newline (for instance
        # from an interpolated library message) would split or forge a record, so keep it on one line.
        super().__init__(" ".join(message.split()))


class CSRError(PKIError):
    """The certificate signing request cannot be used; the requester must send a different one."""


class CSRFormatError(CSRError):
    """Not PEM or DER, garbage, truncated, or not a certificate request at all."""


class CSRSignatureError(CSRError):
    """The CSR's self-signature does not verify: it was altered or signed with another key."""


class CSRKeyError(CSRError):
    """The CSR's public key type or size is not allowed."""


class CSRSubjectError(CSRError):
    """The CSR's subject breaks the subject policy (`pki.subject`): an attribute type, encoding, length or
    character that no certificate should carry."""


class CSRTooLargeError(CSRError):
    """The CSR input is over the size limit (checked before parsing, so it costs nothing)."""


class ChainError(PKIError):
    """A certificate chain cannot be assembled or ordered, or a link does not verify."""


class CertificateFormatError(PKIError):
    """Certificate or private key input that cannot be parsed."""


class KeyMismatchError(PKIError):
    """A private key does not belong to the certificate or request it was paired with."""
