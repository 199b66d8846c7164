"""Administrator accounts and their API keys."""

from __future__ import annotations

import datetime as dt
import enum
import re
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from caconnector.manager import audit, tokens
from caconnector.manager.db.models import ApiKey, User

_hasher = PasswordHasher()
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")


class Role(enum.StrEnum):
    ADMIN = "admin"  # everything
    OPERATOR = "operator"  # enroll, collect, renew, revoke, scan
    AUDITOR = "auditor"  # read only


class UserError(ValueError):
    pass


def create_user(
    session: Session, username: str, role: Role, now: dt.datetime, actor: str = "system"
) -> tuple[User, str]:
    """A new user with a generated password, returned once in clear (only its argon2 hash is kept)."""
    if not _USERNAME.match(username):
        raise UserError(f"invalid username {username!r}: letters, digits and . _ @ - only")
    if session.scalar(select(User).where(User.username == username)) is not None:
        raise UserError(f"user {username!r} already exists")
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


def user_for_api_key(session: Session, key: str, now: dt.datetime) -> User | None:
    lookup = tokens.api_key_lookup(key)
    if lookup is None:
        return None
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == lookup))
    if row is None or row.revoked_at is not None or not tokens.matches(key, row.key_hash):
        return None
    if row.user.disabled:
        return None
    row.last_used_at = now
    return row.user
