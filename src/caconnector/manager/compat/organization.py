"""`/api/organization/v1`: the organizations the connectors' backends report, plus the default one for
backends whose CA has none, each with the certificate types (profiles) enrolled for it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from caconnector.manager.compat import views
from caconnector.manager.compat.auth import Reader
from caconnector.manager.compat.errors import CompatRoute
from caconnector.manager.runtime import runtime_of
from caconnector.manager.services import integer_ids
from caconnector.manager.services.integer_ids import Kind
from caconnector.manager.services.organizations import organizations

router = APIRouter(prefix="/api/organization/v1", route_class=CompatRoute, include_in_schema=False)


@router.get("")
def list_organizations(request: Request, _caller: Reader) -> list[dict[str, Any]]:
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        found = organizations(session, runtime.settings.compat_default_organization)
        org_numbers = integer_ids.numbers_for(session, Kind.ORGANIZATION, [o.ref for o in found])
        profile_ids = [p.id for o in found for p in o.profiles]
        type_numbers = integer_ids.numbers_for(session, Kind.PROFILE, profile_ids)
        return [
            views.organization(o, org_numbers[o.ref], [type_numbers[p.id] for p in o.profiles]) for o in found
        ]
