"""From that API's integers and words to our rows and filters, and back; its checks on what it sends
beyond our own enrollment fields (orgId, subjAltNames)."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from sqlalchemy.orm import Session

from caconnector.manager.compat import views
from caconnector.manager.compat.errors import Code, CompatError
from caconnector.manager.db.models import Certificate, Profile
from caconnector.manager.services import certificates as service
from caconnector.manager.services import integer_ids
from caconnector.manager.services.certificate_search import Filters
from caconnector.manager.services.errors import NotFound
from caconnector.manager.services.integer_ids import Kind
from caconnector.manager.services.organizations import organization_ref
from caconnector.manager.services.profiles import get_profile, list_profiles

PAGING = ("size", "position")
FILTERS = ("commonName", "subjectAlternativeName", "status", "sslTypeId", "orgId", "serialNumber")


def certificate_of(session: Session, ssl_id: int) -> Certificate:
    return service.get_certificate(session, integer_ids.ref_for(session, Kind.CERTIFICATE, ssl_id))


def profile_of(session: Session, type_id: int) -> Profile:
    """The profile a certType names; 400 (it is in the body) when there is none."""
    try:
        return get_profile(session, integer_ids.ref_for(session, Kind.PROFILE, type_id))
    except NotFound:
        raise CompatError(
            400, Code.INVALID, f"certType: no certificate type {type_id}; GET /api/ssl/v1/types lists them"
        ) from None


def type_view(session: Session, profile: Profile) -> dict[str, Any]:
    return views.cert_type(profile, integer_ids.number_for(session, Kind.PROFILE, profile.id))


def organization_number(session: Session, profile: Profile) -> int:
    return integer_ids.number_for(session, Kind.ORGANIZATION, organization_ref(profile))


def check_organization(session: Session, profile: Profile, org_id: int) -> None:
    if organization_number(session, profile) != org_id:
        raise CompatError(
            400,
            Code.INVALID,
            f"orgId: certificate type {profile.name!r} is not offered for organization {org_id}; "
            "GET /api/organization/v1 lists each organization's certTypes",
        )


def check_alt_names(certificate: Certificate, alt_names: str | None) -> None:
    """Our CAs issue the names of the CSR: names asked for beyond them are refused, not dropped."""
    wanted = {name.strip() for name in (alt_names or "").split(",") if name.strip()}
    missing = wanted - set(views.alt_names(certificate)) - {views.common_name(certificate)}
    if missing:
        raise CompatError(
            400,
            Code.INVALID,
            f"subjAltNames: {', '.join(sorted(missing))} not in the CSR; put every name in the CSR",
        )


def filters_of(session: Session, request: Request) -> Filters:
    params = request.query_params
    unknown = sorted(set(params) - set(FILTERS) - set(PAGING))
    if unknown:
        raise CompatError(
            400, Code.INVALID, f"{unknown[0]}: not a filter here; use {', '.join(FILTERS)}, size, position"
        )
    status = None
    if (word := params.get("status")) is not None:
        status = views.STATUS_OF_WORD.get(word.lower())
        if status is None:
            words = ", ".join(views.STATUS_WORDS.values())
            raise CompatError(400, Code.INVALID, f"status: use one of {words}")
    profile_ids: set[str] | None = None
    if (type_id := params.get("sslTypeId")) is not None:
        profile_ids = {_ref(session, Kind.PROFILE, "sslTypeId", type_id)}
    if (org_id := params.get("orgId")) is not None:
        wanted = _ref(session, Kind.ORGANIZATION, "orgId", org_id)
        in_org = {p.id for p in list_profiles(session).items if organization_ref(p) == wanted}
        profile_ids = in_org if profile_ids is None else profile_ids & in_org
    return Filters(
        status=status,
        profile_ids=sorted(profile_ids) if profile_ids is not None else None,
        serial=params.get("serialNumber"),
        common_name=params.get("commonName"),
        alt_name=params.get("subjectAlternativeName"),
    )


def _ref(session: Session, kind: Kind, name: str, raw: str) -> str:
    if not raw.isdigit() or len(raw) > 9:
        raise CompatError(400, Code.INVALID, f"{name}: a whole number")
    try:
        return integer_ids.ref_for(session, kind, int(raw))
    except NotFound:
        raise CompatError(400, Code.INVALID, f"{name}: no {kind.value} {raw}") from None
