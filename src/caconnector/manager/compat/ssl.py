"""`/api/ssl/v1`: the commercial manager's SSL certificate endpoints, as the cert_manager client calls
them, over our services (enrollment, certificates, profiles). Certificate types are our profiles; ids
are the stable integers of services.integer_ids; `renewId` is our own certificate id."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from caconnector.manager.compat import views
from caconnector.manager.compat.auth import Operator, Reader
from caconnector.manager.compat.errors import Code, CompatError, CompatRoute
from caconnector.manager.compat.formats import CollectFormat, encode
from caconnector.manager.compat.lookups import (
    certificate_of,
    check_alt_names,
    check_organization,
    filters_of,
    organization_number,
    profile_of,
    type_view,
)
from caconnector.manager.db.models import Certificate
from caconnector.manager.runtime import runtime_of
from caconnector.manager.services import certificate_search, enrollment, integer_ids
from caconnector.manager.services import certificates as service
from caconnector.manager.services.integer_ids import Kind
from caconnector.manager.services.organizations import organization_ref
from caconnector.manager.services.profiles import list_profiles
from caconnector.manager.services.states import CertStatus, status_at
from caconnector.pki.csr import MAX_CSR_BYTES
from caconnector.pki.revocation import RevocationReason
from caconnector.protocol.text import line, text

router = APIRouter(prefix="/api/ssl/v1", route_class=CompatRoute, include_in_schema=False)

MAX_CSR_TEXT = MAX_CSR_BYTES * 2  # PEM: base64 with line breaks
MAX_PAGE = 200  # the cert_manager client pages by 200
SslId = Annotated[int, Path(ge=1, le=2**31 - 1)]
# The RFC 5280 codes that API takes as `reasonCode` (2, CA compromise, and 6 up are not offered there).
REASON_CODES = {
    reason.code: reason
    for reason in (
        RevocationReason.UNSPECIFIED,
        RevocationReason.KEY_COMPROMISE,
        RevocationReason.AFFILIATION_CHANGED,
        RevocationReason.SUPERSEDED,
        RevocationReason.CESSATION_OF_OPERATION,
    )
}


class EnrollIn(BaseModel):
    # The client also sends numberServers, serverType and dcvMode, which mean nothing to our CAs.
    model_config = ConfigDict(extra="ignore")

    orgId: int = Field(description="an organization's id (GET /api/organization/v1)")  # noqa: N815
    csr: Annotated[str, text(MAX_CSR_TEXT)]
    certType: int = Field(description="a certificate type's id (GET /api/ssl/v1/types)")  # noqa: N815
    term: int | None = Field(default=None, ge=1, description="days; one of the type's terms")
    subjAltNames: Annotated[str, text(8192)] | None = None  # noqa: N815
    comments: Annotated[str, text(1024)] | None = None
    externalRequester: Annotated[str, text(1024)] | None = None  # noqa: N815
    customFields: list[Any] | None = None  # noqa: N815


class RevokeIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    reason: Annotated[str, text(512)] = ""
    reasonCode: int | None = None  # noqa: N815


class ReplaceIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    csr: Annotated[str, text(MAX_CSR_TEXT)]
    commonName: Annotated[str, line(256)] | None = None  # noqa: N815
    subjectAlternativeNames: list[Annotated[str, line(256)]] | None = None  # noqa: N815
    reason: Annotated[str, text(512)] | None = None


# ---- certificate types and custom fields -----------------------------------------------------------


@router.get("/types")
def types(request: Request, _caller: Reader, organizationId: int | None = None) -> list[dict[str, Any]]:  # noqa: N803
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        profiles = list_profiles(session).items
        if organizationId is not None:
            wanted = integer_ids.ref_for(session, Kind.ORGANIZATION, organizationId)
            profiles = [p for p in profiles if organization_ref(p) == wanted]
        return [type_view(session, profile) for profile in profiles]


@router.get("/customFields")
def custom_fields(_caller: Reader) -> list[dict[str, Any]]:
    return []  # none can be configured yet: an enroll that sends some is refused


# ---- enroll, renew, replace -------------------------------------------------------------------------


@router.post("/enroll")
def enroll(body: EnrollIn, request: Request, caller: Operator) -> dict[str, Any]:
    if body.customFields:
        raise CompatError(400, Code.INVALID, "customFields: no custom fields are configured on this manager")
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        profile = profile_of(session, body.certType)
        check_organization(session, profile, body.orgId)
        certificate = enrollment.enroll(
            session, profile, body.csr, body.term, now=runtime.now(), actor=caller.actor
        )
        check_alt_names(certificate, body.subjAltNames)  # a refusal rolls the enrollment back
        ssl_id = integer_ids.number_for(session, Kind.CERTIFICATE, certificate.id)
        return {"sslId": ssl_id, "renewId": certificate.id}


@router.post("/renewById/{renew_ref}")
def renew_by_id(
    renew_ref: Annotated[str, Path(max_length=64)], request: Request, caller: Operator
) -> dict[str, int]:
    """By sslId (what the cert_manager client sends) or by renewId: the same key and term again."""
    return _renew(request, caller.actor, renew_ref)


@router.post("/renew/{renew_id}")
def renew(
    renew_id: Annotated[str, Path(max_length=64)], request: Request, caller: Operator
) -> dict[str, int]:
    return _renew(request, caller.actor, renew_id)


def _renew(request: Request, actor: str, renew_ref: str) -> dict[str, int]:
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        old = _by_ssl_id_or_renew_id(session, renew_ref)
        new = enrollment.renew(session, old, None, None, now=runtime.now(), actor=actor)
        return {"sslId": integer_ids.number_for(session, Kind.CERTIFICATE, new.id)}


def _by_ssl_id_or_renew_id(session: Session, ref: str) -> Certificate:
    if ref.isdigit() and len(ref) < 10:
        return certificate_of(session, int(ref))
    return service.get_certificate(session, ref)


@router.post("/replace/{ssl_id}", status_code=204)
def replace(ssl_id: SslId, body: ReplaceIn, request: Request, caller: Operator) -> Response:
    """A new certificate for the new CSR on the same type; the sslId follows it (the one replaced keeps
    its own history, under our id, and gets a new sslId if it is listed again)."""
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        old = certificate_of(session, ssl_id)
        new = enrollment.renew(session, old, body.csr, None, now=runtime.now(), actor=caller.actor)
        if body.commonName and body.commonName != views.common_name(new):
            raise CompatError(400, Code.INVALID, "commonName: it is not the common name of the CSR")
        check_alt_names(new, ",".join(body.subjectAlternativeNames or []))
        integer_ids.move(session, Kind.CERTIFICATE, ssl_id, new.id)
    return Response(status_code=204)


# ---- collect and revoke -----------------------------------------------------------------------------


@router.get("/collect/{ssl_id}/{fmt}")
def collect(ssl_id: SslId, fmt: CollectFormat, request: Request, _caller: Reader) -> Response:
    """The certificate in `fmt`; 400 with code -183 while it is not issued (the client's PendingError)."""
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        certificate = certificate_of(session, ssl_id)
        status = status_at(certificate, runtime.now())
        if status in (CertStatus.REQUESTED, CertStatus.PENDING):
            why = service.reason_of(certificate, runtime.now()) or "waiting for the CA"
            raise CompatError(400, Code.NOT_COLLECTABLE, f"certificate {ssl_id} is not issued yet: {why}")
        if status is CertStatus.REVOKED:
            raise CompatError(400, Code.REVOKED, f"certificate {ssl_id} has been revoked")
        if status is CertStatus.FAILED:
            failure = service.reason_of(certificate, runtime.now())
            raise CompatError(400, Code.FAILED, f"certificate {ssl_id} was not issued: {failure}")
        leaf, chain = service.stored_certificates(certificate)
    body, media_type = encode(leaf, chain, fmt)
    return Response(body, media_type=media_type)


@router.post("/revoke/{ssl_id}", status_code=204)
def revoke(ssl_id: SslId, body: RevokeIn, request: Request, caller: Operator) -> Response:
    """The reason is that API's free text; an RFC 5280 name in it (`keyCompromise`) or `reasonCode` is
    what the CA is told, `unspecified` otherwise."""
    runtime = runtime_of(request)
    reason = _reason(body)
    with runtime.sessions.begin() as session:
        certificate = certificate_of(session, ssl_id)
        service.request_revocation(session, certificate, reason.value, runtime.now(), caller.actor)
    return Response(status_code=204)


def _reason(body: RevokeIn) -> RevocationReason:
    if body.reasonCode is not None:
        if body.reasonCode not in REASON_CODES:
            codes = ", ".join(str(c) for c in REASON_CODES)
            raise CompatError(400, Code.INVALID, f"reasonCode: use one of {codes}")
        return REASON_CODES[body.reasonCode]
    if not body.reason.strip():
        raise CompatError(400, Code.INVALID, "reason: say why the certificate is revoked")
    try:
        return RevocationReason.parse(body.reason.strip())
    except ValueError:
        return RevocationReason.UNSPECIFIED


# ---- list, count, details ---------------------------------------------------------------------------


@router.head("")
def count(request: Request, _caller: Reader) -> Response:
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        _, total = certificate_search.search(session, runtime.now(), filters_of(session, request), 0, 0)
    return Response(status_code=200, headers={"X-Total-Count": str(total)})


@router.get("")
def list_certificates(request: Request, _caller: Reader) -> list[dict[str, Any]]:
    """Oldest first, `size` (at most 200) from `position`, with the filters `filters_of` names."""
    runtime = runtime_of(request)
    size = _int_param(request, "size", 10, 1, MAX_PAGE)
    position = _int_param(request, "position", 0, 0, 2**31 - 1)
    with runtime.sessions.begin() as session:
        rows, _ = certificate_search.search(
            session, runtime.now(), filters_of(session, request), position, size
        )
        numbers = integer_ids.numbers_for(session, Kind.CERTIFICATE, [row.id for row in rows])
        return [views.listed(row, numbers[row.id]) for row in rows]


@router.get("/{ssl_id}")
def details(ssl_id: SslId, request: Request, _caller: Reader) -> dict[str, Any]:
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        certificate = certificate_of(session, ssl_id)
        profile = certificate.profile
        org_id = organization_number(session, profile) if profile is not None else None
        kind = type_view(session, profile) if profile is not None else None
        return views.details(certificate, ssl_id, org_id, kind, runtime.now())


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise CompatError(400, Code.INVALID, f"{name}: a whole number from {low} to {high}")
    return int(raw)
