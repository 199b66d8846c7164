"""Certificate profiles: what may be requested through a backend (its CA, template or product, key
types, terms). Administrators define them; every request names one."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from caconnector.manager import audit
from caconnector.manager.db.models import Certificate, ManagedBackend, ManagedCA, Profile, new_id
from caconnector.manager.services.errors import Conflict, Invalid, NotFound
from caconnector.manager.services.pagination import Rows, paginate
from caconnector.manager.services.states import IN_FLIGHT
from caconnector.pki.keys import KEY_TYPES

CertType = Literal["server", "client"]
CERT_TYPES: tuple[CertType, ...] = ("server", "client")
# Same spelling rules as connector names: no leading or trailing space, so two names never look alike.
_NAME = re.compile(r"[A-Za-z0-9._-](?:[A-Za-z0-9 ._-]{0,126}[A-Za-z0-9._-])?")
MAX_TERM_DAYS = 36500  # a sanity bound; each CA enforces its own maximum
MAX_TEXT = 200


@dataclass(frozen=True)
class ProfileFields:
    """Everything an administrator sets on a profile, validated together (a change to one field can make
    another invalid: a new backend and the old CA)."""

    name: str
    backend_id: str
    ca_id: str | None
    cert_type: CertType
    terms_days: tuple[int, ...]
    key_types: tuple[str, ...]
    template: str | None = None
    product: str | None = None
    organization: str | None = None

    @classmethod
    def of(cls, profile: Profile) -> ProfileFields:
        cert_type: CertType = "client" if profile.cert_type == "client" else "server"
        return cls(
            name=profile.name,
            backend_id=profile.backend_id,
            ca_id=profile.ca_id,
            cert_type=cert_type,
            terms_days=tuple(profile.terms_days),
            key_types=tuple(profile.key_types),
            template=profile.template,
            product=profile.product,
            organization=profile.organization,
        )


def target(profile: Profile) -> str:
    return f"profile:{profile.id}"


def get_profile(session: Session, profile_id: str) -> Profile:
    profile = session.get(Profile, profile_id)
    if profile is None:
        raise NotFound(f"no profile with id {profile_id!r}")
    return profile


# With its backend and CA in the same query: an enrollment reads both (lazy loads cost a query each);
# not the CA's certificate and CRL, which it does not read (a CRL grows with every revocation). Built
# once: every enrollment looks its profile up, and building the options cost a quarter of the lookup.
_WITH_PARTS = (
    joinedload(Profile.backend),
    joinedload(Profile.ca).defer(ManagedCA.certificate_pem).defer(ManagedCA.crl_der),
)
_BY_NAME = select(Profile).where(Profile.name == bindparam("name")).options(*_WITH_PARTS)


def find_profile(session: Session, id_or_name: str) -> Profile:
    """The profile a request names, by id or by name; a 422 (it is in the body) when there is none."""
    profile = session.get(Profile, id_or_name, options=_WITH_PARTS) or session.scalar(
        _BY_NAME, {"name": id_or_name}
    )
    if profile is None:
        raise Invalid(f"no profile {id_or_name!r}; GET /profiles lists them", code="unknown_profile")
    return profile


def profile_ca(session: Session, profile: Profile) -> ManagedCA:
    """The CA a request through `profile` goes to: the profile's, else its backend's only one."""
    if profile.ca is not None:
        return profile.ca
    cas = list(session.scalars(select(ManagedCA).where(ManagedCA.backend_id == profile.backend_id)))
    if len(cas) != 1:
        raise Conflict(
            f"profile {profile.name!r} names no CA and its backend {profile.backend.name!r} has "
            f"{len(cas)}; set the profile's ca",
            code="profile_incomplete",
        )
    return cas[0]


def create_profile(session: Session, fields: ProfileFields, now: dt.datetime, actor: str) -> Profile:
    _validate(session, fields)
    _ensure_name_free(session, fields.name)
    profile = Profile(id=new_id(), created_at=now)
    _assign(profile, fields)
    session.add(profile)
    _flush(session, fields.name)
    audit.record(session, now, actor, "profile.create", target(profile), **_audit_fields(fields))
    return profile


def update_profile(
    session: Session, profile: Profile, changes: dict[str, Any], now: dt.datetime, actor: str
) -> Profile:
    """`changes`: ProfileFields names and their new values; the result is validated as a whole."""
    before = ProfileFields.of(profile)
    after = dataclasses.replace(before, **changes)
    if after == before:
        return profile
    _validate(session, after)
    if after.name != before.name:
        _ensure_name_free(session, after.name, keep=profile)
    _assign(profile, after)
    _flush(session, after.name)
    changed = {k: v for k, v in _audit_fields(after).items() if v != _audit_fields(before)[k]}
    audit.record(session, now, actor, "profile.update", target(profile), **changed)
    return profile


def delete_profile(session: Session, profile: Profile, now: dt.datetime, actor: str) -> None:
    """Refused while requests through it are in flight (their retries are made as the profile says);
    finished certificates keep their history, with no profile."""
    in_flight = session.scalar(
        select(func.count())
        .select_from(Certificate)
        .where(Certificate.profile_id == profile.id, Certificate.status.in_(IN_FLIGHT))
    )
    if in_flight:
        raise Conflict(
            f"profile {profile.name!r} has {in_flight} request(s) still Requested or Pending; "
            "delete it once they are done"
        )
    audit.record(session, now, actor, "profile.delete", target(profile), name=profile.name)
    session.delete(profile)
    session.flush()


# ---- validation -------------------------------------------------------------------------------------


def _validate(session: Session, fields: ProfileFields) -> None:
    if not _NAME.fullmatch(fields.name):
        raise Invalid(
            f"invalid profile name {fields.name!r}: 1-128 characters, letters, digits, space and . _ - "
            "only, not starting or ending with a space"
        )
    backend = session.get(ManagedBackend, fields.backend_id)
    if backend is None:
        raise Invalid(f"backend: no backend with id {fields.backend_id!r}; GET /backends lists them")
    if fields.ca_id is not None:
        ca = session.get(ManagedCA, fields.ca_id)
        if ca is None or ca.backend_id != backend.id:
            known = ", ".join(sorted(c.id for c in backend.cas)) or "none reported yet"
            raise Invalid(
                f"ca: backend {backend.name!r} has no CA with id {fields.ca_id!r} (its CAs: {known})"
            )
    elif len(backend.cas) > 1:
        raise Invalid(f"ca: backend {backend.name!r} has {len(backend.cas)} CAs; name the one to use")
    if fields.cert_type not in CERT_TYPES:
        raise Invalid(f"cert_type: {fields.cert_type!r} is not one of {', '.join(CERT_TYPES)}")
    _validate_terms(fields.terms_days)
    _validate_key_types(fields.key_types)
    for what, value in (
        ("template", fields.template),
        ("product", fields.product),
        ("organization", fields.organization),
    ):
        if value is not None and not (0 < len(value) <= MAX_TEXT and value.strip() == value):
            raise Invalid(f"{what}: 1-{MAX_TEXT} characters, no leading or trailing space")
    if fields.template is not None and backend.templates and fields.template not in backend.templates:
        raise Invalid(
            f"template: backend {backend.name!r} offers no template {fields.template!r} "
            f"(it offers: {', '.join(map(str, backend.templates))})"
        )


def _validate_terms(terms: tuple[int, ...]) -> None:
    if not terms:
        raise Invalid("terms_days: give at least one term; the first is the default")
    bad = [t for t in terms if isinstance(t, bool) or not 0 < t <= MAX_TERM_DAYS]
    if bad:
        raise Invalid(f"terms_days: {bad[0]} is not a term; terms are days, 1 to {MAX_TERM_DAYS}")
    if len(set(terms)) != len(terms):
        raise Invalid("terms_days: a term is listed twice")


def _validate_key_types(key_types: tuple[str, ...]) -> None:
    if not key_types:
        raise Invalid(f"key_types: give at least one of {', '.join(KEY_TYPES)}")
    unknown = [k for k in key_types if k not in KEY_TYPES]
    if unknown:
        raise Invalid(f"key_types: unknown key type {unknown[0]!r}; use {', '.join(KEY_TYPES)}")
    if len(set(key_types)) != len(key_types):
        raise Invalid("key_types: a key type is listed twice")


def _assign(profile: Profile, fields: ProfileFields) -> None:
    profile.name = fields.name
    profile.backend_id = fields.backend_id
    profile.ca_id = fields.ca_id
    profile.cert_type = fields.cert_type
    profile.terms_days = list(fields.terms_days)
    profile.key_types = list(fields.key_types)
    profile.template = fields.template
    profile.product = fields.product
    profile.organization = fields.organization


def _audit_fields(fields: ProfileFields) -> dict[str, Any]:
    values = dataclasses.asdict(fields)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def _ensure_name_free(session: Session, name: str, keep: Profile | None = None) -> None:
    other = session.scalar(select(Profile).where(Profile.name == name))
    if other is not None and other is not keep:
        raise Conflict(f"a profile named {name!r} already exists (id {other.id})")


def _flush(session: Session, name: str) -> None:
    # The check above races with a concurrent create of the same name; the unique index settles it.
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"a profile named {name!r} already exists") from None


def list_profiles(session: Session, *, limit: int | None = None, cursor: str | None = None) -> Rows[Profile]:
    return paginate(session, select(Profile), [Profile.name, Profile.id], limit, cursor)
