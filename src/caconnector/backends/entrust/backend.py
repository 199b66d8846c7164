"""The `entrust` backend: Entrust Certificate Services through its Enterprise API v2.

How our contract maps onto ECS:

- ECS has no CAs to choose from: it picks the issuing CA from the certType. `check()` reports the account
  as one CA (`ecs`), the certTypes it holds inventory of as products, and the organizations (clients)
  with their verification status: only APPROVED ones are `validated`, so the manager refuses enrollments
  for the others before an order is placed. Enroll refuses them too, for the same reason.
- An order is `POST /certificates`. It is answered 201 with the certificate, or 202 when the certType needs
  an administrator's approval: then Pending, and `collect(trackingId)` reads it until ACTIVE (Issued)
  or DECLINED (Rejected, with Entrust's reason).
- No idempotency key: our request id goes into `tracking.trackingInfo`. The tracking id of each order is
  kept (`store`); before ordering again after an attempt whose answer we never got, we look for our
  request id in the account's certificates, so a redelivered enroll finds its earlier order.
- ECS has no API that lists its CA certificates: the backend keeps the issuing CA certificate of the last
  chain it received (public data, `issuer.pem` in its state directory) and reports it as the `ecs` CA's
  certificate, so the manager can show which CA issues and check chains against it.
- Revoke is by tracking id; ECS finds a certificate by `serialNumber` spelled its way (upper-case hex,
  leading zeros dropped), so every serial it answers is compared in our canonical form.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from caconnector.backends.base import (
    VALIDATED,
    BackendContext,
    CAInfo,
    CheckResult,
    EnrollRequest,
    Issued,
    Organization,
    Pending,
    Product,
    RevokeRequest,
)
from caconnector.backends.entrust.client import EcsCertificate, EcsOrganization, EntrustClient, Throttled
from caconnector.backends.entrust.config import EntrustConfig
from caconnector.backends.entrust.store import EntrustStore
from caconnector.backends.errors import AuthError, ConfigError, Rejected, Transient
from caconnector.pki.chain import order_chain
from caconnector.pki.keys import key_type_of, public_keys_equal
from caconnector.pki.names import common_name
from caconnector.pki.revocation import RevocationReason
from caconnector.pki.serial import canonical_serial

if TYPE_CHECKING:
    from caconnector.backends.base import Backend, Collector, Scanner

CA_ID = "ecs"
# How long one attempt at ordering can take (calls time out after 30 s; short throttling is waited out).
IN_FLIGHT = dt.timedelta(seconds=120)
ISSUER_FILE = "issuer.pem"
DEFAULT_LIFETIME_DAYS = 365
APPROVED = "APPROVED"
# Statuses of an order that has (or had) a certificate, as ECS and public clients name them.
_ISSUED = frozenset(
    {"ACTIVE", "READY", "REISSUED", "RENEWED", "EXPIRED", "REVOKED", "DEACTIVATED", "SUSPENDED"}
)
_WAITING = frozenset({"PENDING", "APPROVED"})
_REVOKED = frozenset({"REVOKED", "DEACTIVATED"})
_TRACKING_PREFIX = "caconnector request "
# Entrust accepts only these two crlReason values any more (Keyfactor's ECS plugin says so): every other
# reason is sent as unspecified, and named in the comment.
_KEY_COMPROMISE = "keyCompromise"
_UNSPECIFIED = "unspecified"
# Requester details are required in `tracking`; ECS wants an e-mail address and a phone number.
_REQUESTER_EMAIL = "ca-connector@connector.invalid"
_REQUESTER_PHONE = "0000000000"


def tracking_info(request_id: str) -> str:
    """What we write into `tracking.trackingInfo` for one of our requests, and look for before ordering."""
    return f"{_TRACKING_PREFIX}{request_id}"


def entrust_serial(serial: str) -> str:
    """A serial as ECS spells it: upper-case hex without leading zeros."""
    return canonical_serial(serial).upper()


class EntrustBackend:
    """One ECS account, reached as one API user with its client certificate."""

    def __init__(
        self,
        client: EntrustClient,
        *,
        name: str,
        username: str,
        now: Callable[[], dt.datetime],
        state_dir: Path,
        store: EntrustStore | None = None,
    ) -> None:
        self._client = client
        self._name = name
        self._username = username
        self._now = now
        self._issuer_file = state_dir / ISSUER_FILE
        self._store = store or EntrustStore(state_dir, name)

    @classmethod
    def from_config(cls, config: EntrustConfig, context: BackendContext) -> EntrustBackend:
        return cls(
            EntrustClient.from_config(config, context.name),
            name=context.name,
            username=config.username.get_secret_value(),
            now=context.now,
            state_dir=context.state_dir,
        )

    # -- required -------------------------------------------------------------------------------------

    def check(self) -> CheckResult:
        version = self._client.version()
        organizations = tuple(_organization(o) for o in self._client.organizations())
        issuer = self._last_issuer()
        ca = CAInfo(
            id=CA_ID,
            name=f"Entrust Certificate Services (API {version})",
            subject=issuer.subject.rfc4514_string() if issuer else "",
            key_type=key_type_of(issuer.public_key()) if issuer else "unknown",
            serial=canonical_serial(issuer.serial_number) if issuer else "",
            not_after=issuer.not_valid_after_utc if issuer else None,
            certificate=issuer,
        )
        return CheckResult(cas=(ca,), products=self._products(), organizations=organizations)

    def enroll(self, request: EnrollRequest) -> Issued | Pending:
        if request.ca not in (None, CA_ID):
            raise Rejected(f"backend {self._name!r} has one CA, {CA_ID!r}, not {request.ca!r}")
        if not request.product:
            raise Rejected(
                f"backend {self._name!r}: name the certType to order as the profile's product "
                "(e.g. STANDARD_SSL, PRIVATE_SSL)"
            )
        days = DEFAULT_LIFETIME_DAYS if request.validity_days is None else request.validity_days
        if days < 1:
            raise Rejected(f"validity of {days} days is out of range; ask for at least 1 day")
        organization = self._organization_for(request.organization)
        tracking_id = self._order_on_record(request)
        if tracking_id is not None:
            return self._outcome(self._client.certificate(tracking_id), request)
        try:
            ordered = self._client.order(self._order_body(request, days, organization))
        except (Rejected, AuthError, ConfigError, Throttled):
            # ECS answered, and ordered nothing: the next attempt starts fresh, without the lookup.
            self._store.release(request.request_id)
            raise
        self._store.record(request.request_id, ordered.certificate.tracking_id, self._now())
        if ordered.awaiting_approval:
            return _pending(ordered.certificate)
        return self._outcome(ordered.certificate, request)

    def revoke(self, request: RevokeRequest) -> None:
        try:
            serial = canonical_serial(request.serial)
        except (TypeError, ValueError) as exc:
            raise Rejected(str(exc)) from None
        found = self._find_by_serial(serial)
        if found.status in _REVOKED:
            return  # revoking is idempotent: the first date and reason stand
        reason = _KEY_COMPROMISE if request.reason is RevocationReason.KEY_COMPROMISE else _UNSPECIFIED
        self._client.revoke(found.tracking_id, reason, f"revoked by ca-connector: {request.reason.value}")

    # -- optional abilities ---------------------------------------------------------------------------

    def collect(self, order_ref: str) -> Issued | Pending:
        try:
            tracking_id = int(order_ref)
        except ValueError:
            raise Rejected(f"order {order_ref!r} is not an Entrust tracking id") from None
        return self._outcome(self._client.certificate(tracking_id), None)

    def scan(self, since: dt.datetime | None = None) -> Iterator[Issued]:
        """Every certificate of the account (issued at or after `since`); orders without a certificate
        (pending, declined) are skipped."""
        for listed in self._client.all_certificates():
            if listed.status not in _ISSUED:
                continue
            record = listed if listed.end_entity_cert else self._client.certificate(listed.tracking_id)
            if not record.end_entity_cert:
                continue
            issued = _issued(record)
            if since is None or issued.certificate.not_valid_before_utc >= since:
                yield issued

    # -- helpers ---------------------------------------------------------------------------------------

    def _products(self) -> tuple[Product, ...]:
        # Inventories are optional: a user allowed to order may not see them, which must not make the
        # whole backend Offline.
        try:
            types = self._client.product_types()
        except (AuthError, ConfigError, Rejected):
            return ()
        return tuple(Product(id=t, name=t, type="certType") for t in dict.fromkeys(types))

    def _organization_for(self, wanted: str | None) -> EcsOrganization | None:
        """The organization a request names (by client id or name), which must be APPROVED; None when
        the request names none (ECS then uses the primary client)."""
        if wanted is None:
            return None
        organizations = self._client.organizations()
        found = next((o for o in organizations if wanted in (str(o.client_id), o.name)), None)
        if found is None:
            known = ", ".join(f"{o.name} ({o.client_id})" for o in organizations) or "none"
            raise Rejected(f"organization {wanted} is not known at Entrust (the account has: {known})")
        if found.verification_status != APPROVED:
            raise Rejected(
                f"organization {found.name} (client {found.client_id}) is not validated at Entrust "
                f"(verification status {found.verification_status}); no order was placed"
            )
        return found

    def _order_on_record(self, request: EnrollRequest) -> int | None:
        """The tracking id of this request's order when one exists; None when it is ours to order now.

        Raises Transient while an earlier attempt may still be ordering (a redelivery that overtook it).
        """
        now = self._now()
        claim = self._store.claim(request.request_id, now)
        if claim.tracking_id is not None or claim.fresh:
            return claim.tracking_id
        # An earlier attempt got no answer, or is still running: look for our marker at Entrust.
        earlier = self._earlier_order(request.request_id)
        if earlier is not None:
            self._store.record(request.request_id, earlier.tracking_id, now)
            return earlier.tracking_id
        started = claim.earlier_attempt or now
        if now - started < IN_FLIGHT and started <= now:
            wait = (IN_FLIGHT - (now - started)).total_seconds()
            raise Transient(
                f"backend {self._name!r}: an earlier attempt of request {request.request_id} may still be "
                "ordering at Entrust; asking again once it has ended",
                retry_after=wait,
            )
        if not self._store.restart(request.request_id, started, now):
            raise Transient(
                f"backend {self._name!r}: another attempt of request {request.request_id} is ordering",
                retry_after=IN_FLIGHT.total_seconds(),
            )
        return None

    def _earlier_order(self, request_id: str) -> EcsCertificate | None:
        marker = tracking_info(request_id)
        return next((c for c in self._client.all_certificates() if c.tracking_info == marker), None)

    def _order_body(
        self, request: EnrollRequest, days: int, organization: EcsOrganization | None
    ) -> dict[str, Any]:
        csr = request.csr
        names = _alt_names(csr)
        cn = common_name(csr.subject) or (names[0] if names else None)
        if cn is None:
            raise Rejected("the CSR has neither a common name nor a DNS name for Entrust to certify")
        expiry = (self._now() + dt.timedelta(days=days)).date()
        body: dict[str, Any] = {
            "csr": csr.public_bytes(serialization.Encoding.PEM).decode("ascii"),
            "certType": request.product,
            "certExpiryDate": expiry.isoformat(),
            "cn": cn,
            "subjectAltName": names or [cn],
            "signingAlg": "SHA-2",
            "tracking": {
                "trackingInfo": tracking_info(request.request_id),
                "requesterName": self._username,
                "requesterEmail": _REQUESTER_EMAIL,
                "requesterPhone": _REQUESTER_PHONE,
            },
        }
        if organization is not None:
            body["clientId"] = organization.client_id
        return body

    def _outcome(self, record: EcsCertificate, request: EnrollRequest | None) -> Issued | Pending:
        if record.status == "DECLINED":
            reason = record.decline_reason or "no reason given"
            raise Rejected(f"Entrust declined the order (tracking id {record.tracking_id}): {reason}")
        if record.end_entity_cert and record.status not in _WAITING:
            issued = _issued(record)
            self._remember_issuer(issued)
            if request is not None and not public_keys_equal(
                issued.certificate.public_key(), request.csr.public_key()
            ):
                # Our tracking marker on another key's certificate: never hand that out.
                raise Rejected(
                    f"tracking id {record.tracking_id} carries request {request.request_id} but certifies "
                    "another key; the request id was reused for a different CSR"
                )
            return issued
        if record.status in _WAITING or record.status not in _ISSUED:
            return _pending(record)
        raise Rejected(
            f"Entrust holds tracking id {record.tracking_id} as {record.status}, with no certificate"
        )

    def _remember_issuer(self, issued: Issued) -> None:
        if not issued.chain or issued.chain[0] == self._last_issuer():
            return
        self._issuer_file.parent.mkdir(parents=True, exist_ok=True)
        partial = self._issuer_file.with_suffix(f".{os.getpid()}.tmp")
        partial.write_bytes(issued.chain[0].public_bytes(serialization.Encoding.PEM))
        partial.replace(self._issuer_file)  # atomic: a concurrent check reads the old or the new one

    def _last_issuer(self) -> x509.Certificate | None:
        try:
            return x509.load_pem_x509_certificate(self._issuer_file.read_bytes())
        except (OSError, ValueError):
            return None

    def _find_by_serial(self, serial: str) -> EcsCertificate:
        for candidate in self._client.certificates_by_serial(entrust_serial(serial)):
            if candidate.serial_number and canonical_serial(candidate.serial_number) == serial:
                return candidate
        # The filter is a convenience of the API; the paged list is the authority.
        for candidate in self._client.all_certificates():
            if candidate.serial_number and canonical_serial(candidate.serial_number) == serial:
                return candidate
        raise Rejected(f"no certificate with serial {serial} at Entrust for backend {self._name!r}")


def _organization(found: EcsOrganization) -> Organization:
    status = VALIDATED if found.verification_status == APPROVED else found.verification_status.lower()
    return Organization(
        id=str(found.client_id), name=found.name, status=status, validated_until=found.expires
    )


def _pending(record: EcsCertificate) -> Pending:
    return Pending(
        order_ref=str(record.tracking_id),
        reason=f"awaiting approval at Entrust (tracking id {record.tracking_id}, {record.status})",
    )


def _alt_names(csr: x509.CertificateSigningRequest) -> list[str]:
    """The CSR's DNS names and IP addresses, as ECS's subjectAltName takes them (plain values)."""
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
    names += [str(a) for a in san.get_values_for_type(x509.IPAddress)]
    return names


def _issued(record: EcsCertificate) -> Issued:
    try:
        leaf = x509.load_pem_x509_certificate((record.end_entity_cert or "").encode())
        candidates: list[x509.Certificate] = []
        for pem in record.chain_certs:
            candidates.extend(x509.load_pem_x509_certificates(pem.encode()))
    except ValueError:
        # The order exists at Entrust; asking again may bring a readable answer.
        raise Transient(
            f"Entrust answered tracking id {record.tracking_id} with an unreadable certificate"
        ) from None
    # chainCerts may begin with the end-entity certificate and need not be in order: rebuild the path by
    # signature (order_chain drops the leaf and duplicates).
    return Issued(
        certificate=leaf, chain=tuple(order_chain(leaf, candidates)), order_ref=str(record.tracking_id)
    )


if TYPE_CHECKING:
    # mypy proves here that the class satisfies the protocols it is used through.
    def _conforms(backend: EntrustBackend) -> tuple[Backend, Collector, Scanner]:
        return backend, backend, backend
