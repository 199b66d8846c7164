"""The connector channel, `/connector/v1/...`: registration, hello, inventory, the job long poll, goodbye.

Internal to the two programs and versioned separately (protocol.version), so left out of the REST
API's OpenAPI document. Refusals are problem documents whose `code` (protocol.errors) the connector
acts on.

The long poll answers as soon as a job exists, not on a timer: the poll subscribes to wake-ups for its
connector before it first looks for jobs (so none created meanwhile is missed), then waits on an
asyncio event. Database work runs in the threadpool; a waiting poll holds no connection and no thread.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass

from fastapi import APIRouter, Request, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from caconnector.manager.channel_auth import (
    ConnectorCaller,
    SignedConnector,
    check_standing,
    connector_unknown,
    owes_last_seen,
    record_contact,
    refused,
)
from caconnector.manager.db.models import Job
from caconnector.manager.runtime import Runtime, runtime_of
from caconnector.manager.services import dispatch, inventory, liveness
from caconnector.manager.services.connector_registration import RegistrationRefused, register_connector
from caconnector.manager.services.limits import TooLong
from caconnector.manager.services.wakeups import Waiter
from caconnector.protocol import messages
from caconnector.protocol.errors import ChannelError
from caconnector.protocol.version import IncompatibleProtocol, check_compatible

router = APIRouter(include_in_schema=False)

_REFUSAL_STATUS = {
    ChannelError.TOKEN_INVALID: 401,
    ChannelError.TOKEN_EXPIRED: 401,
    ChannelError.TOKEN_USED: 409,
    ChannelError.ALREADY_REGISTERED: 409,
    ChannelError.PROTOCOL_VERSION: 400,
    ChannelError.INVALID_REQUEST: 400,
}


@router.post(messages.REGISTER_PATH, response_model=messages.RegisterResponse)
def register(body: messages.RegisterRequest, request: Request) -> messages.RegisterResponse:
    runtime = runtime_of(request)
    try:
        with runtime.sessions.begin() as session:
            connector = register_connector(session, body, runtime.now(), runtime.settings)
    except RegistrationRefused as exc:
        raise refused(_REFUSAL_STATUS[exc.code], exc.code, exc.message) from None
    return messages.RegisterResponse(
        connector_id=connector.id,
        name=connector.name,
        poll_wait_seconds=runtime.settings.poll_wait_seconds,
        inventory_interval_seconds=runtime.settings.inventory_interval_seconds,
    )


@router.get(messages.HELLO_PATH, response_model=messages.HelloResponse)
def hello(caller: SignedConnector) -> messages.HelloResponse:
    return messages.HelloResponse(connector_id=caller.id, name=caller.name, status=caller.status.value)


@router.post(messages.INVENTORY_PATH, status_code=204, response_class=Response)
def report_inventory(body: messages.InventoryReport, caller: SignedConnector, request: Request) -> Response:
    _check_protocol(body.protocol_version)
    try:
        inventory.check_inventory(body)
    except TooLong as exc:
        raise refused(400, ChannelError.INVALID_REQUEST, str(exc)) from None
    runtime = runtime_of(request)
    try:
        with runtime.sessions.begin() as session:
            inventory.apply_inventory(session, caller.id, body, runtime.now())
    except inventory.UnknownConnector:  # deleted since the signature was checked
        raise connector_unknown() from None
    return Response(status_code=204)


@router.post(messages.GOODBYE_PATH, status_code=204, response_class=Response)
def goodbye(caller: SignedConnector, request: Request) -> Response:
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        liveness.disconnect(session, caller.id, runtime.now())
    return Response(status_code=204)


@router.post(messages.POLL_PATH, response_model=messages.PollResponse)
async def poll(
    body: messages.PollRequest, caller: SignedConnector, request: Request
) -> messages.PollResponse:
    _check_protocol(body.protocol_version)
    runtime = runtime_of(request)
    settings = runtime.settings
    wait = (
        settings.poll_wait_seconds
        if body.wait_seconds is None
        else min(body.wait_seconds, settings.poll_wait_seconds)
    )
    with runtime.wakeups.subscribe(caller.id) as waiter:
        opened = await run_in_threadpool(_open, runtime, caller, body, wait)
        jobs = opened.jobs
        if opened.window is not None:
            gone = asyncio.Event()
            watcher = asyncio.create_task(_watch_disconnect(request, waiter, gone))
            try:
                # Raises the refusal when the connector loses access while parked (deleted, or its key
                # replaced); the window needs no closing then: the delete or the registration moved it.
                jobs = await _wait_for_jobs(request, waiter, caller, body.capacity, wait, gone=gone)
            finally:
                watcher.cancel()
            until = runtime.now() + dt.timedelta(seconds=settings.heartbeat_grace_seconds)
            if until < opened.window:
                await run_in_threadpool(_close, runtime, caller.id, opened.window, until)
    return messages.PollResponse(
        jobs=[dispatch.job_message(job) for job in jobs],
        acknowledged=opened.acknowledged,
        server_time=runtime.now(),
    )


def _check_protocol(version: str) -> None:
    """The refusal registration gives: a connector of another major version must not have its jobs
    and reports read as if they were ours."""
    try:
        check_compatible(version)
    except IncompatibleProtocol as exc:
        raise refused(
            _REFUSAL_STATUS[ChannelError.PROTOCOL_VERSION], ChannelError.PROTOCOL_VERSION, str(exc)
        ) from None


@dataclass(frozen=True)
class _Opened:
    acknowledged: list[str]
    jobs: list[Job]
    window: dt.datetime | None  # connected_until while the poll waits; None when it answers at once


def _open(runtime: Runtime, caller: ConnectorCaller, body: messages.PollRequest, wait: float) -> _Opened:
    """One transaction: take the results, extend leases, claim jobs, and mark the connector Connected.

    The connector row is written first, in every transaction that writes it with jobs or backends, so
    concurrent transactions take their locks in one order and cannot deadlock on PostgreSQL. Its
    standing is checked under that lock: a delete or key change committed between the signature check
    and the subscription to wake-ups (whose wake this poll missed) is refused here.
    """
    connector_id = caller.id
    settings = runtime.settings
    now = runtime.now()
    lease = dt.timedelta(seconds=settings.lease_seconds)
    grace = dt.timedelta(seconds=settings.heartbeat_grace_seconds)
    window = now + dt.timedelta(seconds=wait) + grace

    def work(session: Session) -> _Opened:
        seen = owes_last_seen(caller)
        liveness.extend_connected_until(session, connector_id, now + grace, seen_at=now if seen else None)
        # The signature's replay check: a replay is refused here, and the unit undone, before any change.
        record_contact(session, caller, now, last_seen_written=seen)
        # Held for the transaction: the session keeps only weak references to unchanged rows, and the
        # results' audit events name the connector (lifecycle finds it here instead of querying again).
        _connector = check_standing(session, caller)
        acknowledged = dispatch.store_results(session, connector_id, body.results, now, runtime.retry)
        dispatch.extend_leases(session, connector_id, body.running, now, lease)
        dispatch.give_up_undeliverable(session, connector_id, now, settings.max_deliveries, runtime.retry)
        jobs = dispatch.claim_jobs(session, connector_id, body.capacity, now, lease)
        if jobs or body.capacity == 0 or wait <= 0:
            return _Opened(acknowledged, jobs, None)
        liveness.extend_connected_until(session, connector_id, window)
        return _Opened(acknowledged, [], window)

    return runtime.writes.run(work)


async def _watch_disconnect(request: Request, waiter: Waiter, gone: asyncio.Event) -> None:
    """End a parked poll as soon as its connector hangs up (it stopped, or restarted), instead of holding
    it until the wait runs out, which would also hold up a server shutdown. With the body read, the next
    ASGI message on this request can only be its disconnect."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
    gone.set()
    waiter.wake()


async def _wait_for_jobs(
    request: Request,
    waiter: Waiter,
    caller: ConnectorCaller,
    capacity: int,
    wait: float,
    *,
    gone: asyncio.Event,
) -> list[Job]:
    """Claim when woken; a wake that finds nothing (another poll took the job) waits on. When the
    wait ends, claim once more: a wake-up lost on the way costs a delay, never a job. Each claim first
    checks that the connector still has access (a delete or a key change wakes its polls too)."""
    runtime = runtime_of(request)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        woken = await waiter.wait(deadline - loop.time())
        waiter.clear()
        if gone.is_set() or await request.is_disconnected():
            # The connector gave up on this poll (timeout, restart): a job claimed now would sit
            # leased, undelivered, until its lease ran out. Leave it queued for the next poll.
            return []
        jobs = await run_in_threadpool(_claim, runtime, caller, capacity, not woken)
        if jobs or not woken or loop.time() >= deadline:
            return jobs


def _claim(runtime: Runtime, caller: ConnectorCaller, capacity: int, read_first: bool) -> list[Job]:
    """`read_first`: look before taking the write lock. The claim at the end of a wait nobody woke
    almost always finds nothing, and a read takes no write lock and commits nothing; a job queued just
    after the read is the same as one queued just after the claim: its wake-up, or the next poll,
    delivers it. A woken claim goes straight to the write: a wake-up means a job, most times."""
    now = runtime.now()
    if read_first:
        with runtime.engine.connect() as connection:
            key, claimable = dispatch.key_and_claimable(connection, caller.id, now)
        if key == caller.key and not claimable:
            return []
        # Something to claim, or the connector lost its access: the write below claims, or refuses.

    def work(session: Session) -> list[Job]:
        check_standing(session, caller)
        return dispatch.claim_jobs(
            session, caller.id, capacity, now, dt.timedelta(seconds=runtime.settings.lease_seconds)
        )

    return runtime.writes.run(work)


def _close(runtime: Runtime, connector_id: str, window: dt.datetime, until: dt.datetime) -> None:
    """Shorten the poll's window to `until` (now plus the grace). Only called when that shortens it: a
    poll that waited its whole wait already has a window ending about now plus the grace, so an idle
    connector's poll costs no write and no hand-over to the thread pool for it."""
    runtime.writes.run(lambda session: liveness.close_poll_window(session, connector_id, window, until))
