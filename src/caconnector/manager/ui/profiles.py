"""Enrollment → Certificate Profiles: the table, and create, edit, delete through services.profiles."""

from __future__ import annotations

from typing import Any, cast

from fastapi import APIRouter, Request
from starlette.responses import Response

from caconnector.manager.runtime import Runtime, runtime_of
from caconnector.manager.services import backends as backend_service
from caconnector.manager.services import profiles as service
from caconnector.manager.services.errors import Invalid, ManagerError
from caconnector.manager.services.profiles import CERT_TYPES, CertType, ProfileFields
from caconnector.manager.ui.access import AdminPost, Posted, Refused, Viewer
from caconnector.manager.ui.render import page, redirect
from caconnector.pki.keys import KEY_TYPES

router = APIRouter(prefix="/profiles")


def _choices(runtime: Runtime) -> dict[str, Any]:
    """The backends and CAs a profile may name, for the form's lists."""
    with runtime.sessions.begin() as session:
        backends = backend_service.list_backends(session).items
        return {
            "backends": [{"id": b.id, "name": f"{b.name} ({b.connector.name})"} for b in backends],
            "cas": [
                {"id": ca.id, "name": f"{ca.name} — {b.name}"}
                for b in backends
                for ca in sorted(b.cas, key=lambda ca: ca.name)
            ],
            "cert_types": CERT_TYPES,
            "key_types": KEY_TYPES,
        }


def _rows(runtime: Runtime) -> list[dict[str, Any]]:
    with runtime.sessions.begin() as session:
        return [
            {
                "id": p.id,
                "name": p.name,
                "backend": p.backend.name,
                "ca": p.ca.name if p.ca is not None else "(the backend's only CA)",
                "cert_type": p.cert_type,
                "template": p.template or p.product or "",
                "organization": p.organization or "",
                "terms": ", ".join(str(t) for t in p.terms_days),
                "key_types": ", ".join(p.key_types),
            }
            for p in service.list_profiles(session).items
        ]


def _values_of(fields: ProfileFields) -> dict[str, Any]:
    return {
        "name": fields.name,
        "backend": fields.backend_id,
        "ca": fields.ca_id or "",
        "cert_type": fields.cert_type,
        "template": fields.template or "",
        "product": fields.product or "",
        "organization": fields.organization or "",
        "terms": ", ".join(str(t) for t in fields.terms_days),
        "key_types": list(fields.key_types),
    }


def _posted_values(posted: Posted) -> dict[str, Any]:
    names = ("name", "backend", "ca", "cert_type", "template", "product", "organization", "terms")
    values: dict[str, Any] = {name: posted.text(name).strip() for name in names}
    values["key_types"] = posted.texts("key_types")
    return values


def _fields(values: dict[str, Any]) -> ProfileFields:
    """The form as the service's fields; Invalid naming the field a person typed wrong."""
    try:
        terms = tuple(int(part) for part in values["terms"].replace(",", " ").split())
    except ValueError:
        raise Invalid("Terms: whole numbers of days, separated by commas (e.g. 365, 90)") from None
    if not terms:
        raise Invalid("Terms: give at least one term in days (e.g. 365)")
    if values["cert_type"] not in CERT_TYPES:
        raise Invalid(f"Certificate type: one of {', '.join(CERT_TYPES)}")
    if not values["backend"]:
        raise Invalid("CA backend: choose the backend the profile issues through")
    if not values["key_types"]:
        raise Invalid("Allowed key types: tick at least one")
    return ProfileFields(
        name=values["name"],
        backend_id=values["backend"],
        ca_id=values["ca"] or None,
        cert_type=cast(CertType, values["cert_type"]),
        terms_days=terms,
        key_types=tuple(values["key_types"]),
        template=values["template"] or None,
        product=values["product"] or None,
        organization=values["organization"] or None,
    )


def _form(request: Request, status: int = 200, **context: Any) -> Response:
    return page(request, "profile_form.html", status, **_choices(runtime_of(request)), **context)


def _admin_only(user: Viewer) -> None:
    if not user.is_admin:
        raise Refused(403, f"Your role ({user.role.value}) may not change profiles.")


@router.get("")
def profiles_page(request: Request, _user: Viewer) -> Response:
    return page(request, "profiles.html", rows=_rows(runtime_of(request)))


@router.get("/new")
def new_form(request: Request, user: Viewer) -> Response:
    _admin_only(user)
    values = {"name": "", "backend": "", "ca": "", "cert_type": "server", "template": "", "product": "",
              "organization": "", "terms": "365", "key_types": ["ec-p256", "rsa-2048"]}  # fmt: skip
    return _form(request, values=values, profile_id=None)


@router.post("/new")
def create(request: Request, posted: AdminPost) -> Response:
    runtime = runtime_of(request)
    values = _posted_values(posted)
    try:
        fields = _fields(values)
        with runtime.sessions.begin() as session:
            service.create_profile(session, fields, runtime.now(), posted.user.actor)
    except ManagerError as exc:
        return _form(request, 422, values=values, profile_id=None, error=exc.message)
    return redirect(request, "/profiles")


@router.get("/{profile_id}/edit")
def edit_form(profile_id: str, request: Request, user: Viewer) -> Response:
    _admin_only(user)
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        try:
            values = _values_of(ProfileFields.of(service.get_profile(session, profile_id)))
        except ManagerError as exc:
            raise Refused(404, exc.message) from None
    return _form(request, values=values, profile_id=profile_id)


@router.post("/{profile_id}/edit")
def edit(profile_id: str, request: Request, posted: AdminPost) -> Response:
    runtime = runtime_of(request)
    values = _posted_values(posted)
    try:
        fields = _fields(values)
        with runtime.sessions.begin() as session:
            profile = service.get_profile(session, profile_id)
            changes = {f: getattr(fields, f) for f in ProfileFields.__dataclass_fields__}
            service.update_profile(session, profile, changes, runtime.now(), posted.user.actor)
    except ManagerError as exc:
        return _form(request, 422, values=values, profile_id=profile_id, error=exc.message)
    return redirect(request, "/profiles")


@router.get("/{profile_id}/delete")
def delete_confirm(profile_id: str, request: Request, user: Viewer) -> Response:
    _admin_only(user)
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        try:
            name = service.get_profile(session, profile_id).name
        except ManagerError as exc:
            raise Refused(404, exc.message) from None
    return page(request, "profiles.html", rows=_rows(runtime), dialog="delete",
                target={"id": profile_id, "name": name})  # fmt: skip


@router.post("/{profile_id}/delete")
def delete(profile_id: str, request: Request, posted: AdminPost) -> Response:
    runtime = runtime_of(request)
    try:
        with runtime.sessions.begin() as session:
            profile = service.get_profile(session, profile_id)
            service.delete_profile(session, profile, runtime.now(), posted.user.actor)
    except ManagerError as exc:
        return page(request, "profiles.html", 422, rows=_rows(runtime), error=exc.message)
    return redirect(request, "/profiles")
