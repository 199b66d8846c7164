"""The HTTP guard: an ASGI middleware in front of every route, for what must happen before a request's
body is read (FastAPI reads and parses a body before it runs an endpoint's dependencies).

In order, per request:
1. an address that failed authentication too often is answered 429 (manager/throttle.py);
2. requests in progress are bounded per class, the REST API apart from the connector channel, so
   parked long polls cannot starve the API, nor API clients the connectors (503);
3. a body whose declared length exceeds its route's limit is refused at once (413);
4. a request with a body is authenticated from its headers first: the bearer API key, or the
   connector's signed request (bound to method and path, not to the body); a refusal is answered
   without reading a byte of the body;
5. the body is counted as it streams and never read past the limit (413), and must arrive within
   the body timeout (408); both answers close the connection, since the rest of the body is unread;
6. every answer gets `X-Content-Type-Options: nosniff`, API and channel answers `Cache-Control:
   no-store` (some carry tokens and keys), HTTPS answers HSTS, 405 answers the `Allow` of every
   route on that path; a 401 counts as a failed authentication for its address.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass, field

from starlette.concurrency import run_in_threadpool
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from caconnector.manager.auth import PRINCIPAL_STATE, authenticate, describe_api_key
from caconnector.manager.channel_auth import CALLER_STATE, authenticate_connector, describe_connector
from caconnector.manager.problems import Problem, problem_response
from caconnector.manager.runtime import Runtime
from caconnector.manager.settings import Settings
from caconnector.manager.throttle import FailureLog, FailureThrottle
from caconnector.protocol import messages

API_PREFIX = "/api/v1"
DOCS_PREFIX = f"{API_PREFIX}/docs"
SIGNED_CHANNEL_PATHS = frozenset(
    {messages.HELLO_PATH, messages.POLL_PATH, messages.INVENTORY_PATH, messages.GOODBYE_PATH}
)
# The commercial manager's REST API (manager/compat/): throttled and counted like ours, but its password
# headers are checked by its endpoints, after the (size-limited) body.
COMPAT_PREFIXES = ("/api/ssl/", "/api/organization/", "/private/api/")
# Prometheus' scrape path: authenticated and throttled as the REST API is (manager/metrics/).
METRICS_PATH = "/metrics"
HSTS = b"max-age=31536000"
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


class Kind(enum.Enum):
    API = "api"
    CHANNEL = "channel"
    REGISTER = "registration"
    COMPAT = "compatible API"
    OTHER = "other"  # health check, docs: no credentials, no bodies worth the name


def route_path(scope: Scope) -> str:
    """The path the routes see: without the prefix a reverse proxy mounts the manager under."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def classify(path: str) -> Kind:
    if path == messages.REGISTER_PATH:
        return Kind.REGISTER
    if path.startswith(messages.CHANNEL_PREFIX + "/"):
        return Kind.CHANNEL
    if (path.startswith(API_PREFIX) and not path.startswith(DOCS_PREFIX)) or path == METRICS_PATH:
        return Kind.API
    if path.startswith(COMPAT_PREFIXES):
        return Kind.COMPAT
    return Kind.OTHER


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _declared_length(scope: Scope) -> int | None:
    """The Content-Length, or None for a streamed (chunked) body. The server has refused a malformed
    one already."""
    value = _header(scope, b"content-length")
    return int(value) if value is not None and value.strip().isdigit() else None


def _has_body(scope: Scope) -> bool:
    length = _declared_length(scope)
    return bool(length) or (length is None and _header(scope, b"transfer-encoding") is not None)


@dataclass
class _Body:
    """The request's receive channel, counted and under a deadline until the body is complete. After
    that it passes through untimed: a parked long poll waits on it for the client's disconnect."""

    receive: Receive
    limit: int
    deadline: float
    received: int = 0
    complete: bool = False
    refusal: Problem | None = None

    async def __call__(self) -> Message:
        if self.refusal is not None:
            return {"type": "http.disconnect"}
        if self.complete:
            return await self.receive()
        loop = asyncio.get_running_loop()
        try:
            message = await asyncio.wait_for(self.receive(), max(0.0, self.deadline - loop.time()))
        except TimeoutError:
            self.refusal = Problem(
                408,
                "Request timeout",
                "the request body did not arrive in time; send it at once",
                code="body_timeout",
            )
            return {"type": "http.disconnect"}
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                self.refusal = _too_large(self.limit)
                return {"type": "http.disconnect"}
            self.complete = not message.get("more_body", False)
        return message


def _too_large(limit: int) -> Problem:
    return Problem(
        413,
        "Request body too large",
        f"this endpoint takes bodies of at most {limit} bytes",
        code="body_too_large",
        limit_bytes=limit,
    )


@dataclass
class _Answer:
    """The send side of one request: security headers added, the `Allow` of a 405 made complete, the
    status noted, and the app's answer replaced by the guard's refusal when the body was refused."""

    scope: Scope
    send: Send
    router: Router
    body: _Body | None = None
    status: int | None = None
    swallow: bool = False
    extra: dict[bytes, bytes] = field(default_factory=dict)

    async def __call__(self, message: Message) -> None:
        if self.swallow:
            return
        if message["type"] == "http.response.start" and self.body is not None and self.body.refusal:
            await self.refuse(self.body.refusal)
            return
        await self._forward(message)

    async def _forward(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
            message = {**message, "headers": self._headers(self.status, list(message.get("headers", [])))}
        await self.send(message)

    def _headers(self, status: int, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        path = route_path(self.scope)
        wanted = {b"x-content-type-options": b"nosniff", **self.extra}
        if classify(path) is not Kind.OTHER or path == DOCS_PREFIX:
            wanted[b"cache-control"] = b"no-store"
        if self.scope.get("scheme") == "https":
            wanted[b"strict-transport-security"] = HSTS
        if status == 405:
            wanted[b"allow"] = ", ".join(sorted(self._allowed())).encode()
        present = {name.lower() for name, _ in headers}
        replaced = {b"allow", b"connection"} & wanted.keys()
        kept = [(n, v) for n, v in headers if n.lower() not in replaced]
        return kept + [(n, v) for n, v in wanted.items() if n in replaced or n not in present]

    def _allowed(self) -> set[str]:
        """Starlette's 405 names the methods of the first route on the path only; a path served by
        several routes (GET and POST on a collection) allows all of theirs. Asked of the routes
        themselves, method by method, since FastAPI nests included routers."""
        return {
            method
            for method in METHODS
            if any(
                route.matches({**self.scope, "method": method})[0] is Match.FULL
                for route in self.router.routes
            )
        }

    async def refuse(self, problem: Problem, retry_after: int | None = None, *, unread: bool = False) -> None:
        """Answer `problem` in place of the app (whose own answer, if it comes, is dropped)."""
        response = problem_response(problem)
        if retry_after is not None:
            response.headers["Retry-After"] = str(retry_after)
        if unread or problem.status in (408, 413):
            # The rest of the body is never read, so this connection cannot carry another request.
            self.extra[b"connection"] = b"close"
        self.swallow = True
        await response(self.scope, _nothing, self._forward)


async def _nothing() -> Message:
    return {"type": "http.disconnect"}


class HttpGuard:
    def __init__(self, app: ASGIApp, *, runtime: Runtime, router: Router) -> None:
        self.app = app
        self.runtime = runtime
        self.router = router
        settings: Settings = runtime.settings
        self.settings = settings
        self.throttle = FailureThrottle(settings.auth_failure_burst, settings.auth_failure_refill_seconds)
        self.failures = FailureLog(settings.auth_log_interval_seconds)
        self.in_progress = {Kind.API: 0, Kind.CHANNEL: 0}

    def _limit(self, kind: Kind) -> int:
        if kind is Kind.CHANNEL:
            return self.settings.channel_max_body_bytes
        if kind is Kind.REGISTER:
            return self.settings.register_max_body_bytes
        return self.settings.api_max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        answer = _Answer(scope, send, self.router)
        kind = classify(route_path(scope))
        lane = Kind.CHANNEL if kind in (Kind.CHANNEL, Kind.REGISTER) else Kind.API
        limit = self.settings.max_channel_requests if lane is Kind.CHANNEL else self.settings.max_api_requests
        if self.in_progress[lane] >= limit:
            await answer.refuse(
                Problem(503, "Busy", "too many requests in progress; try again shortly", code="busy"), 1
            )
            return
        self.in_progress[lane] += 1
        try:
            await self._guarded(scope, receive, answer, kind)
        finally:
            self.in_progress[lane] -= 1

    async def _guarded(self, scope: Scope, receive: Receive, answer: _Answer, kind: Kind) -> None:
        source = str(scope["client"][0]) if scope.get("client") else "an unknown address"
        if kind is not Kind.OTHER and (wait := self.throttle.retry_after(f"{kind.value} {source}")):
            await answer.refuse(
                Problem(
                    429,
                    "Too many failed authentications",
                    f"this address failed to authenticate too often; try again in {wait} s",
                    code="throttled",
                ),
                wait,
            )
            return
        limit = self._limit(kind)
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await answer.refuse(_too_large(limit), unread=True)
            return
        if _has_body(scope) and kind in (Kind.API, Kind.CHANNEL):
            try:
                await run_in_threadpool(self._authenticate, scope, kind)
            except Problem as problem:
                await answer.refuse(problem, unread=True)
                self._failed(kind, source, scope)
                return
        loop = asyncio.get_running_loop()
        answer.body = _Body(receive, limit, loop.time() + self.settings.body_timeout_seconds)
        try:
            await self.app(scope, answer.body, answer)
        except Exception:
            if answer.body.refusal is None:
                raise
        if answer.body.refusal is not None and answer.status is None:
            await answer.refuse(answer.body.refusal)
        if answer.status == 401 and kind is not Kind.OTHER:
            self._failed(kind, source, scope)

    def _authenticate(self, scope: Scope, kind: Kind) -> None:
        authorization = _header(scope, b"authorization") or ""
        state = scope.setdefault("state", {})
        if kind is Kind.API:
            state[PRINCIPAL_STATE] = authenticate(self.runtime, authorization)
            return
        path = route_path(scope)
        if path in SIGNED_CHANNEL_PATHS:
            # A poll's replay check and `last_seen` are written by the poll's own unit (channel._open).
            state[CALLER_STATE] = authenticate_connector(
                self.runtime,
                authorization,
                scope["method"],
                path,
                defer_bookkeeping=path == messages.POLL_PATH,
            )

    def _failed(self, kind: Kind, source: str, scope: Scope) -> None:
        self.throttle.failed(f"{kind.value} {source}")
        authorization = _header(scope, b"authorization") or ""
        if kind is Kind.API:
            credential = describe_api_key(authorization)
        elif kind is Kind.CHANNEL:
            credential = describe_connector(authorization)
        elif kind is Kind.COMPAT:
            credential = "a login and password"
        else:
            credential = "an installation token"
        self.failures.failed(kind.value, source, credential, "refused")
