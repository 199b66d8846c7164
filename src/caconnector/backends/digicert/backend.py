"""The `digicert` backend type: DigiCert CertCentral through its Services API v2.

What CertCentral calls things, and how our contract maps onto them:

- A **product** (`name_id`, e.g. `ssl_basic`, `private_ssl_plus`) is what is ordered; profiles name it
  (`EnrollRequest.product`). check() lists the products the key may order.
- An **organization** is validated by DigiCert (OV/EV). check() reports each with `validated` or
  DigiCert's own status word, so the manager refuses an enrollment for one that is not validated before
  any order exists. A profile names it by id or by name (a name is resolved through `GET /organization`).
- **CAs**: private SSL products name the CAs they may issue from (`allowed_ca_certs[].id`, sent as
  `ca_cert_id`); each is reported as a CA with that id. Public products issue from whatever intermediate
  DigiCert picks for the product: one CA `digicert` stands for them. CertCentral does not serve the CA
  certificates themselves, so a CA's certificate is shown once an issued chain has shown it.
- CertCentral does not read names from the CSR: the common name and the DNS SANs are sent explicitly,
  taken from the CSR the manager validated.
- Orders can wait (approval, domain validation); DCV is finished at DigiCert, never by us. An order that
  waits is `Pending(order_ref=<order id>)`, collected with `GET /order/certificate/{id}`.

Exactly once: CertCentral has no idempotency key. Our request id goes into the order's `comments`; before
ordering, the backend looks for the order of that request id in its own record, then in CertCentral's
orders (every page). Revocation goes by certificate id, recorded per serial at issue time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

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
    RevocationRequested,
    RevokeRequest,
)
from caconnector.backends.digicert.client import CertCentral, Order, OrderRequest, PlacedOrder
from caconnector.backends.digicert.config import DigicertConfig
from caconnector.backends.digicert.store import DigicertStore
from caconnector.backends.errors import AuthError, NotSupported, Rejected
from caconnector.pki.chain import order_chain
from caconnector.pki.keys import key_type_of, public_keys_equal
from caconnector.pki.names import common_name
from caconnector.pki.revocation import RevocationReason
from caconnector.pki.serial import canonical_serial

if TYPE_CHECKING:
    from caconnector.backends.base import Backend, Collector, Scanner

# The CA id that stands for DigiCert's public issuing CAs (no ca_cert_id is sent).
PUBLIC_CA = "digicert"
PUBLIC_CA_NAME = "DigiCert public CAs (DigiCert picks the issuing CA of each product)"
DEFAULT_VALIDITY_DAYS = 397  # the longest a public TLS certificate may be valid
# How far back the lookup of an earlier order of the same request reads CertCentral's orders.
LOOKBACK = dt.timedelta(days=30)
WAITING = frozenset(
    {"pending", "processing", "needs_approval", "needs_csr", "waiting_pickup", "reissue_pending"}
)
REFUSED = frozenset({"rejected", "canceled", "cancelled", "denied"})
# Validation statuses CertCentral shows for a completed validation.
_COMPLETED = frozenset({"active", "validated", "completed", "approved"})
# RFC 5280 reasons CertCentral takes (`PUT /certificate/{id}/revoke` `reason`).
_REASONS = {
    RevocationReason.UNSPECIFIED: "unspecified",
    RevocationReason.KEY_COMPROMISE: "key_compromise",
    RevocationReason.AFFILIATION_CHANGED: "affiliation_changed",
    RevocationReason.SUPERSEDED: "superseded",
    RevocationReason.CESSATION_OF_OPERATION: "cessation_of_operation",
}
_SIGNATURE_HASHES = {"sha256", "sha384", "sha512"}


def request_marker(request_id: str) -> str:
    """What the order's comments carry so a later lookup finds it; bracketed so that req-1 never
    matches the order of req-10."""
    return f"[caconnector request {request_id}]"


def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        try:
            parsed = dt.datetime.strptime(text[:10], "%Y-%m-%d")
        except ValueError:
            return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def _is_private(product: dict[str, Any]) -> bool:
    return "private" in str(product.get("type", "")).lower() or str(product.get("name_id", "")).startswith(
        "private_"
    )


# What an order's status means for the one waiting, in the manager's words.
_WAITS_FOR = {
    "needs_approval": "waits for an approver in CertCentral",
    "pending": "waits for validation at DigiCert (domain control, or the organization)",
    "processing": "is being processed by DigiCert",
}


def _waiting(order_id: str, status: str) -> str:
    return f"DigiCert order {order_id} {_WAITS_FOR.get(status, f'is {status}')}"


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _serial_int(text: str) -> int | None:
    try:
        return int(text.replace(":", "").strip(), 16)
    except ValueError:
        return None


def _same_csr(order: Order, csr: x509.CertificateSigningRequest) -> bool:
    held = (
        order.raw.get("certificate", {}).get("csr")
        if isinstance(order.raw.get("certificate"), dict)
        else None
    )
    if not isinstance(held, str) or not held.strip():
        return False
    try:
        return x509.load_pem_x509_csr(held.encode()).public_bytes(serialization.Encoding.DER) == (
            csr.public_bytes(serialization.Encoding.DER)
        )
    except ValueError:
        return False


def csr_names(csr: x509.CertificateSigningRequest) -> tuple[str, list[str]]:
    """The common name and DNS names to order: CertCentral reads neither from the CSR. Without a common
    name, the first DNS name is the order's common name."""
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns_names = san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        dns_names = []
    cn = common_name(csr.subject) or (dns_names[0] if dns_names else None)
    if cn is None:
        raise Rejected("the CSR has neither a common name nor a DNS name for DigiCert to certify")
    return cn, dns_names


def open_certcentral(config: DigicertConfig, context: BackendContext) -> DigiCert:
    return DigiCert(
        CertCentral.connect(config, context.name),
        DigicertStore(context.state_dir, context.name),
        name=context.name,
        now=context.now,
    )


class DigiCert:
    """One CertCentral account, as its API key sees it."""

    def __init__(
        self, client: CertCentral, store: DigicertStore, *, name: str, now: Callable[[], dt.datetime]
    ) -> None:
        self._client = client
        self._store = store
        self._name = name
        self._now = now
        self._organization_ids: dict[str, str] | None = None

    # -- required -------------------------------------------------------------------------------------

    def check(self) -> CheckResult:
        with self._client.session():
            return self._check()

    def _check(self) -> CheckResult:
        products: list[Product] = []
        cas: dict[str, CAInfo] = {}
        for listed in self._client.products():
            name_id = str(listed.get("name_id", ""))
            if not name_id:
                continue
            ca_ids: tuple[str, ...] = ()
            if _is_private(listed):
                detail = self._client.product(name_id)
                allowed = [c for c in detail.get("allowed_ca_certs") or () if isinstance(c, dict)]
                ca_ids = tuple(str(c["id"]) for c in allowed if c.get("id") is not None)
                for ca in allowed:
                    if ca.get("id") is not None:
                        cas.setdefault(
                            str(ca["id"]), self._ca_info(str(ca["id"]), str(ca.get("name") or ca["id"]))
                        )
            elif PUBLIC_CA not in cas:
                cas[PUBLIC_CA] = self._ca_info(PUBLIC_CA, PUBLIC_CA_NAME)
            products.append(
                Product(
                    id=name_id,
                    name=str(listed.get("name") or name_id),
                    type=str(listed["type"]) if listed.get("type") else None,
                    ca_ids=ca_ids,
                )
            )
        organizations = tuple(self._organization(o) for o in self._client.organizations())
        self._organization_ids = {o.name: o.id for o in organizations}
        return CheckResult(cas=tuple(cas.values()), products=tuple(products), organizations=organizations)

    def enroll(self, request: EnrollRequest) -> Issued | Pending:
        with self._client.session():
            return self._enroll(request)

    def _enroll(self, request: EnrollRequest) -> Issued | Pending:
        if not request.product:
            raise Rejected(
                f"backend {self._name!r}: the profile names no DigiCert product; set its product to a "
                "product name id such as ssl_basic or private_ssl_plus (backend test lists them)"
            )
        existing = self._existing_order(request)
        if existing is not None:
            return self._outcome(existing)
        placed = self._client.place_order(request.product, self._order_body(request))
        self._store.remember_order(request.request_id, placed.id)
        return self._placed(placed, request)

    def revoke(self, request: RevokeRequest) -> RevocationRequested | None:
        with self._client.session():
            return self._revoke(request)

    def _revoke(self, request: RevokeRequest) -> RevocationRequested | None:
        try:
            serial = canonical_serial(request.serial)
        except (TypeError, ValueError) as exc:
            raise Rejected(str(exc)) from None
        reason = _REASONS.get(request.reason)
        if reason is None:
            raise NotSupported(
                f"DigiCert does not revoke for reason {request.reason.value}; use one of "
                f"{', '.join(r.value for r in _REASONS)}"
            )
        certificate_id = self._store.certificate_of(serial) or self._find_certificate(serial)
        try:
            answer = self._client.revoke_certificate(
                certificate_id, reason, f"revoked through caconnector backend {self._name}"
            )
        except Rejected:
            # Revoking is idempotent for us: a revoke asked again after the first went through (its
            # answer lost) finds the certificate revoked, and that is done, not refused.
            if self._is_revoked(certificate_id):
                return None
            raise
        if answer.status == 201:
            ref = str(answer.body.get("id", "")) or None
            return RevocationRequested(
                reason=f"DigiCert took the revocation of certificate {certificate_id} as request {ref}, "
                "which an administrator must approve in CertCentral",
                ref=ref,
            )
        return None

    # -- optional abilities ---------------------------------------------------------------------------

    def collect(self, order_ref: str) -> Issued | Pending:
        with self._client.session():
            return self._collect(order_ref)

    def _collect(self, order_ref: str) -> Issued | Pending:
        return self._outcome(self._client.order(order_ref))

    def scan(self, since: dt.datetime | None = None) -> Iterator[Issued]:
        """Every issued order of the account (created at or after `since`), with its certificate."""
        with self._client.session():
            yield from self._scan(since)

    def _scan(self, since: dt.datetime | None) -> Iterator[Issued]:
        for order in self._client.orders({"status": "issued"}):
            if order.status != "issued":
                continue
            created = _parse_time(order.raw.get("date_created"))
            if since is not None and created is not None and created < since:
                continue
            certificate_id = order.certificate_id or self._client.order(order.id).certificate_id
            if certificate_id:
                yield self._download(certificate_id, order.id, None)

    # -- helpers --------------------------------------------------------------------------------------

    def _ca_info(self, ca_id: str, name: str) -> CAInfo:
        pem = self._store.issuer_of(ca_id)
        certificate = x509.load_pem_x509_certificate(pem.encode()) if pem else None
        if certificate is None:
            return CAInfo(id=ca_id, name=name, subject="", key_type="unknown", serial="", not_after=None)
        return CAInfo(
            id=ca_id,
            name=name,
            subject=certificate.subject.rfc4514_string(),
            key_type=key_type_of(certificate.public_key()),
            serial=canonical_serial(certificate.serial_number),
            not_after=certificate.not_valid_after_utc,
            state="expired" if certificate.not_valid_after_utc <= self._now() else "active",
            certificate=certificate,
        )

    def _organization(self, listed: dict[str, Any]) -> Organization:
        organization_id = str(listed.get("id", ""))
        name = str(listed.get("name") or listed.get("display_name") or organization_id)
        if "validations" in listed:
            validations = [v for v in listed.get("validations") or () if isinstance(v, dict)]
        else:
            validations = self._client.organization_validations(organization_id)
        now = self._now()
        good = [
            _parse_time(v.get("validated_until"))
            for v in validations
            if str(v.get("status", "")).lower() in _COMPLETED
            and ((until := _parse_time(v.get("validated_until"))) is None or until > now)
        ]
        if listed.get("is_active") is False:
            return Organization(id=organization_id, name=name, status="inactive")
        if good:
            # The latest of the completed validations; none at all when one has no end.
            dated = [until for until in good if until is not None] if None not in good else []
            return Organization(
                id=organization_id, name=name, status=VALIDATED, validated_until=max(dated, default=None)
            )
        if validations:
            words = {str(v.get("status", "")).lower() for v in validations}
            status = "expired" if words <= _COMPLETED else sorted(words - _COMPLETED)[0] or "not_validated"
        else:
            status = "not_validated"
        return Organization(id=organization_id, name=name, status=status)

    def _organization_id(self, wanted: str) -> str:
        if wanted.isdigit():
            return wanted
        if self._organization_ids is None or wanted not in self._organization_ids:
            self._organization_ids = {
                str(o.get("name")): str(o.get("id")) for o in self._client.organizations()
            }
        found = self._organization_ids.get(wanted)
        if found is None:
            known = ", ".join(sorted(self._organization_ids)) or "none"
            raise Rejected(f"organization {wanted!r} is not known to DigiCert (the key sees: {known})")
        return found

    def _order_body(self, request: EnrollRequest) -> dict[str, Any]:
        csr = request.csr
        cn, dns_names = csr_names(csr)
        algorithm = csr.signature_hash_algorithm
        signature_hash = algorithm.name if isinstance(algorithm, hashes.HashAlgorithm) else "sha256"
        certificate: dict[str, Any] = {
            "common_name": cn,
            "dns_names": dns_names,
            "csr": csr.public_bytes(serialization.Encoding.PEM).decode("ascii"),
            "signature_hash": signature_hash if signature_hash in _SIGNATURE_HASHES else "sha256",
        }
        if request.ca and request.ca != PUBLIC_CA:
            certificate["ca_cert_id"] = request.ca
        body: dict[str, Any] = {
            "certificate": certificate,
            "order_validity": {"days": request.validity_days or DEFAULT_VALIDITY_DAYS},
            "comments": f"{request_marker(request.request_id)} ordered by caconnector backend {self._name}",
            # The connector's user is a Manager or Administrator (the reference document's requirement),
            # who may skip the approval step; where the account still wants approval, the order waits.
            "skip_approval": True,
        }
        if request.organization:
            body["organization"] = {"id": int(self._organization_id(request.organization))}
        return body

    def _existing_order(self, request: EnrollRequest) -> Order | None:
        """The order an earlier delivery of this request placed: from our record, else from CertCentral
        (an order placed whose answer was lost, or a record lost with the state directory)."""
        recorded = self._store.order_of(request.request_id)
        if recorded is not None:
            return self._client.order(recorded)
        marker = request_marker(request.request_id)
        wanted, _ = csr_names(request.csr)
        recent = self._now() - LOOKBACK
        # The list shows no comments: read each order that could be ours, newest first. Ours has the
        # same common name and is recent (a redelivery comes within hours); older orders for the same
        # host (its renewals) are not read, so a much-renewed host does not cost hundreds of calls.
        candidates = sorted(
            (
                o
                for o in self._client.orders({"common_name": wanted})
                if o.common_name in (None, wanted)
                and ((created := _parse_time(o.raw.get("date_created"))) is None or created >= recent)
            ),
            key=lambda o: int(o.id) if o.id.isdigit() else 0,
            reverse=True,
        )
        for order_id in (o.id for o in candidates):
            order = self._client.order(order_id)
            texts = [text for text in (order.comments, *(r.comments for r in order.requests)) if text]
            # Where CertCentral shows no comments at all on the order, the CSR it holds (the same on
            # every delivery of a request) is the mark instead.
            if any(marker in text for text in texts) or (not texts and _same_csr(order, request.csr)):
                self._store.remember_order(request.request_id, order.id)
                return order
        return None

    def _placed(self, placed: PlacedOrder, request: EnrollRequest) -> Issued | Pending:
        if placed.certificate_id and placed.chain_pems:
            certificates = [
                c for pem in placed.chain_pems for c in x509.load_pem_x509_certificates(pem.encode())
            ]
            # The chain starts with the certificate itself; should it not hold it, download it.
            if any(public_keys_equal(c.public_key(), request.csr.public_key()) for c in certificates):
                return self._issued(certificates, placed.certificate_id, placed.id, request.ca, request.csr)
        if placed.certificate_id:
            # A certificate id alone does not say it is issued (orders have one from the start).
            return self._outcome(self._client.order(placed.id))
        awaiting = any(r.status == "pending" for r in placed.requests)
        return Pending(
            order_ref=placed.id, reason=_waiting(placed.id, "needs_approval" if awaiting else "pending")
        )

    def _outcome(self, order: Order) -> Issued | Pending:
        if order.status == "issued" and order.certificate_id:
            return self._download(order.certificate_id, order.id, order.ca_cert_id)
        if order.status in REFUSED:
            raise Rejected(f"DigiCert order {order.id} was {order.status}: {self._refusal(order)}")
        if order.status in WAITING or order.status == "issued":
            return Pending(order_ref=order.id, reason=_waiting(order.id, order.status))
        raise Rejected(f"DigiCert order {order.id} is {order.status or 'in an unknown state'}, not issuable")

    def _refusal(self, order: Order) -> str:
        """DigiCert's reason for refusing, as the request's reviewer wrote it."""
        requests: list[OrderRequest] = list(order.requests)
        reasons = [r.processor_comment for r in requests if r.processor_comment]
        if not reasons:
            for listed in requests:
                try:
                    reasons += [
                        r.processor_comment
                        for r in self._client.request_info(listed.id)
                        if r.processor_comment
                    ]
                except (Rejected, AuthError):
                    continue  # the reason is a courtesy; a key that may not read requests still learns of it
        for key in ("reject_reason", "rejection_reason", "processor_comment", "cancel_reason"):
            if not reasons and order.raw.get(key):
                reasons.append(str(order.raw[key]))
        return "; ".join(reasons) or "no reason given"

    def _download(self, certificate_id: str, order_id: str, ca: str | None) -> Issued:
        certificates = x509.load_pem_x509_certificates(self._client.download_pem_all(certificate_id))
        return self._issued(certificates, certificate_id, order_id, ca, None)

    def _issued(
        self,
        certificates: list[x509.Certificate],
        certificate_id: str,
        order_id: str,
        ca: str | None,
        csr: x509.CertificateSigningRequest | None,
    ) -> Issued:
        if not certificates:
            raise Rejected(f"DigiCert order {order_id} gave no certificate")
        # pem_all is the certificate, then its issuers; pick it by key (or as the one that is no CA)
        # rather than trust the order.
        if csr is not None:
            leaf = next(c for c in certificates if public_keys_equal(c.public_key(), csr.public_key()))
        else:
            leaf = next((c for c in certificates if not _is_ca(c)), certificates[0])
        chain = order_chain(leaf, certificates)
        self._store.remember_certificate(canonical_serial(leaf.serial_number), certificate_id)
        if chain:
            self._store.remember_issuer(
                ca or PUBLIC_CA, chain[0].public_bytes(serialization.Encoding.PEM).decode()
            )
        return Issued(certificate=leaf, chain=tuple(chain), order_ref=order_id)

    def _is_revoked(self, certificate_id: str) -> bool:
        orders = self._client.orders({"certificate_id": certificate_id})
        return any(o.certificate_id == certificate_id and o.status == "revoked" for o in orders)

    def _find_certificate(self, serial: str) -> str:
        """The certificate id of a serial that our record does not know: read the account's orders."""
        wanted = int(serial, 16)
        spelled = format(wanted, "X")
        unknown: list[str] = []
        for order in self._client.orders({"serial_number": spelled.zfill(len(spelled) + len(spelled) % 2)}):
            if order.serial_number is not None:
                if _serial_int(order.serial_number) == wanted and order.certificate_id:
                    return order.certificate_id
            elif order.status in ("issued", "revoked"):
                unknown.append(order.id)
        for order_id in unknown:
            order = self._client.order(order_id)
            if (
                order.serial_number is not None
                and _serial_int(order.serial_number) == wanted
                and order.certificate_id
            ):
                return order.certificate_id
        raise Rejected(
            f"no certificate with serial {serial} in the orders of DigiCert backend {self._name!r}"
        )


if TYPE_CHECKING:

    def _conforms(backend: DigiCert) -> tuple[Backend, Collector, Scanner]:
        return backend, backend, backend
