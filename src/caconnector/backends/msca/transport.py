"""What the backend needs of a way to reach AD CS, whichever it is (RPC or Web Enrollment): submit a
request, ask again about one by its request id, and read the CA's certificate and chain.

Both transports answer with a `Disposition`, AD CS's own three outcomes ([MS-WCCE] 3.2.1.4.3.1.1:
issued, under submission, denied); errors are already the backend error tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from cryptography import x509

from caconnector.pki.revocation import RevocationReason


class Outcome(Enum):
    ISSUED = "issued"
    PENDING = "pending"
    DENIED = "denied"


@dataclass(frozen=True)
class Disposition:
    """What AD CS said about one request. `request_id` is None only when the CA assigned none (a request
    it could not even parse); `message` is the CA's disposition message, verbatim."""

    outcome: Outcome
    request_id: int | None
    message: str = ""
    certificate: x509.Certificate | None = None
    # The issuing CA's chain when the transport got it with the certificate (MS-ICPR's pctbCert).
    chain: tuple[x509.Certificate, ...] = ()


class Transport(Protocol):
    def submit(self, request: bytes, template: str) -> Disposition:
        """Submit a DER request (PKCS#10 or CMS) for `template`."""
        ...

    def retrieve(self, request_id: int) -> Disposition:
        """Ask again about a request: issued (with its certificate), still pending, or denied."""
        ...

    def ca_certificates(self) -> list[x509.Certificate]:
        """The CA's current certificate first, then its chain up to the root."""
        ...


class Revoker(Protocol):
    def revoke(self, serial: str, reason: RevocationReason) -> None:
        """Revoke a certificate by its serial (canonical hex) with an RFC 5280 reason."""
        ...
