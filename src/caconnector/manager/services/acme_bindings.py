"""ACME account bindings (External Account Binding, RFC 8555 §7.3.4): an administrator's grant that lets
an ACME client open an account on one profile, for a list of allowed domains.

The HMAC key is returned once and stored sealed with the manager's key (not hashed: verifying an EAB's
HMAC needs the key itself). Names inside the allowed domains need no validation; whether names outside
them may be validated by challenges is the profile's ACME setting (`real_validation`).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from caconnector.manager import audit
from caconnector.manager.db.models import AcmeBinding, AcmeProfileSettings, Profile
from caconnector.manager.services.errors import Conflict, Invalid, NotFound
from caconnector.manager.services.pagination import Rows, paginate
from caconnector.pki.secretbox import SecretBox

MAX_DOMAINS = 100
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


@dataclass(frozen=True)
class NewBinding:
    binding: AcmeBinding
    hmac_key: str  # base64url, no padding: what `certbot --eab-hmac-key` takes; shown once


def directory_path(profile: Profile) -> str:
    return f"/acme/{profile.name}/directory"


def _entry(binding_id: str) -> str:
    return f"acme-binding:{binding_id}"


def normalize_name(name: str) -> str:
    """A DNS name as ACME compares it: lower case, no trailing dot; Invalid when it is not one."""
    value = name.strip().lower().rstrip(".")
    labels = value.split(".")
    body = labels[1:] if labels[0] == "*" else labels
    if len(value) > 253 or len(body) < 1 or not all(_LABEL.match(label) for label in body):
        raise Invalid(f"{name!r} is not a DNS name (letters, digits and -, labels joined by .)")
    return value


def parse_domains(text: str | list[str]) -> list[str]:
    """`'example.com,*.example.com'` (or a list) as normalized, unique patterns, in the given order."""
    items = text.split(",") if isinstance(text, str) else list(text)
    domains: list[str] = []
    for item in items:
        if not item.strip():
            continue
        domain = normalize_name(item)
        if domain.count("*") > 1 or ("*" in domain and not domain.startswith("*.")):
            raise Invalid(f"domain {item!r}: a wildcard is only `*.` in front (*.example.com)")
        if domain not in domains:
            domains.append(domain)
    if not domains:
        raise Invalid("give at least one allowed domain: exact names or *.example.com patterns")
    if len(domains) > MAX_DOMAINS:
        raise Invalid(f"a binding takes at most {MAX_DOMAINS} domains")
    return domains


def name_allowed(domains: list[Any], name: str) -> bool:
    """Whether the binding's domains cover `name` (itself possibly `*.x`): an exact entry, or a `*.x`
    pattern covering one more label (RFC 6125 style: `*.example.com` covers `a.example.com`, and the
    wildcard name `*.example.com` itself, not `example.com` or `a.b.example.com`)."""
    if name in domains:
        return True
    _, dot, parent = name.partition(".")
    return bool(dot) and not name.startswith("*.") and f"*.{parent}" in domains


def create_binding(
    session: Session,
    profile: Profile,
    domains: str | list[str],
    *,
    box: SecretBox,
    now: dt.datetime,
    actor: str,
    comments: str = "",
) -> NewBinding:
    allowed = parse_domains(domains)
    hmac_key = _new_hmac_key()
    binding_id = secrets.token_hex(16)
    binding = AcmeBinding(
        id=binding_id,
        kid=f"kid-{secrets.token_hex(12)}",
        hmac_sealed=json.dumps(box.seal(_entry(binding_id), hmac_key)).encode(),
        profile_id=profile.id,
        domains=allowed,
        comments=comments,
        created_at=now,
    )
    session.add(binding)
    session.flush()
    audit.record(
        session, now, actor, "acme_binding.create", target(binding), profile=profile.name, domains=allowed
    )
    return NewBinding(binding, hmac_key)


def _new_hmac_key() -> str:
    """32 random bytes, base64url. Never one starting with "-": pasted after `--eab-hmac-key` (certbot)
    or `--hmac` (lego) it would be read as an option (1 key in 64 would be; drawing again costs nothing)."""
    while True:
        key = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
        if not key.startswith("-"):
            return key


def hmac_key_of(binding: AcmeBinding, box: SecretBox) -> bytes:
    sealed = json.loads(binding.hmac_sealed)
    text = box.open(_entry(binding.id), sealed)
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def target(binding: AcmeBinding) -> str:
    return f"acme_binding:{binding.kid}"


def find_binding(session: Session, id_or_kid: str) -> AcmeBinding:
    binding = session.get(AcmeBinding, id_or_kid) or session.scalar(
        select(AcmeBinding).where(AcmeBinding.kid == id_or_kid)
    )
    if binding is None:
        raise NotFound(f"no ACME binding {id_or_kid!r} (list them with: ca-manager acme binding list)")
    return binding


def binding_by_kid(session: Session, kid: str) -> AcmeBinding | None:
    return session.scalar(select(AcmeBinding).where(AcmeBinding.kid == kid))


def list_bindings(
    session: Session, *, profile: Profile | None = None, limit: int | None = None, cursor: str | None = None
) -> Rows[AcmeBinding]:
    query = select(AcmeBinding)
    if profile is not None:
        query = query.where(AcmeBinding.profile_id == profile.id)
    return paginate(session, query, [AcmeBinding.created_at, AcmeBinding.id], limit, cursor, descending=True)


def revoke_binding(session: Session, binding: AcmeBinding, *, now: dt.datetime, actor: str) -> None:
    """Its key is refused for new accounts, and its accounts are refused from now on."""
    if binding.revoked_at is not None:
        raise Conflict(f"ACME binding {binding.kid} is already revoked")
    binding.revoked_at = now
    audit.record(session, now, actor, "acme_binding.revoke", target(binding))


def binding_view(binding: AcmeBinding, public_url: str) -> dict[str, Any]:
    return {
        "id": binding.id,
        "kid": binding.kid,
        "profile": binding.profile.name,
        "domains": list(binding.domains),
        "directory_url": public_url.rstrip("/") + directory_path(binding.profile),
        "comments": binding.comments,
        "created_at": binding.created_at,
        "revoked_at": binding.revoked_at,
    }


# ---- the profile's ACME setting ------------------------------------------------------------------------


def real_validation(session: Session, profile: Profile) -> bool:
    settings = session.get(AcmeProfileSettings, profile.id)
    return settings is not None and settings.real_validation


def set_real_validation(
    session: Session, profile: Profile, enabled: bool, *, now: dt.datetime, actor: str
) -> None:
    """Names outside a binding's domains: refused (off, the default) or validated by http-01/dns-01 (on)."""
    settings = session.get(AcmeProfileSettings, profile.id)
    if settings is None:
        settings = AcmeProfileSettings(profile_id=profile.id, real_validation=enabled, updated_at=now)
        session.add(settings)
    settings.real_validation = enabled
    settings.updated_at = now
    audit.record(
        session, now, actor, "profile.acme_validation", f"profile:{profile.name}", real_validation=enabled
    )
