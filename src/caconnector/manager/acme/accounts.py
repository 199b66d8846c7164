"""ACME accounts (RFC 8555 §7.3): opened with an External Account Binding (§7.3.4), found by the account
URL a request's `kid` names, updated, deactivated, and moved to a new key (§7.3.5)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from caconnector.manager import audit
from caconnector.manager.acme import jws as jose
from caconnector.manager.acme.problems import AcmeError, malformed, unauthorized
from caconnector.manager.acme.urls import Urls
from caconnector.manager.db.models import AcmeAccount, Profile
from caconnector.manager.services import acme_bindings
from caconnector.pki.secretbox import SecretBox, SecretBoxError

VALID = "valid"
DEACTIVATED = "deactivated"
MAX_CONTACTS = 10


def target(account: AcmeAccount) -> str:
    return f"acme_account:{account.id}"


def actor(account: AcmeAccount) -> str:
    """Who the audit log says acted: the account, which names its binding (and so its profile)."""
    return f"acme:{account.id}"


def by_thumbprint(session: Session, thumbprint: str) -> AcmeAccount | None:
    return session.scalar(select(AcmeAccount).where(AcmeAccount.thumbprint == thumbprint))


def new_account(
    session: Session,
    profile: Profile,
    request: jose.Jws,
    jwk: dict[str, Any],
    urls: Urls,
    *,
    box: SecretBox,
    now: dt.datetime,
) -> tuple[AcmeAccount, bool]:
    """(the account, whether it was created now) for newAccount signed with `jwk`."""
    payload = request.payload_json()
    thumbprint = jose.thumbprint(jwk)
    existing = by_thumbprint(session, thumbprint)
    if existing is not None:
        if existing.binding.profile_id != profile.id:
            raise unauthorized("this key holds an account of another ACME directory; use a new key here")
        return existing, False
    if payload.get("onlyReturnExisting") is True:
        raise AcmeError("accountDoesNotExist", "no account has this key; register without onlyReturnExisting")
    binding = _bound(session, profile, payload.get("externalAccountBinding"), jwk, urls, box=box)
    account = AcmeAccount(
        binding_id=binding.id,
        thumbprint=thumbprint,
        jwk=jwk,
        status=VALID,
        contact=_contacts(payload.get("contact", [])),
        created_at=now,
    )
    try:
        with session.begin_nested():  # a savepoint: losing a race for the key undoes only this insert
            session.add(account)
            session.flush()
    except IntegrityError:
        winner = by_thumbprint(session, thumbprint)
        if winner is None:
            raise
        return winner, False  # the same key registered at the same moment by another request
    audit.record(
        session, now, actor(account), "acme_account.create", target(account), binding=binding.kid,
        profile=profile.name,
    )  # fmt: skip
    return account, True


def _bound(
    session: Session, profile: Profile, eab: object, jwk: dict[str, Any], urls: Urls, *, box: SecretBox
) -> Any:
    """The binding a valid EAB names (§7.3.4: HS256 over the account's JWK, protected by the binding's
    kid and the newAccount URL); externalAccountRequired or unauthorized otherwise."""
    if eab is None:
        raise AcmeError(
            "externalAccountRequired",
            "this directory needs External Account Binding: ask an administrator for a kid and HMAC key "
            "(ca-manager acme binding add) and give them to your client (certbot --eab-kid --eab-hmac-key)",
        )
    binding_jws = jose.parse(eab, "externalAccountBinding")
    kid = binding_jws.protected.get("kid")
    if binding_jws.protected.get("url") != urls.new_account:
        raise malformed("externalAccountBinding url must be the newAccount URL")
    if "nonce" in binding_jws.protected:
        raise malformed("externalAccountBinding carries no nonce")
    if jose.json_object(binding_jws.payload, "externalAccountBinding payload") != jwk:
        raise malformed("externalAccountBinding payload must be the account key (the outer jwk)")
    binding = acme_bindings.binding_by_kid(session, kid) if isinstance(kid, str) else None
    if binding is None or binding.revoked_at is not None:
        raise unauthorized("the externalAccountBinding kid is unknown or revoked")
    if binding.profile_id != profile.id:
        raise unauthorized(f"kid {binding.kid} is bound to another profile, not {profile.name}")
    try:
        key = acme_bindings.hmac_key_of(binding, box)
    except SecretBoxError:
        raise unauthorized("this binding's key cannot be read with the manager's sealing key") from None
    if not jose.verify_mac(binding_jws, key):
        raise unauthorized("the externalAccountBinding HMAC does not verify with the binding's key")
    return binding


def _contacts(value: object) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_CONTACTS:
        raise malformed(f"contact is a list of at most {MAX_CONTACTS} mailto: URLs")
    for item in value:
        if not isinstance(item, str) or not item.startswith("mailto:") or len(item) > 320:
            raise AcmeError("unsupportedContact", "contacts are mailto: URLs")
    return list(value)


def from_kid(session: Session, kid: object, urls: Urls, profile: Profile) -> AcmeAccount:
    """The account a request's `kid` (its account URL) names, if it may act here."""
    prefix = urls.account("")
    if not isinstance(kid, str) or not kid.startswith(prefix):
        raise AcmeError("accountDoesNotExist", "kid is not an account URL of this directory")
    account = session.get(AcmeAccount, kid[len(prefix) :])
    if account is None:
        raise AcmeError("accountDoesNotExist", "no such account; register one with newAccount")
    if account.binding.profile_id != profile.id:
        raise AcmeError("accountDoesNotExist", "no such account in this directory")
    if account.status != VALID:
        raise unauthorized(f"the account is {account.status}")
    if account.binding.revoked_at is not None:
        raise unauthorized("the account's External Account Binding was revoked by an administrator")
    return account


def update(session: Session, account: AcmeAccount, payload: dict[str, Any], now: dt.datetime) -> None:
    """POST to the account URL: new contacts, or `status: deactivated` (final)."""
    if "contact" in payload:
        account.contact = _contacts(payload["contact"])
    status = payload.get("status")
    if status is not None:
        if status != DEACTIVATED:
            raise malformed("an account's status can only be set to deactivated")
        account.status = DEACTIVATED
        audit.record(session, now, actor(account), "acme_account.deactivate", target(account))


def change_key(session: Session, account: AcmeAccount, outer: jose.Jws, urls: Urls, now: dt.datetime) -> None:
    """keyChange (§7.3.5): the inner JWS, signed by the new key, names the account and its old key."""
    inner = jose.parse(_inner(outer), "the keyChange payload")
    if inner.protected.get("url") != outer.protected.get("url"):
        raise malformed("the inner JWS url must be the keyChange URL, as the outer one's")
    if "nonce" in inner.protected or "kid" in inner.protected:
        raise malformed("the inner JWS carries the new key as jwk, and no nonce")
    new_jwk = inner.protected.get("jwk")
    if not isinstance(new_jwk, dict):
        raise malformed("the inner JWS names the new key as jwk")
    jose.verify(inner, jose.public_key(new_jwk))
    payload = inner.payload_json()
    if payload.get("account") != urls.account(account.id):
        raise malformed("the keyChange payload's account is not the account signing the request")
    old = payload.get("oldKey")
    if not isinstance(old, dict) or jose.thumbprint(old) != account.thumbprint:
        raise malformed("the keyChange payload's oldKey is not the account's current key")
    thumbprint = jose.thumbprint(new_jwk)
    holder = by_thumbprint(session, thumbprint)
    if holder is not None:
        raise AcmeError(
            "conflict", "the new key already holds an account", 409,
            headers={"Location": urls.account(holder.id)},
        )  # fmt: skip
    account.jwk = new_jwk
    account.thumbprint = thumbprint
    audit.record(session, now, actor(account), "acme_account.key_change", target(account))


def _inner(outer: jose.Jws) -> object:
    try:
        return outer.payload_json()
    except AcmeError:
        raise malformed("the keyChange payload is not a JWS") from None
