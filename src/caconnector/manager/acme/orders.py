"""Orders, authorizations and challenges (RFC 8555 §7.4, §7.5), and finalize: the order's CSR becomes a
normal request through services.enrollment, exactly once.

An order's state after finalize follows its certificate: `processing` while the request is Requested
or Pending, `valid` once Issued (Revoked and Expired stay valid: the order did succeed), `invalid` with
the backend's reason once Failed.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from caconnector.manager.acme import validation
from caconnector.manager.acme.accounts import actor
from caconnector.manager.acme.jws import b64decode, b64encode
from caconnector.manager.acme.problems import AcmeError, malformed, unauthorized
from caconnector.manager.db.models import AcmeAccount, AcmeAuthorization, AcmeOrder, Certificate, Profile
from caconnector.manager.services import acme_bindings, enrollment
from caconnector.manager.services.errors import Conflict, Invalid
from caconnector.manager.services.pagination import Rows, paginate
from caconnector.manager.services.states import CertStatus
from caconnector.manager.settings import Settings
from caconnector.pki.serial import canonical_serial

PENDING, READY, PROCESSING, VALID, INVALID = "pending", "ready", "processing", "valid", "invalid"
MAX_IDENTIFIERS = 100
HTTP01, DNS01 = "http-01", "dns-01"


# ---- newOrder -----------------------------------------------------------------------------------------


def new_order(
    session: Session,
    account: AcmeAccount,
    profile: Profile,
    payload: dict[str, Any],
    *,
    settings: Settings,
    now: dt.datetime,
) -> AcmeOrder:
    names = _identifiers(payload.get("identifiers"))
    _rate_limit(session, account, settings, now)
    domains = account.binding.domains
    outside = [n for n in names if not acme_bindings.name_allowed(domains, n)]
    if outside and not acme_bindings.real_validation(session, profile):
        raise AcmeError(
            "rejectedIdentifier",
            f"not within this account's allowed domains ({', '.join(domains)}): {', '.join(outside)}",
            subproblems=[
                {
                    "type": "urn:ietf:params:acme:error:rejectedIdentifier",
                    "detail": f"{name} is not within the allowed domains",
                    "identifier": {"type": "dns", "value": name},
                }
                for name in outside
            ],
        )
    expires = now + dt.timedelta(seconds=settings.acme_order_ttl_seconds)
    order = AcmeOrder(
        account_id=account.id,
        identifiers=[{"type": "dns", "value": n} for n in names],
        status=PENDING,
        expires_at=expires,
        replaces=_replaced(session, account, payload.get("replaces")),
        created_at=now,
    )
    for position, name in enumerate(names):
        wildcard = name.startswith("*.")
        prevalidated = name not in outside
        offered = [DNS01] if wildcard else [HTTP01, DNS01]
        order.authorizations.append(
            AcmeAuthorization(
                position=position,
                identifier=name[2:] if wildcard else name,
                wildcard=wildcard,
                status=VALID if prevalidated else PENDING,
                prevalidated=prevalidated,
                token=secrets.token_urlsafe(32),
                challenges=[] if prevalidated else [{"type": t, "status": PENDING} for t in offered],
                expires_at=expires,
            )
        )
    session.add(order)
    refresh(order, now)
    session.flush()
    return order


def _identifiers(value: object) -> list[str]:
    if not isinstance(value, list) or not value:
        raise malformed("identifiers is a non-empty list of {type: dns, value: NAME}")
    if len(value) > MAX_IDENTIFIERS:
        raise AcmeError("rejectedIdentifier", f"an order takes at most {MAX_IDENTIFIERS} identifiers")
    names: list[str] = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("value"), str):
            raise malformed("each identifier is {type: dns, value: NAME}")
        if item.get("type") != "dns":
            raise AcmeError("unsupportedIdentifier", f"identifier type {item.get('type')!r}: only dns here")
        try:
            name = acme_bindings.normalize_name(item["value"])
        except Invalid as exc:
            raise AcmeError("rejectedIdentifier", exc.message) from None
        if "*" in name[2:] or ("*" in name and not name.startswith("*.")):
            raise AcmeError("rejectedIdentifier", f"{name}: a wildcard is only `*.` in front")
        if name not in names:
            names.append(name)
    return names


def _rate_limit(session: Session, account: AcmeAccount, settings: Settings, now: dt.datetime) -> None:
    since = now - dt.timedelta(hours=1)
    count = session.scalar(
        select(func.count())
        .select_from(AcmeOrder)
        .where(AcmeOrder.account_id == account.id, AcmeOrder.created_at > since)
    )
    if (count or 0) >= settings.acme_orders_per_hour:
        oldest = session.scalar(
            select(func.min(AcmeOrder.created_at)).where(
                AcmeOrder.account_id == account.id, AcmeOrder.created_at > since
            )
        )
        wait = max(1, int(((oldest or now) + dt.timedelta(hours=1) - now).total_seconds()) + 1)
        raise AcmeError(
            "rateLimited",
            f"this account placed {count} orders in the last hour (limit {settings.acme_orders_per_hour}); "
            f"try again in {wait} s",
            429,
            headers={"Retry-After": str(wait)},
        )


def _replaced(session: Session, account: AcmeAccount, replaces: object) -> str | None:
    """RFC 9773 `replaces`: the certificate this order renews, when it is one of the account's."""
    if replaces is None:
        return None
    certificate = certificate_for_cert_id(session, replaces)
    if certificate is None or not owns(session, account, certificate):
        raise malformed("replaces names no certificate of this account")
    return certificate.id


# ---- state --------------------------------------------------------------------------------------------


def refresh(order: AcmeOrder, now: dt.datetime) -> None:
    """Bring the stored status up to date with the authorizations, or after finalize the certificate."""
    certificate = order.certificate
    if order.certificate_id is not None and certificate is not None:
        status = CertStatus(certificate.status)
        if status in (CertStatus.ISSUED, CertStatus.REVOKED):
            order.status, order.error = VALID, None
        elif status is CertStatus.FAILED:
            reason = (certificate.error or {}).get("message", "the CA refused the request")
            order.status = INVALID
            order.error = {"type": "urn:ietf:params:acme:error:serverInternal", "detail": str(reason)}
        else:
            order.status = PROCESSING
        return
    if order.status in (VALID, INVALID, PROCESSING):
        return
    if order.expires_at <= now:
        order.status = INVALID
        order.error = {"type": "urn:ietf:params:acme:error:malformed", "detail": "the order expired"}
        return
    statuses = {a.status for a in order.authorizations}
    if INVALID in statuses:
        order.status = INVALID
        order.error = {"type": "urn:ietf:params:acme:error:unauthorized", "detail": "an authorization failed"}
    elif statuses == {VALID}:
        order.status = READY
    else:
        order.status = PENDING


def order_of(session: Session, account: AcmeAccount, order_id: str) -> AcmeOrder:
    order = session.get(AcmeOrder, order_id)
    if order is None or order.account_id != account.id:
        raise malformed("no such order of this account", 404)
    return order


def authorization_of(session: Session, account: AcmeAccount, authz_id: str) -> AcmeAuthorization:
    authz = session.get(AcmeAuthorization, authz_id)
    if authz is None or authz.order.account_id != account.id:
        raise malformed("no such authorization of this account", 404)
    return authz


def key_authorization(authz: AcmeAuthorization, account: AcmeAccount) -> str:
    return f"{authz.token}.{account.thumbprint}"


def respond_to_challenge(
    session: Session,
    account: AcmeAccount,
    authz: AcmeAuthorization,
    kind: str,
    *,
    settings: Settings,
    now: dt.datetime,
) -> dict[str, Any]:
    """The client says it is ready: validate now (once), and settle the authorization."""
    challenge = next((c for c in authz.challenges if c.get("type") == kind), None)
    if challenge is None:
        raise malformed(f"this authorization offers no {kind} challenge", 404)
    if challenge["status"] != PENDING or authz.status != PENDING:
        return dict(challenge)
    name = authz.identifier
    if kind == HTTP01:
        failure = validation.http01(name, authz.token, key_authorization(authz, account), settings)
    else:
        failure = validation.dns01(name, key_authorization(authz, account), settings)
    updated = dict(challenge)
    if failure is None:
        updated.update(status=VALID, validated=now.isoformat().replace("+00:00", "Z"))
        authz.status = VALID
    else:
        updated.update(
            status=INVALID,
            error={"type": f"urn:ietf:params:acme:error:{failure.kind}", "detail": failure.detail},
        )
        authz.status = INVALID
    # A JSON column changes when a new list is assigned, not when an element is edited in place.
    authz.challenges = [updated if c is challenge else c for c in authz.challenges]
    refresh(authz.order, now)
    return updated


# ---- finalize -----------------------------------------------------------------------------------------


def finalize(
    session: Session,
    account: AcmeAccount,
    order: AcmeOrder,
    profile: Profile,
    payload: dict[str, Any],
    *,
    now: dt.datetime,
) -> AcmeOrder:
    der = b64decode(payload.get("csr"), "csr")
    try:
        csr = x509.load_der_x509_csr(der)
    except ValueError:
        raise AcmeError("badCSR", "csr is not a DER certificate request (base64url)") from None
    pem = csr.public_bytes(serialization.Encoding.PEM).decode()
    if order.certificate_id is not None:
        # A retried finalize (the client did not see the answer): the same CSR gets the same order back,
        # and never a second request.
        stored = order.certificate.csr_pem if order.certificate is not None else None
        if stored is not None and _same_request(stored, csr):
            refresh(order, now)
            return order
        raise AcmeError("orderNotReady", f"the order is {order.status}; it was finalized already", 403)
    refresh(order, now)
    if order.status != READY:
        detail = f"the order is {order.status}, not ready: complete its authorizations"
        raise AcmeError("orderNotReady", detail, 403)
    _check_names(csr, order)
    renewed = session.get(Certificate, order.replaces) if order.replaces else None
    try:
        certificate = enrollment.enroll(
            session, profile, pem, None, now=now, actor=actor(account), renewed_from=renewed
        )
    except Invalid as exc:
        raise AcmeError("badCSR", exc.message) from None
    except Conflict as exc:
        raise AcmeError("serverInternal", exc.message, 503, headers={"Retry-After": "60"}) from None
    order.certificate_id = certificate.id
    order.certificate = certificate
    order.status = PROCESSING
    return order


def _same_request(stored_pem: str, csr: x509.CertificateSigningRequest) -> bool:
    return x509.load_pem_x509_csr(stored_pem.encode()) == csr


def _check_names(csr: x509.CertificateSigningRequest, order: AcmeOrder) -> None:
    """§7.4: the CSR names exactly the order's identifiers (a CN among them)."""
    wanted = {str(i["value"]) for i in order.identifiers}
    try:
        sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        sans = x509.SubjectAlternativeName([])
    if sans.get_values_for_type(x509.IPAddress) or sans.get_values_for_type(x509.RFC822Name):
        raise AcmeError("badCSR", "the CSR names IP addresses or e-mail addresses; this order has DNS names")
    names = {n.lower().rstrip(".") for n in sans.get_values_for_type(x509.DNSName)}
    common = [str(a.value).lower() for a in csr.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    names.update(common)
    extra, missing = sorted(names - wanted), sorted(wanted - names)
    if extra or missing:
        parts = ([f"names {', '.join(extra)}, which the order does not"] if extra else []) + (
            [f"lacks {', '.join(missing)}"] if missing else []
        )
        raise AcmeError("badCSR", f"the CSR {' and '.join(parts)}")


# ---- certificates --------------------------------------------------------------------------------------


def owns(session: Session, account: AcmeAccount, certificate: Certificate) -> bool:
    order = session.scalar(
        select(AcmeOrder).where(
            AcmeOrder.certificate_id == certificate.id, AcmeOrder.account_id == account.id
        )
    )
    return order is not None


def certificate_by_der(session: Session, der: bytes) -> tuple[Certificate, x509.Certificate]:
    try:
        leaf = x509.load_der_x509_certificate(der)
    except ValueError:
        raise malformed("certificate is not a DER certificate (base64url)") from None
    serial = canonical_serial(leaf.serial_number)
    rows = session.scalars(select(Certificate).where(Certificate.serial == serial))
    for row in rows:
        if row.certificate_pem and x509.load_pem_x509_certificate(row.certificate_pem.encode()) == leaf:
            return row, leaf
    raise malformed("this manager did not issue that certificate", 404)


def certificate_for_cert_id(session: Session, cert_id: object) -> Certificate | None:
    """RFC 9773's certificate identifier: base64url(authority key id) "." base64url(serial DER)."""
    if not isinstance(cert_id, str) or cert_id.count(".") != 1:
        raise malformed("a certificate identifier is base64url(AKI).base64url(serial)")
    aki_b64, serial_b64 = cert_id.split(".")
    aki, serial_bytes = b64decode(aki_b64, "the identifier's key id"), b64decode(serial_b64, "its serial")
    if not serial_bytes:
        raise malformed("the certificate identifier's serial is empty")
    try:
        serial = canonical_serial(int.from_bytes(serial_bytes, "big"))
    except ValueError:
        raise malformed("the certificate identifier's serial is not a certificate serial") from None
    for row in session.scalars(select(Certificate).where(Certificate.serial == serial)):
        if row.certificate_pem is None:
            continue
        leaf = x509.load_pem_x509_certificate(row.certificate_pem.encode())
        try:
            key_id = _authority_key_id(leaf)
        except x509.ExtensionNotFound:
            key_id = None
        if key_id is None or key_id == aki:
            return row
    return None


def _authority_key_id(leaf: x509.Certificate) -> bytes | None:
    return leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier


def cert_id(leaf: x509.Certificate) -> str:
    key_id = _authority_key_id(leaf) or b""
    serial = leaf.serial_number
    return f"{b64encode(key_id)}.{b64encode(serial.to_bytes((serial.bit_length() + 8) // 8, 'big'))}"


def pem_chain(certificate: Certificate) -> str:
    if certificate.certificate_pem is None:
        raise malformed("the certificate is not issued yet", 404)
    parts = [certificate.certificate_pem, *certificate.chain_pem]
    return "".join(p if p.endswith("\n") else p + "\n" for p in parts)


def renewal_window(certificate: Certificate, now: dt.datetime) -> dict[str, str]:
    """The CA's window when it gave one; else the last third of the lifetime, begun at two thirds; at
    once for a revoked certificate."""

    def iso(value: dt.datetime) -> str:
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")

    if certificate.status == CertStatus.REVOKED.value or certificate.revocation_reason is not None:
        return {"start": iso(now - dt.timedelta(days=1)), "end": iso(now)}
    window = certificate.renewal_window or {}
    if window.get("start") and window.get("end"):
        return {"start": str(window["start"]), "end": str(window["end"])}
    before, after = certificate.not_before or now, certificate.not_after or now
    lifetime = after - before
    return {"start": iso(before + lifetime * 2 / 3), "end": iso(before + lifetime * 5 / 6)}


def unauthorized_for(account: AcmeAccount) -> AcmeError:
    return unauthorized(f"account {account.id} did not order this certificate")


def list_orders(
    session: Session,
    now: dt.datetime,
    *,
    certificate_id: str | None = None,
    account_id: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Rows[AcmeOrder]:
    """Newest first, each brought up to date with its certificate: what the REST API shows."""
    query = select(AcmeOrder)
    if certificate_id is not None:
        query = query.where(AcmeOrder.certificate_id == certificate_id)
    if account_id is not None:
        query = query.where(AcmeOrder.account_id == account_id)
    page = paginate(session, query, [AcmeOrder.created_at, AcmeOrder.id], limit, cursor, descending=True)
    for order in page.items:
        refresh(order, now)
    return page
