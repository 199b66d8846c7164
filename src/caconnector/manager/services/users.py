"""Administrator accounts and their API keys."""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, bindparam, select, update
from sqlalchemy.orm import Session, joinedload

from caconnector.manager import audit, tokens
from caconnector.manager.db.models import ApiKey, User
from caconnector.manager.db.types import UTCDateTime
from caconnector.manager.roles import Role
from caconnector.manager.services.errors import Conflict, Invalid, NotFound

_hasher = PasswordHasher()
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")


def create_user(
    session: Session, username: str, role: Role, now: dt.datetime, actor: str = "system"
) -> tuple[User, str]:
    """A new user with a generated password, returned once in clear (only its argon2 hash is kept)."""
    if not _USERNAME.match(username):
        raise Invalid(f"invalid username {username!r}: letters, digits and . _ @ - only")
    if session.scalar(select(User).where(User.username == username)) is not None:
        raise Conflict(f"user {username!r} already exists")
    password = secrets.token_urlsafe(18)
    user = User(username=username, role=role.value, password_hash=_hasher.hash(password), created_at=now)
    session.add(user)
    session.flush()
    audit.record(session, now, actor, "user.create", f"user:{username}", role=role.value)
    return user, password


def verify_password(user: User, password: str) -> bool:
    try:
        return _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def find_user(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


def create_api_key(
    session: Session, user: User, now: dt.datetime, actor: str = "system"
) -> tuple[ApiKey, str]:
    lookup, key = tokens.new_api_key()
    row = ApiKey(user_id=user.id, prefix=lookup, key_hash=tokens.hash_secret(key), created_at=now)
    session.add(row)
    session.flush()
    audit.record(session, now, actor, "apikey.create", f"user:{user.username}", key_prefix=lookup)
    return row, key


# `last_used_at` says when a key was last used to within this: writing it on every request made each
# API call a write transaction (a durable commit, and SQLite's one write lock) to record a few seconds.
LAST_USED_RESOLUTION = dt.timedelta(seconds=10)


@dataclass(frozen=True)
class KeyHolder:
    """Who an API key stands for, as a request needs it."""

    user_id: str
    username: str
    role: Role


# Built once: every API request runs it (a statement built per call costs more than its execution here).
_KEY_AND_HOLDER = (
    select(
        ApiKey.id,
        ApiKey.key_hash,
        ApiKey.revoked_at,
        ApiKey.last_used_at,
        User.id.label("user_id"),
        User.username,
        User.role,
        User.disabled,
    )
    .join(User, User.id == ApiKey.user_id)
    .where(ApiKey.prefix == bindparam("prefix"))
)
_TOUCH_KEY = (
    update(ApiKey)
    .where(ApiKey.id == bindparam("key_id"))
    .values(last_used_at=bindparam("now", type_=UTCDateTime))
)


def key_holder(engine: Engine, key: str, now: dt.datetime) -> KeyHolder | None:
    """The user `key` stands for; None when it is unknown, revoked, or its user disabled.

    What `user_for_api_key` does, as one Core read on a plain connection (no ORM session, no write
    transaction), and a write of `last_used_at` only when the one stored is older than its resolution:
    every API request asks this, and the ORM's session, query and objects cost it about five times
    as much."""
    lookup = tokens.api_key_lookup(key)
    if lookup is None:
        return None
    with engine.connect() as connection:
        row = connection.execute(_KEY_AND_HOLDER, {"prefix": lookup}).first()
    if row is None or not _accepts(key, row.key_hash, row.revoked_at, disabled=row.disabled):
        return None
    if _touch_due(row.last_used_at, now):
        with engine.begin() as connection:
            connection.execute(_TOUCH_KEY, {"key_id": row.id, "now": now})
    return KeyHolder(row.user_id, row.username, Role(row.role))


def user_for_api_key(session: Session, key: str, now: dt.datetime) -> User | None:
    lookup = tokens.api_key_lookup(key)
    if lookup is None:
        return None
    # With its user in the same query: every API request looks its key up.
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == lookup).options(joinedload(ApiKey.user)))
    if row is None or not _accepts(key, row.key_hash, row.revoked_at, disabled=row.user.disabled):
        return None
    if _touch_due(row.last_used_at, now):
        row.last_used_at = now
    return row.user


def _accepts(key: str, key_hash: str, revoked_at: dt.datetime | None, *, disabled: bool) -> bool:
    """Whether a stored key (its hash, revocation, its user's state) lets `key` in."""
    return revoked_at is None and tokens.matches(key, key_hash) and not disabled


def _touch_due(last_used_at: dt.datetime | None, now: dt.datetime) -> bool:
    return last_used_at is None or now - last_used_at >= LAST_USED_RESOLUTION


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def user_view(user: User) -> dict[str, Any]:
    """What the API and the CLI show of a user: never the password or its hash."""
    return {
        "id": user.id,
        "username": user.username,
        "role": user.role,
        "disabled": user.disabled,
        "created_at": user.created_at,
    }


def list_api_keys(session: Session, user: User | None = None, *, revoked: bool = False) -> list[ApiKey]:
    """Newest first; revoked keys only when asked for."""
    query = select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
    if user is not None:
        query = query.where(ApiKey.user_id == user.id)
    if not revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return list(session.scalars(query))


def api_key_view(row: ApiKey) -> dict[str, Any]:
    """What the API and the CLI show of an API key: its id and public prefix, never the key or its hash."""
    return {
        "id": row.id,
        "prefix": row.prefix,
        "username": row.user.username,
        "role": row.user.role,
        "created_at": row.created_at,
        "last_used_at": row.last_used_at,
        "revoked_at": row.revoked_at,
    }


def find_api_key(session: Session, *, key_id: str | None = None, prefix: str | None = None) -> ApiKey:
    query = select(ApiKey).where(ApiKey.id == key_id if key_id is not None else ApiKey.prefix == prefix)
    row = session.scalar(query)
    if row is None:
        what = f"id {key_id!r}" if key_id is not None else f"prefix {prefix!r}"
        raise NotFound(f"no API key with {what}; list them with: ca-manager apikey list")
    return row


def revoke_api_key(session: Session, row: ApiKey, now: dt.datetime, actor: str = "system") -> None:
    """Refused from the next request on (user_for_api_key checks revoked_at on every call). Revoking a
    revoked key again changes nothing and records nothing."""
    if row.revoked_at is not None:
        return
    row.revoked_at = now
    audit.record(session, now, actor, "apikey.revoke", f"user:{row.user.username}", key_prefix=row.prefix)
