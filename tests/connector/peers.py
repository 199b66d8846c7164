"""Real network peers for the connector's tests, each in a thread on 127.0.0.1: a scripted HTTP(S) server,
a fake manager that speaks the connector channel (verifying real signatures), and an HTTP proxy with
Basic credentials (CONNECT tunnels and absolute-form forwarding). Fake the wire, not the call."""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import json
import select
import socket
import socketserver
import ssl
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from caconnector.protocol.messages import JobResult, PollRequest, RegisterRequest
from caconnector.protocol.signing import (
    SignatureInvalid,
    load_public_key,
    unverified_connector_id,
    verify_request,
)


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, document: Any, content_type: str = "application/json") -> Response:
        return cls(status, json.dumps(document, default=str).encode(), {"Content-Type": content_type})

    @classmethod
    def problem(cls, status: int, code: str | None, detail: str) -> Response:
        document: dict[str, Any] = {
            "type": "about:blank",
            "title": "refused",
            "status": status,
            "detail": detail,
        }
        if code:
            document["code"] = code
        return cls.json(status, document, "application/problem+json")


Handler = Callable[[Request], Response | None]  # None: close the connection without answering


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    tls: ssl.SSLContext | None = None
    handle: Handler

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        try:
            # Wrapped in the connection's own thread, so a failed handshake only ends that connection.
            connection = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        with connection:
            # typeshed types the handler's server argument as Self, which a concrete subclass is not.
            self.RequestHandlerClass(connection, client_address, self)  # type: ignore[arg-type]


class _RequestHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        response = self.server.handle(request)
        if response is None:
            self.close_connection = True
            self.connection.close()
            return
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)

    # http.server dispatches on do_<METHOD>; one handler serves them all.
    do_GET = do_POST = do_CONNECT = do_PUT = do_DELETE = _serve  # noqa: N815


class Peer:
    """A real HTTP server answering with `handler`; HTTPS when `tls` is given."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.server = _Server(("127.0.0.1", 0), _RequestHandler)
        self.server.handle = handler
        self.server.tls = tls
        self.port = self.server.server_address[1]
        self.scheme = "https" if tls else "http"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})

    def url(self, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}"

    def __enter__(self) -> Peer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()


# ---- the fake manager -------------------------------------------------------------------------------


# The details the real manager sends (manager/channel_auth.py): the whole sentence for the operator.
REFUSAL_DETAILS = {
    "connector_unknown": "this connector was deleted from the manager (or never existed there): add it "
    "again in the manager and run ca-connector register -token T -force",
    "connector_expired": "connector 'edge-1' was not seen for too long and its key is refused; restore "
    "it: ca-manager connector restore -name edge-1, then ca-connector register -token T -force",
}


class FakeManager:
    """The manager's connector channel, enough of it to drive the agent: single-use tokens, Ed25519
    signatures verified with the protocol's own verifier, replay refusal, a job queue with long polls."""

    def __init__(self, tls: ssl.SSLContext | None = None, *, poll_wait_cap: float = 5.0) -> None:
        self.peer = Peer(self.handle, tls)
        self.lock = threading.Condition()
        self.tokens: dict[str, str] = {}  # token -> connector name
        self.used_tokens: set[str] = set()
        self.keys: dict[str, Any] = {}  # connector id -> public key
        self.names: dict[str, str] = {}
        self.jtis: set[str] = set()
        self.jobs: list[dict[str, Any]] = []
        self.results: list[JobResult] = []
        self.polls: list[PollRequest] = []
        self.inventories: list[dict[str, Any]] = []
        self.registrations: list[RegisterRequest] = []
        self.goodbyes = 0
        self.hellos = 0
        self.refusal: tuple[int, str] | None = None  # every signed request refused with this
        self.acknowledge = True
        self.poll_wait_cap = poll_wait_cap
        self.poll_wait_seconds = 1.0

    @property
    def url(self) -> str:
        return self.peer.url("localhost" if self.peer.scheme == "https" else "127.0.0.1")

    def __enter__(self) -> FakeManager:
        self.peer.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self.lock:
            self.lock.notify_all()
        self.peer.__exit__(*exc_info)

    def add_token(self, name: str = "conn-1") -> str:
        token = uuid.uuid4().hex
        self.tokens[token] = name
        return token

    def add_job(
        self, kind: str, backend: str | None = None, job_id: str | None = None, **payload: Any
    ) -> str:
        job = {
            "id": job_id or uuid.uuid4().hex,
            "kind": kind,
            "backend": backend,
            "payload": payload,
            "lease_expires_at": (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)).isoformat(),
        }
        with self.lock:
            self.jobs.append(job)
            self.lock.notify_all()
        return str(job["id"])

    def wait_for(self, condition: Callable[[], bool], timeout: float = 15.0) -> bool:
        with self.lock:
            return self.lock.wait_for(condition, timeout)

    def results_for(self, job_id: str) -> list[JobResult]:
        with self.lock:
            return [r for r in self.results if r.job_id == job_id]

    # ---- the channel --------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response | None:  # noqa: PLR0911 - one answer per route
        path = urlsplit(request.path).path
        if path == "/healthz":
            return Response.json(200, {"status": "ok"})
        if path == "/connector/v1/register" and request.method == "POST":
            return self._register(request)
        connector_id = self._verify(request, path)
        if isinstance(connector_id, Response):
            return connector_id
        if path == "/connector/v1/hello":
            with self.lock:
                self.hellos += 1
            return Response.json(
                200, {"connector_id": connector_id, "name": self.names[connector_id], "status": "Connected"}
            )
        if path == "/connector/v1/inventory":
            with self.lock:
                self.inventories.append(request.json())
                self.lock.notify_all()
            return Response(204)
        if path == "/connector/v1/poll":
            return self._poll(PollRequest.model_validate(request.json()))
        if path == "/connector/v1/goodbye":
            with self.lock:
                self.goodbyes += 1
                self.lock.notify_all()
            return Response(204)
        return Response.problem(404, None, f"no route {path}")

    def _register(self, request: Request) -> Response:
        body = RegisterRequest.model_validate(request.json())
        with self.lock:
            self.registrations.append(body)
            if body.token in self.used_tokens:
                return Response.problem(
                    409,
                    "token_used",
                    "this installation token was already used; a failed install needs a new token: "
                    "ca-manager connector restore -name edge-1",
                )
            name = self.tokens.get(body.token)
            if name is None:
                return Response.problem(
                    401,
                    "token_invalid",
                    "the manager knows no such installation token (mistyped, or replaced by a newer "
                    "one); copy it again from the connector's page in the manager",
                )
            self.used_tokens.add(body.token)
            connector_id = str(uuid.uuid4())
            self.keys[connector_id] = load_public_key(body.public_key)
            self.names[connector_id] = name
        return Response.json(
            200,
            {
                "connector_id": connector_id,
                "name": name,
                "poll_wait_seconds": self.poll_wait_seconds,
                "inventory_interval_seconds": 3600,
            },
        )

    def _verify(self, request: Request, path: str) -> str | Response:
        header = request.headers.get("authorization", "")
        token = header.removeprefix("Bearer ")
        try:
            connector_id = unverified_connector_id(token)
        except SignatureInvalid as exc:
            return Response.problem(401, "signature_invalid", str(exc))
        if self.refusal is not None:
            status, code = self.refusal
            return Response.problem(status, code, REFUSAL_DETAILS.get(code, f"refused ({code})"))
        key = self.keys.get(connector_id)
        if key is None:
            return Response.problem(401, "connector_unknown", REFUSAL_DETAILS["connector_unknown"])
        try:
            verified = verify_request(token, key, request.method, path)
        except SignatureInvalid as exc:
            return Response.problem(401, "signature_invalid", str(exc))
        with self.lock:
            if verified.jti in self.jtis:
                return Response.problem(401, "replayed", "this signed request was seen before")
            self.jtis.add(verified.jti)
        return connector_id

    def _poll(self, poll: PollRequest) -> Response:
        with self.lock:
            self.polls.append(poll)
            self.results.extend(poll.results)
            acknowledged = [r.job_id for r in poll.results] if self.acknowledge else []
            self.lock.notify_all()
            wait = min(poll.wait_seconds or 0.0, self.poll_wait_cap)
            if poll.capacity > 0 and wait > 0:
                self.lock.wait_for(lambda: bool(self.jobs), wait)
            jobs, self.jobs = self.jobs[: poll.capacity], self.jobs[poll.capacity :]
        return Response.json(
            200,
            {"jobs": jobs, "acknowledged": acknowledged, "server_time": dt.datetime.now(dt.UTC).isoformat()},
        )


# ---- the proxy --------------------------------------------------------------------------------------


def _read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


class FakeProxy:
    """An HTTP proxy that wants Basic credentials (when given) and records what it was sent."""

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.credentials = credentials
        self.seen_auth: list[str | None] = []  # the decoded "user:password" of each request
        self.request_lines: list[str] = []
        self._stop = threading.Event()
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._handle(self.request)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})

    def __enter__(self) -> FakeProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()

    def _handle(self, client: socket.socket) -> None:
        data = _read_head(client)
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        request_line = lines[0]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        self.request_lines.append(request_line)
        auth = headers.get("proxy-authorization")
        decoded = base64.b64decode(auth.split(" ", 1)[1]).decode() if auth else None
        self.seen_auth.append(decoded)
        if self.credentials is not None and decoded != ":".join(self.credentials):
            client.sendall(
                b'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="test"\r\n'
                b"Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
            return
        method, target, _ = request_line.split(" ", 2)
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            with socket.create_connection((host.strip("[]"), int(port)), timeout=10) as upstream:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                self._relay(client, upstream, rest)
            return
        # Absolute form (http:// targets): forward once, then close.
        url = urlsplit(target)
        kept = [line for line in lines[1:] if not line.lower().startswith(("proxy-", "connection:"))]
        forwarded = "\r\n".join([f"{method} {url.path or '/'} HTTP/1.1", *kept, "Connection: close"])
        with socket.create_connection((url.hostname or "", url.port or 80), timeout=10) as upstream:
            upstream.sendall(forwarded.encode("latin-1") + b"\r\n\r\n" + rest)
            self._relay(client, upstream, b"")

    def _relay(self, client: socket.socket, upstream: socket.socket, pending: bytes) -> None:
        if pending:
            upstream.sendall(pending)
        sockets = [client, upstream]
        while not self._stop.is_set():
            readable, _, _ = select.select(sockets, [], [], 0.1)
            for sock in readable:
                try:
                    chunk = sock.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                (upstream if sock is client else client).sendall(chunk)
