"""Who is calling the connector channel: `Authorization: Bearer <JWT>` signed with a registered
connector's key (see `protocol.signing`), as a FastAPI dependency.

Checked in order: the token names a connector that exists and is registered; its signature, lifetime
and method/path binding verify with that connector's key; the connector is not Expired; its `jti` was
never seen (remembered in `seen_requests`, whose primary key turns a replay into an IntegrityError).
Then the request counts as contact: `last_seen` moves to now (to within LAST_SEEN_RESOLUTION).

A poll, the channel's most frequent request, defers those two writes (`defer_bookkeeping`): they are
made by `record_contact` first thing in the poll's own unit of work, so a poll costs one write, not two.
A replayed poll is refused there just the same, before its results or claims are touched (the unit is
undone as a whole); its body has been read by then, which the size limits bound.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass, replace
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import bindparam, delete, insert, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from caconnector.manager.db.models import Connector, SeenRequest
from caconnector.manager.db.types import UTCDateTime
from caconnector.manager.problems import Problem
from caconnector.manager.runtime import Runtime, runtime_of
from caconnector.manager.services.limits import TooLong, check_length
from caconnector.manager.services.status import ConnectorStatus, connector_status
from caconnector.protocol.errors import ChannelError
from caconnector.protocol.signing import (
    CLOCK_LEEWAY,
    SignatureInvalid,
    load_public_key,
    unverified_connector_id,
    verify_request,
)

# Expired request ids are purged on about one request in this many: often enough to keep the table
# at a few minutes of traffic, rarely enough to cost nothing per request.
PURGE_ONE_IN = 100

# `last_seen` only decides expiry (30 days by default) and is shown to the second: written at most this
# often, an agent's stream of polls does not update the connector's row for every request.
LAST_SEEN_RESOLUTION = dt.timedelta(seconds=1)


@dataclass(frozen=True)
class Contact:
    """The bookkeeping a verified request still owes (deferred into the request's own unit of work)."""

    jti: str
    expires_at: dt.datetime
    touch_last_seen: bool


@dataclass(frozen=True)
class ConnectorCaller:
    id: str
    name: str
    status: ConnectorStatus
    key: str  # the public key (PEM) the request verified with: a long poll re-checks it when woken
    # Set when the replay check and `last_seen` were deferred: `record_contact` makes them.
    contact: Contact | None = None


def refused(status: int, code: ChannelError, detail: str) -> Problem:
    return Problem(status, "Connector refused", detail, code=code.value)


# Where the HTTP guard leaves the connector it authenticated before the body was read (the signature is
# bound to method and path, not the body): its jti is remembered, so checking again would be a replay.
CALLER_STATE = "caconnector.connector"


def connector_unknown() -> Problem:
    return refused(
        401,
        ChannelError.CONNECTOR_UNKNOWN,
        "this connector was deleted from the manager (or never existed there): add it again in the "
        "manager and run ca-connector register -token T -force",
    )


def check_standing(session: Session, caller: ConnectorCaller) -> Connector:
    """Raise the refusal a new request from `caller` would get now, if its access ended since it was
    verified: the connector was deleted, or `register -force` replaced the key it signed with. A long
    poll calls this whenever it wakes, so revoking access cuts off a parked poll at once."""
    connector = session.get(Connector, caller.id)
    if connector is None or connector.public_key_pem is None:
        raise connector_unknown()
    if connector.public_key_pem != caller.key:
        raise refused(
            401,
            ChannelError.SIGNATURE_INVALID,
            "the request signature does not verify: this connector's key was replaced (a restore token "
            "was used with ca-connector register -force); the new registration's agent takes over",
        )
    return connector


def _bearer(authorization: str) -> str:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise refused(
            401,
            ChannelError.SIGNATURE_INVALID,
            "send Authorization: Bearer <a request signed by the connector>",
        )
    return token.strip()


def _signed_path(request: Request) -> str:
    """The channel path the route serves (a protocol constant): what the connector signs. A prefix under
    which a reverse proxy mounts the manager is not part of it."""
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else request.url.path


def describe_connector(authorization: str) -> str:
    """What a log line may say about a channel credential: the connector it claims to be."""
    try:
        claimed = unverified_connector_id(_bearer(authorization))
    except (Problem, SignatureInvalid):
        return "no readable signed request"
    return f"claims connector {claimed[:64]!r}"


async def signed_connector(request: Request) -> ConnectorCaller:
    """Async: a request with a body (a poll) was authenticated by the HTTP guard already, and a sync
    dependency would cost it a hand-over to the thread pool and back only to read that. The others
    are authenticated here, in the thread pool, so their database work blocks no loop."""
    caller = request.scope.get("state", {}).get(CALLER_STATE)
    if isinstance(caller, ConnectorCaller):
        return caller
    authorization = request.headers.get("authorization", "")
    return await run_in_threadpool(
        authenticate_connector, runtime_of(request), authorization, request.method, _signed_path(request)
    )


def authenticate_connector(
    runtime: Runtime,
    authorization: str,
    method: str,
    path: str,
    *,
    defer_bookkeeping: bool = False,
) -> ConnectorCaller:
    """The registered connector that signed this request for `method` and `path`, or a refusal.
    `defer_bookkeeping`: only read and verify; the caller's `contact` is then owed to `record_contact`
    in the request's own unit of work."""
    token = _bearer(authorization)
    try:
        connector_id = unverified_connector_id(token)
    except SignatureInvalid as exc:
        raise refused(401, ChannelError.SIGNATURE_INVALID, str(exc)) from None
    now = runtime.now()
    if defer_bookkeeping:
        with runtime.sessions.begin() as session:  # a read: no write lock, nothing to commit
            return _verified(runtime, session, connector_id, token, method, path, now)
    # One unit of work in the manager's group commit: the replay check's insert and `last_seen` are
    # committed with other requests' writes, not by a transaction of their own.
    return runtime.writes.run(
        lambda session: record_contact(
            session, _verified(runtime, session, connector_id, token, method, path, now), now
        )
    )


# Built once: every signed request runs the first, some the second.
_REMEMBER = insert(SeenRequest)
_TOUCH_LAST_SEEN = (
    update(Connector)
    .where(Connector.id == bindparam("connector_id"))
    .values(last_seen=bindparam("now", type_=UTCDateTime))
)


def record_contact(
    session: Session, caller: ConnectorCaller, now: dt.datetime, *, last_seen_written: bool = False
) -> ConnectorCaller:
    """Make the bookkeeping `caller` still owes: remember its request id (a replay is refused here) and
    move `last_seen` (unless the caller's unit wrote it already: `last_seen_written`, see
    `owes_last_seen`). A caller that owes nothing passes through."""
    contact = caller.contact
    if contact is None:
        return caller
    _remember(session, caller.id, contact.jti, contact.expires_at, now)
    if contact.touch_last_seen and not last_seen_written:
        session.connection().execute(_TOUCH_LAST_SEEN, {"connector_id": caller.id, "now": now})
    return replace(caller, contact=None)


def _verified(  # noqa: PLR0917  (one request's facts, checked in one unit of work)
    runtime: Runtime,
    session: Session,
    connector_id: str,
    token: str,
    method: str,
    path: str,
    now: dt.datetime,
) -> ConnectorCaller:
    connector = session.get(Connector, connector_id)
    if connector is None or connector.public_key_pem is None:
        raise connector_unknown()
    try:
        verified = verify_request(token, load_public_key(connector.public_key_pem), method, path, now)
    except SignatureInvalid as exc:
        raise refused(401, ChannelError.SIGNATURE_INVALID, str(exc)) from None
    status = connector_status(connector, now, runtime.settings)
    if status is ConnectorStatus.EXPIRED:
        raise refused(
            403,
            ChannelError.CONNECTOR_EXPIRED,
            f"connector {connector.name!r} was not seen for too long and its key is refused; restore "
            f"it: ca-manager connector restore -name {connector.name}, then ca-connector register "
            "-token T -force",
        )
    try:
        check_length("the request id (jti)", verified.jti, SeenRequest.jti)
    except TooLong as exc:
        raise refused(401, ChannelError.SIGNATURE_INVALID, str(exc)) from None
    touch = connector.last_seen is None or now - connector.last_seen >= LAST_SEEN_RESOLUTION
    contact = Contact(verified.jti, verified.expires_at, touch)
    return ConnectorCaller(connector.id, connector.name, status, connector.public_key_pem, contact)


def owes_last_seen(caller: ConnectorCaller) -> bool:
    """Whether `record_contact` would move `last_seen`: a unit that writes the connector's row anyway
    can write it in the same statement."""
    return caller.contact is not None and caller.contact.touch_last_seen


def _remember(
    session: Session, connector_id: str, jti: str, expires_at: dt.datetime, now: dt.datetime
) -> None:
    # Kept until the signed request could no longer verify anyway (its expiry plus the clock leeway).
    # A Core INSERT on the session's connection, not session.add: the unit of work's bookkeeping cost
    # more than the row itself. A replay's IntegrityError undoes only its unit (a savepoint).
    row = {"jti": jti, "connector_id": connector_id, "expires_at": expires_at + CLOCK_LEEWAY}
    try:
        session.connection().execute(_REMEMBER, row)
    except IntegrityError:
        raise refused(
            401, ChannelError.REPLAYED, "this signed request was seen before; sign each request anew"
        ) from None
    if secrets.randbelow(PURGE_ONE_IN) == 0:
        session.execute(delete(SeenRequest).where(SeenRequest.expires_at < now))


SignedConnector = Annotated[ConnectorCaller, Depends(signed_connector)]
