"""Replay-Nonce values (RFC 8555 §6.5): single use and expiring, kept in the database so every manager
process sharing it accepts a nonce another one gave."""

from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import delete
from sqlalchemy.orm import Session

from caconnector.manager.db.models import AcmeNonce

NONCE_BYTES = 16  # 128 bits


def issue(session: Session, now: dt.datetime, ttl_seconds: float) -> str:
    # Expired nonces go as new ones come: the table holds only what may still be used.
    session.execute(delete(AcmeNonce).where(AcmeNonce.expires_at <= now))
    value = secrets.token_urlsafe(NONCE_BYTES)
    session.add(AcmeNonce(value=value, expires_at=now + dt.timedelta(seconds=ttl_seconds)))
    return value


def consume(session: Session, value: object, now: dt.datetime) -> bool:
    """True once for a nonce this server gave that has not expired: the DELETE is the claim, so two
    requests carrying the same nonce, in any processes, cannot both win."""
    if not isinstance(value, str) or not value or len(value) > 64:
        return False
    result = session.execute(delete(AcmeNonce).where(AcmeNonce.value == value, AcmeNonce.expires_at > now))
    return bool(getattr(result, "rowcount", 0) == 1)
