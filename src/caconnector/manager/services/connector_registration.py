"""A connector presenting its installation token: bind its public key to the connector.

The token is single use. Checking and using it is one conditional UPDATE (`... WHERE token_used_at IS
NULL`), so of two registrations racing with one token exactly one wins, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from caconnector.manager import audit, tokens
from caconnector.manager.db.models import Connector
from caconnector.manager.services.connectors import target
from caconnector.manager.services.limits import TooLong, check_length
from caconnector.manager.services.wakeups import access_changed
from caconnector.manager.settings import Settings
from caconnector.protocol.errors import ChannelError
from caconnector.protocol.messages import RegisterRequest
from caconnector.protocol.signing import SignatureInvalid, load_public_key
from caconnector.protocol.version import IncompatibleProtocol, check_compatible


class RegistrationRefused(Exception):
    def __init__(self, code: ChannelError, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _restore_hint(connector: Connector) -> str:
    return f"ca-manager connector restore -name {connector.name}"


def register_connector(
    session: Session, request: RegisterRequest, now: dt.datetime, settings: Settings
) -> Connector:
    """Check everything that can be wrong before touching the token, so a refused attempt never uses
    it up; then use it and store the key, hostname and version."""
    try:
        check_compatible(request.protocol_version)
    except IncompatibleProtocol as exc:
        raise RegistrationRefused(ChannelError.PROTOCOL_VERSION, str(exc)) from None
    try:
        load_public_key(request.public_key)
        check_length("hostname", request.hostname, Connector.hostname)
        check_length("version", request.version, Connector.version)
        check_length("protocol_version", request.protocol_version, Connector.protocol_version)
    except SignatureInvalid as exc:
        raise RegistrationRefused(ChannelError.INVALID_REQUEST, f"public_key: {exc}") from None
    except TooLong as exc:
        raise RegistrationRefused(ChannelError.INVALID_REQUEST, str(exc)) from None

    token_hash = tokens.hash_secret(request.token)
    connector = session.scalar(select(Connector).where(Connector.token_hash == token_hash))
    if connector is None:
        raise RegistrationRefused(
            ChannelError.TOKEN_INVALID,
            "the manager knows no such installation token (mistyped, or replaced by a newer one); "
            "copy it again from the connector's page in the manager",
        )
    if connector.token_used_at is not None:
        raise _token_used(connector)
    if connector.token_expires_at is None or connector.token_expires_at <= now:
        raise RegistrationRefused(
            ChannelError.TOKEN_EXPIRED,
            f"this installation token expired; get a new one: {_restore_hint(connector)}",
        )
    replacing = connector.public_key_pem is not None
    if replacing and not request.force:
        raise RegistrationRefused(
            ChannelError.ALREADY_REGISTERED,
            f"connector {connector.name!r} is already registered; to replace its key, use "
            "register -force with a restore token",
        )

    used = session.scalar(
        update(Connector)
        .where(
            Connector.id == connector.id,
            Connector.token_hash == token_hash,
            Connector.token_used_at.is_(None),
        )
        .values(
            token_used_at=now,
            token_sealed=None,  # the admin's copy of the token has nothing left to show
            # The new key replaces the old one: from this commit on, only the new key verifies.
            public_key_pem=request.public_key,
            hostname=request.hostname,
            version=request.version,
            protocol_version=request.protocol_version,
            registered_at=now,
            last_seen=now,
            # Shown Connected at once: the connector starts polling right after registering.
            connected_until=now + dt.timedelta(seconds=settings.heartbeat_grace_seconds),
        )
        .returning(Connector.id)
    )
    if used is None:
        raise _token_used(connector)  # a concurrent registration won the race
    if replacing:
        access_changed(session, connector.id)  # the old key's open polls are refused at once
    session.refresh(connector)
    audit.record(
        session,
        now,
        f"connector:{connector.name}",
        "connector.register",
        target(connector),
        hostname=request.hostname,
        version=request.version,
        replaced_key=replacing,
    )
    return connector


def _token_used(connector: Connector) -> RegistrationRefused:
    return RegistrationRefused(
        ChannelError.TOKEN_USED,
        "this installation token was already used; a failed install needs a new token: "
        + _restore_hint(connector),
    )
