"""The backend contract: three required operations, optional abilities as separate protocols.

Requests and results are frozen dataclasses carrying `cryptography` objects; `Pending` is a result,
not an exception. Errors are the tree in `errors`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol, runtime_checkable

from cryptography import x509

from caconnector.pki.revocation import RevocationReason

if TYPE_CHECKING:
    from caconnector.backends.options import BackendConfig


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class CAInfo:
    """One CA reachable through a backend. `id` is what `-ca` and profiles name it by."""

    id: str
    name: str
    subject: str
    key_type: str
    serial: str
    not_after: dt.datetime | None
    state: str = "active"
    certificate: x509.Certificate | None = None


@dataclass(frozen=True)
class Organization:
    """An organization as the CA validates it (DigiCert, Entrust). `status` is `validated` when the CA
    will issue for it now; any other word (the CA's own, e.g. `pending`) when not: the manager refuses
    enrollments for it before an order is placed."""

    id: str
    name: str
    status: str
    validated_until: dt.datetime | None = None

    @property
    def validated(self) -> bool:
        return self.status == VALIDATED


VALIDATED = "validated"


@dataclass(frozen=True)
class Product:
    """Something the CA sells or offers to order (DigiCert's product name id, Entrust's certType).
    `ca_ids` are the CAs it may issue from, where the CA says (DigiCert private SSL)."""

    id: str
    name: str
    type: str | None = None
    ca_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class CheckResult:
    """What `check()` found: the CAs behind the backend, plus what the CA lets one order: templates
    (AD CS, the local CA), products (DigiCert, Entrust) and organizations (where the CA validates them)."""

    cas: tuple[CAInfo, ...]
    templates: tuple[str, ...] = ()
    products: tuple[Product, ...] = ()
    organizations: tuple[Organization, ...] = ()


@dataclass(frozen=True)
class EnrollRequest:
    """One certificate to issue. `request_id` is the idempotency source for every CA call that takes one."""

    csr: x509.CertificateSigningRequest
    request_id: str
    ca: str | None = None
    # A template is what AD CS and the local CA issue by; a product is what DigiCert and Entrust sell.
    # A backend reads the one its CA has and ignores the other.
    template: str | None = None
    product: str | None = None
    # The organization, by the CA's id or its name, where the CA validates organizations.
    organization: str | None = None
    validity_days: int | None = None


@dataclass(frozen=True)
class RenewalWindow:
    """When the CA suggests renewing (ACME Renewal Information, RFC 9773)."""

    start: dt.datetime
    end: dt.datetime
    explanation_url: str | None = None


@dataclass(frozen=True)
class Issued:
    """An issued certificate; `chain` runs from its issuer up to and including the root."""

    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    order_ref: str | None = None
    renewal_window: RenewalWindow | None = None


@dataclass(frozen=True)
class Pending:
    """The CA accepted the order but has not issued yet (approval, DCV, asynchronous issuance)."""

    order_ref: str
    reason: str
    retry_after: float | None = None


@dataclass(frozen=True)
class RevokeRequest:
    serial: str  # canonical form, see caconnector.pki.serial
    reason: RevocationReason = RevocationReason.UNSPECIFIED
    ca: str | None = None


@dataclass(frozen=True)
class RevocationRequested:
    """The CA took the revocation as a request that someone there must still approve (DigiCert): the
    certificate is not revoked yet, and must not be shown as revoked."""

    reason: str
    ref: str | None = None


class Backend(Protocol):
    """Required of every backend."""

    def check(self) -> CheckResult:
        """Test credentials and reachability; return the CAs found.

        Raises AuthError, ConfigError, Transient.
        """
        ...

    def enroll(self, request: EnrollRequest) -> Issued | Pending:
        """Issue (or order) a certificate. Raises Rejected for a request the CA refuses for good."""
        ...

    def revoke(self, request: RevokeRequest) -> RevocationRequested | None:
        """Revoke by serial: None when revoked. Raises Rejected when the CA does not know the serial."""
        ...


@runtime_checkable
class Collector(Protocol):
    """Backends whose orders can wait (DCV, approval, asynchronous issuance)."""

    def collect(self, order_ref: str) -> Issued | Pending: ...


@runtime_checkable
class Scanner(Protocol):
    """Backends that can list what the CA has issued, for import."""

    def scan(self, since: dt.datetime | None = None) -> Iterator[Issued]: ...


@runtime_checkable
class CRLPublisher(Protocol):
    """Backends that publish a CRL themselves (the local CA)."""

    def crl(self, ca: str | None = None) -> x509.CertificateRevocationList: ...


@dataclass(frozen=True)
class BackendContext:
    """What a backend gets from the connector besides its config: its own state directory and the clock."""

    name: str
    state_dir: Path
    now: Callable[[], dt.datetime] = field(default=_utcnow)


class BackendType(Protocol):
    """What the `caconnector.backends` entry point names: a factory for one backend type."""

    type_name: ClassVar[str]
    config_model: ClassVar[type[BackendConfig]]

    def provision(self, config: BackendConfig, context: BackendContext) -> BackendConfig:
        """Complete a validated config at `backend add` (e.g. create the local CA's key).

        Pure: stores nothing; the caller stores the result in one transaction.
        """
        ...

    def open(self, config: BackendConfig, context: BackendContext) -> Backend:
        """Build a ready backend from a stored config."""
        ...
