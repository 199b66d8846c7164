"""Certificates: search and filter, a detail page (its status polled until it settles), Enroll with a
pasted or uploaded CSR, download in every format, Revoke with a reason, Renew; all through the services
the REST API calls (enrollment, certificates)."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from caconnector.manager.db.models import Certificate
from caconnector.manager.runtime import Runtime, runtime_of
from caconnector.manager.services import backends as backend_service
from caconnector.manager.services import certificates as service
from caconnector.manager.services import enrollment
from caconnector.manager.services import profiles as profile_service
from caconnector.manager.services.errors import Invalid, ManagerError
from caconnector.manager.services.states import CertStatus, settled, status_at
from caconnector.manager.ui.access import OperatorPost, Refused, Viewer
from caconnector.manager.ui.render import finish, page, redirect
from caconnector.pki.csr import MAX_CSR_BYTES
from caconnector.pki.formats import OutputFormat, encode_certificate, media_type
from caconnector.pki.revocation import RevocationReason

router = APIRouter(prefix="/certificates")

PAGE_SIZE = 50
FORMATS = {
    OutputFormat.PEM: ("Certificate (PEM)", ".pem"),
    OutputFormat.PEM_CHAIN: ("Certificate and chain (PEM)", ".fullchain.pem"),
    OutputFormat.CHAIN: ("Chain only (PEM)", ".chain.pem"),
    OutputFormat.DER: ("Certificate (DER)", ".cer"),
    OutputFormat.PKCS7: ("PKCS #7", ".p7b"),
}


def _view(certificate: Certificate, now: dt.datetime) -> dict[str, Any]:
    status = status_at(certificate, now)
    return {
        "id": certificate.id,
        "status": status.value,
        "subject": certificate.subject,
        "sans": certificate.sans,
        "key_type": certificate.key_type,
        "serial": certificate.serial,
        "not_before": certificate.not_before,
        "not_after": certificate.not_after,
        "issued_at": certificate.issued_at,
        "term_days": certificate.term_days,
        "source": certificate.source,
        "profile": certificate.profile.name if certificate.profile is not None else "",
        "backend": certificate.backend.name if certificate.backend is not None else "",
        "reason": service.reason_of(certificate, now),
        "revocation_reason": certificate.revocation_reason,
        "revoked_at": certificate.revoked_at,
        "renewed_from": certificate.renewed_from_id,
        "created_at": certificate.created_at,
        "settled": settled(certificate),
        "revocable": status is CertStatus.ISSUED and settled(certificate),
        "downloadable": certificate.certificate_pem is not None,
    }


def _filters(runtime: Runtime) -> dict[str, Any]:
    with runtime.sessions.begin() as session:
        return {
            "profiles": [{"id": p.id, "name": p.name} for p in profile_service.list_profiles(session).items],
            "backends": [{"id": b.id, "name": b.name} for b in backend_service.list_backends(session).items],
            "statuses": [s.value for s in CertStatus],
        }


@router.get("")
def certificates_page(
    request: Request,
    _user: Viewer,
    *,
    status: str = "",
    profile: str = "",
    backend: str = "",
    expiring_days: str = "",
    serial: str = "",
    cursor: str = "",
) -> Response:
    runtime = runtime_of(request)
    now = runtime.now()
    query = {"status": status, "profile": profile, "backend": backend, "expiring_days": expiring_days,
             "serial": serial}  # fmt: skip
    rows: list[dict[str, Any]] = []
    next_cursor: str | None = None
    error = None
    try:
        wanted = CertStatus(status) if status else None
        expiring = None
        if expiring_days.strip():
            if not expiring_days.strip().isdigit():
                raise Invalid("Expiring within: a whole number of days")
            expiring = now + dt.timedelta(days=int(expiring_days))
        with runtime.sessions.begin() as session:
            found = service.list_certificates(
                session, now, status=wanted, profile_id=profile or None, backend_id=backend or None,
                serial=serial.strip() or None, expiring_before=expiring, limit=PAGE_SIZE,
                cursor=cursor or None,
            )  # fmt: skip
            rows = [_view(c, now) for c in found.items]
            next_cursor = found.next_cursor
    except ValueError as exc:  # ManagerError is one; so is an unknown status or a damaged cursor
        error = exc.message if isinstance(exc, ManagerError) else f"Not a filter this page knows: {exc}"
    status_code = 422 if error else 200
    return page(request, "certificates.html", status_code, rows=rows, query=query, next_cursor=next_cursor,
                error=error, **_filters(runtime))  # fmt: skip


def _enroll_form(request: Request, status: int = 200, **context: Any) -> Response:
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        profiles = [
            {"id": p.id, "name": p.name, "terms": p.terms_days, "key_types": p.key_types}
            for p in profile_service.list_profiles(session).items
        ]
    return page(request, "enroll.html", status, profiles=profiles, **context)


@router.get("/enroll")
def enroll_form(request: Request, user: Viewer) -> Response:
    if not user.can_operate:
        raise Refused(403, f"Your role ({user.role.value}) may not enroll certificates.")
    return _enroll_form(request, values={"profile": "", "term": "", "csr": ""})


@router.post("/enroll")
def enroll(request: Request, posted: OperatorPost) -> Response:
    runtime = runtime_of(request)
    values = {
        "profile": posted.text("profile"),
        "term": posted.text("term").strip(),
        "csr": posted.text("csr"),
    }
    try:
        uploaded = posted.upload("csr_file", MAX_CSR_BYTES * 2)
        csr = values["csr"].strip()
        if uploaded is not None:
            if csr:
                raise Invalid("CSR: paste it or upload a file, not both")
            csr = _csr_text(uploaded)
        if not csr:
            raise Invalid("CSR: paste the certificate request (PEM) or upload its file")
        if values["term"] and not values["term"].isdigit():
            raise Invalid("Term: a whole number of days, one of the profile's terms")
        term = int(values["term"]) if values["term"] else None
        with runtime.sessions.begin() as session:
            profile = profile_service.find_profile(session, values["profile"])
            certificate = enrollment.enroll(session, profile, csr, term, now=runtime.now(),
                                            actor=posted.user.actor)  # fmt: skip
            certificate_id = certificate.id
    except ManagerError as exc:
        return _enroll_form(request, 422, values=values, error=exc.message)
    return redirect(request, f"/certificates/{certificate_id}")


def _csr_text(uploaded: bytes) -> str:
    """An uploaded CSR file, PEM or DER; DER is sent on as PEM, which is what the service reads."""
    if len(uploaded) > MAX_CSR_BYTES * 2:
        raise Invalid(f"CSR file: at most {MAX_CSR_BYTES} bytes")
    if uploaded.lstrip().startswith(b"-----BEGIN"):
        try:
            return uploaded.decode("ascii")
        except UnicodeDecodeError:
            raise Invalid("CSR file: a PEM file is ASCII text") from None
    body = base64.encodebytes(uploaded).decode("ascii")
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"


def _one(runtime: Runtime, certificate_id: str) -> dict[str, Any]:
    with runtime.sessions.begin() as session:
        try:
            return _view(service.get_certificate(session, certificate_id), runtime.now())
        except ManagerError as exc:
            raise Refused(404, exc.message) from None


def _detail(request: Request, certificate_id: str, status: int = 200, **context: Any) -> Response:
    runtime = runtime_of(request)
    return page(
        request, "certificate.html", status, cert=_one(runtime, certificate_id), **_actions(), **context
    )


def _actions() -> dict[str, Any]:
    """What the detail page's status block offers: the download formats and the revocation reasons."""
    return {"formats": FORMATS, "reasons": [r.value for r in RevocationReason]}


@router.get("/{certificate_id}")
def detail(certificate_id: str, request: Request, _user: Viewer, notice: str | None = None) -> Response:
    return _detail(request, certificate_id, notice=notice)


@router.get("/{certificate_id}/status")
def status_fragment(certificate_id: str, request: Request, _user: Viewer) -> Response:
    """The detail page's status block alone: what the page polls while the certificate is in flight."""
    return page(
        request, "certificate_status.html", cert=_one(runtime_of(request), certificate_id), **_actions()
    )


@router.get("/{certificate_id}/download")
def download(certificate_id: str, request: Request, _user: Viewer, format: str = "pem") -> Response:
    runtime = runtime_of(request)
    try:
        fmt = OutputFormat(format)
    except ValueError:
        raise Refused(404, f"no download format {format!r}; use one of {', '.join(FORMATS)}") from None
    try:
        with runtime.sessions.begin() as session:
            certificate = service.get_certificate(session, certificate_id)
            leaf, chain = service.stored_certificates(certificate)
            name = certificate.serial or certificate.id
    except ManagerError as exc:
        raise Refused(409, exc.message) from None
    response = Response(
        encode_certificate(leaf, chain, fmt),
        media_type=media_type(fmt),
        headers={"Content-Disposition": f'attachment; filename="{name}{FORMATS[fmt][1]}"'},
    )
    return finish(request, response)


@router.post("/{certificate_id}/revoke")
def revoke(certificate_id: str, request: Request, posted: OperatorPost) -> Response:
    runtime = runtime_of(request)
    try:
        with runtime.sessions.begin() as session:
            certificate = service.get_certificate(session, certificate_id)
            service.request_revocation(session, certificate, posted.text("reason") or "unspecified",
                                       runtime.now(), posted.user.actor)  # fmt: skip
    except ManagerError as exc:
        return _detail(request, certificate_id, 422, error=exc.message)
    return redirect(request, f"/certificates/{certificate_id}")


@router.post("/{certificate_id}/renew")
def renew(certificate_id: str, request: Request, posted: OperatorPost) -> Response:
    runtime = runtime_of(request)
    try:
        with runtime.sessions.begin() as session:
            old = service.get_certificate(session, certificate_id)
            new = enrollment.renew(session, old, None, None, now=runtime.now(), actor=posted.user.actor)
            new_id = new.id
    except ManagerError as exc:
        return _detail(request, certificate_id, 422, error=exc.message)
    return redirect(request, f"/certificates/{new_id}")
