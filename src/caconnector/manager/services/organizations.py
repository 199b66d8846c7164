"""Organizations as a client that enrolls "for an organization" sees them: each organization a backend
reports (the CA validates it: DigiCert, Entrust), plus one default organization standing for every
backend that has none. Each profile belongs to exactly one of them: the organization it names on its
backend, else the default."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from caconnector.manager.db.models import ManagedBackend, Profile

DEFAULT_REF = "default"


@dataclass
class Organization:
    ref: str  # DEFAULT_REF, or "<backend id>/<the organization's id at the CA>"
    name: str
    status: str | None  # the CA's validation status; None for the default organization
    profiles: list[Profile] = field(default_factory=list)


def organizations(session: Session, default_name: str) -> list[Organization]:
    """The default organization first, then the backends' in a stable order, each with its profiles."""
    found: dict[str, Organization] = {DEFAULT_REF: Organization(DEFAULT_REF, default_name, None)}
    backends = session.scalars(
        select(ManagedBackend)
        .where(ManagedBackend.present.is_(True), ManagedBackend.disabled.is_(False))
        .order_by(ManagedBackend.name, ManagedBackend.id)
    )
    for backend in backends:
        for reported in backend.organizations:
            if isinstance(reported, dict) and _key(reported):
                ref = f"{backend.id}/{_key(reported)}"
                name = str(reported.get("name") or _key(reported))
                found[ref] = Organization(ref, name, str(reported.get("status", "unknown")))
    profiles = session.scalars(
        select(Profile).options(selectinload(Profile.backend)).order_by(Profile.name, Profile.id)
    )
    for profile in profiles:
        organization = found.get(organization_ref(profile))
        if organization is not None:  # None: its backend is disabled or gone
            organization.profiles.append(profile)
    return list(found.values())


def organization_ref(profile: Profile) -> str:
    """The organization a request through `profile` is for."""
    wanted = profile.organization
    if wanted is not None:
        for reported in profile.backend.organizations:
            if isinstance(reported, dict) and wanted in (reported.get("id"), reported.get("name")):
                return f"{profile.backend_id}/{_key(reported)}"
    return DEFAULT_REF


def _key(reported: dict[str, Any]) -> str:
    return str(reported.get("id") or reported.get("name") or "")
