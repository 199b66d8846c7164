"""The only code that talks HTTP to the manager: one httpx client built from the stored settings, and
the mapping of every way a request can fail onto a small tree of errors grouped by what the caller can
do about them (httpx's own exception tree is the model).

    LinkError
      ManagerUnreachable   DNS, TCP, TLS, timeouts, 429/5xx, an answer that is not the protocol:
                           retry with back-off
      ProxyAuthFailed      the proxy answered 407: the operator must fix -proxyuser/-proxypassword
      Refused              the manager answered 4xx with a problem document: `code` (a ChannelError
                           value where the manager sent one) says what to do

Transport rules: `trust_env=False`, so neither HTTPS_PROXY/NO_PROXY nor SSL_CERT_FILE from the
environment changes where or how the connector connects: the configured proxy is the only proxy, and
the TLS trust is exactly the configured bundle (or the system store when none is configured). When a
proxy is set, every request goes through it, registration and the connection test included.

Signed requests carry a fresh EdDSA JWT bound to the method and the channel path (the protocol constant,
without any prefix of the manager URL: a reverse proxy that mounts the manager under a prefix strips it).
Nothing here logs or puts into a message the proxy password, the private key or a token.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from cryptography.hazmat.primitives.asymmetric import ed25519
from pydantic import BaseModel, ValidationError

from caconnector import __version__
from caconnector.connector.link_settings import ProxySettings, url_host_port
from caconnector.protocol.errors import ChannelError
from caconnector.protocol.messages import (
    GOODBYE_PATH,
    HELLO_PATH,
    INVENTORY_PATH,
    POLL_PATH,
    REGISTER_PATH,
    HelloResponse,
    InventoryReport,
    JobMessage,
    PollRequest,
    PollResponse,
    RegisterRequest,
    RegisterResponse,
)
from caconnector.protocol.signing import sign_request
from caconnector.protocol.version import IncompatibleProtocol, check_compatible

_M = TypeVar("_M", bound=BaseModel)

HEALTH_PATH = "/healthz"
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 30.0
POLL_READ_MARGIN = 15.0  # a long poll may legitimately stay silent for its whole wait


# ---- errors -----------------------------------------------------------------------------------------


class LinkError(Exception):
    """Base of every failure to talk to the manager; `message` is for the operator."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ManagerUnreachable(LinkError):
    """The manager cannot be reached or did not answer usefully now: retry with back-off."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ProxyAuthFailed(LinkError):
    """The proxy refused the credentials (or asked for some and none are configured)."""


class Refused(LinkError):
    """The manager refused the request: `code` is a ChannelError value where the manager sent one.

    The connector acts on the code, never on the prose. `detail` is the manager's, and is already
    the whole sentence for the operator: what is wrong and what to do, with the names only the manager
    knows (the connector's name, the restore command). Nothing is added to it here: an explanation of
    our own per code said the same thing a second time.
    """

    def __init__(self, status: int | None, code: str | None, detail: str) -> None:
        self.status = status
        self.code = code
        self.detail = detail
        super().__init__(f"the manager refused the request ({code or f'HTTP {status}'}): {detail}")


# ---- the client -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkSettings:
    manager_url: str
    cacert_pem: str | None = None
    proxy: ProxySettings | None = None
    connect_timeout: float = CONNECT_TIMEOUT
    read_timeout: float = READ_TIMEOUT

    def where(self) -> str:
        via = f" through the proxy {self.proxy.address}" if self.proxy else ""
        return f"the manager at {self.manager_url}{via}"


@dataclass(frozen=True)
class Identity:
    """Who signs: the connector id the manager gave and the key registration made."""

    connector_id: str
    key: ed25519.Ed25519PrivateKey = field(repr=False)


@dataclass(frozen=True)
class PollReply:
    """A poll's answer. `unreadable` maps the ids of jobs this version cannot read to the reason, so
    they are answered with an error instead of one unknown job kind breaking every poll."""

    response: PollResponse
    unreadable: dict[str, str]


def ssl_context(cacert_pem: str | None) -> ssl.SSLContext:
    """TLS trust for the manager: exactly the configured bundle, or the system store.

    Built here rather than by httpx so that the result does not depend on SSL_CERT_FILE or certifi.
    """
    if cacert_pem is None:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cadata=cacert_pem)
    except ssl.SSLError as exc:
        raise ValueError(f"-cacert: the CA bundle holds no usable PEM certificate ({exc.reason})") from None


def manager_transport(settings: LinkSettings) -> httpx.BaseTransport:
    """The real transport: TLS trust exactly the configured bundle, the configured proxy (if any) for
    every request. Raises ValueError for a CA bundle that holds no certificate."""
    return httpx.HTTPTransport(
        verify=ssl_context(settings.cacert_pem),
        proxy=settings.proxy.url() if settings.proxy else None,
        trust_env=False,
    )


class Link:
    """An HTTP client for one manager. Thread-safe: a long poll and a short report may overlap.

    `transport` is where the bytes go: by default `manager_transport(settings)`; a test may pass an
    `httpx.MockTransport` to answer without a server. The error mapping, signing and timeouts are the
    same either way.
    """

    def __init__(
        self,
        settings: LinkSettings,
        identity: Identity | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.identity = identity
        self._client = httpx.Client(
            base_url=settings.manager_url,
            transport=transport if transport is not None else manager_transport(settings),
            trust_env=False,
            follow_redirects=False,
            timeout=httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout),
            headers={"User-Agent": f"ca-connector/{__version__}"},
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- the channel --------------------------------------------------------------------------------

    def healthz(self) -> None:
        self._send("GET", HEALTH_PATH, signed=False)

    def register(self, request: RegisterRequest) -> RegisterResponse:
        response = self._parse(
            self._send("POST", REGISTER_PATH, body=request, signed=False), RegisterResponse
        )
        self._check_version(response.protocol_version)
        return response

    def hello(self) -> HelloResponse:
        response = self._parse(self._send("GET", HELLO_PATH), HelloResponse)
        self._check_version(response.protocol_version)
        return response

    def inventory(self, report: InventoryReport) -> None:
        self._send("POST", INVENTORY_PATH, body=report)

    def poll(self, request: PollRequest) -> PollReply:
        wait = request.wait_seconds or 0.0
        response = self._send("POST", POLL_PATH, body=request, read_timeout=wait + POLL_READ_MARGIN)
        document = self._json(response)
        if not isinstance(document, dict):
            raise self._not_protocol(POLL_PATH, "not a JSON object")
        jobs: list[JobMessage] = []
        unreadable: dict[str, str] = {}
        raw_jobs = document.pop("jobs", [])
        for raw in raw_jobs if isinstance(raw_jobs, list) else []:
            try:
                jobs.append(JobMessage.model_validate(raw))
            except ValidationError as exc:
                job_id = raw.get("id") if isinstance(raw, dict) else None
                if isinstance(job_id, str) and job_id:
                    unreadable[job_id] = _validation_summary(exc)
        try:
            parsed = PollResponse.model_validate({**document, "jobs": []})
        except ValidationError as exc:
            raise self._not_protocol(POLL_PATH, _validation_summary(exc)) from None
        return PollReply(parsed.model_copy(update={"jobs": jobs}), unreadable)

    def goodbye(self) -> None:
        self._send("POST", GOODBYE_PATH, body={})

    # ---- plumbing -----------------------------------------------------------------------------------

    def _headers(self, method: str, path: str, signed: bool) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if signed:
            if self.identity is None:
                raise LinkError("this connector is not registered: run ca-connector register -token T")
            token = sign_request(self.identity.key, self.identity.connector_id, method, path)
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _send(
        self,
        method: str,
        path: str,
        *,
        body: BaseModel | dict[str, Any] | None = None,
        signed: bool = True,
        read_timeout: float | None = None,
    ) -> httpx.Response:
        headers = self._headers(method, path, signed)
        content: bytes | None = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            content = body.model_dump_json().encode() if isinstance(body, BaseModel) else b"{}"
        timeout = httpx.Timeout(
            read_timeout or self.settings.read_timeout, connect=self.settings.connect_timeout
        )
        try:
            response = self._client.request(method, path, headers=headers, content=content, timeout=timeout)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        self._check_status(response)
        return response

    def _transport_error(self, exc: httpx.HTTPError) -> LinkError:
        where = self.settings.where()
        proxy = self.settings.proxy
        if isinstance(exc, httpx.ProxyError) and proxy is not None:
            # httpcore raises ProxyError("<status> <reason>") when the CONNECT is answered with non-2xx.
            # 407 is the standard refusal; tinyproxy 1.11 answers a CONNECT with 401 instead.
            if str(exc).startswith(("407", "401")):
                return _proxy_auth_failed(proxy)
            host, port = url_host_port(self.settings.manager_url)
            return ManagerUnreachable(
                f"the proxy {proxy.address} did not open a connection to {host}:{port} ({exc}); check "
                "that the proxy allows connections to the manager's host and port"
            )
        if isinstance(exc, httpx.TimeoutException):
            return ManagerUnreachable(f"{where} did not answer in time ({type(exc).__name__})")
        return ManagerUnreachable(f"cannot reach {where}: {describe_network_error(exc)}")

    def _check_status(self, response: httpx.Response) -> None:
        status = response.status_code
        if status < 300:
            return
        if self.settings.proxy is not None and _proxy_refusal(response):
            raise _proxy_auth_failed(self.settings.proxy)
        if status == 429 or status >= 500:
            raise ManagerUnreachable(
                f"{self.settings.where()} answered HTTP {status} {response.reason_phrase}",
                retry_after=_retry_after(response),
            )
        if status < 400:
            location = response.headers.get("Location", "?")
            raise Refused(
                status,
                None,
                f"the manager answered with a redirect to {location}: use that address as -manager",
            )
        code, detail = _problem(response)
        raise Refused(status, code, detail)

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise self._not_protocol(response.request.url.path, "not JSON") from None

    def _parse(self, response: httpx.Response, model: type[_M]) -> _M:
        try:
            return model.model_validate(self._json(response))
        except ValidationError as exc:
            raise self._not_protocol(response.request.url.path, _validation_summary(exc)) from None

    def _not_protocol(self, path: str, problem: str) -> ManagerUnreachable:
        return ManagerUnreachable(
            f"{self.settings.where()} answered {path} with something that is not the connector protocol "
            f"({problem}); check that -manager is the manager's address"
        )

    @staticmethod
    def _check_version(theirs: str) -> None:
        try:
            check_compatible(theirs)
        except IncompatibleProtocol as exc:
            raise Refused(None, ChannelError.PROTOCOL_VERSION, str(exc)) from None


def _proxy_auth_failed(proxy: ProxySettings) -> ProxyAuthFailed:
    if proxy.username is None:
        return ProxyAuthFailed(
            f"the proxy {proxy.address} requires authentication: set -proxyuser and -proxypassword "
            "(ca-connector proxy set)"
        )
    return ProxyAuthFailed(
        f"the proxy {proxy.address} refused authentication: check -proxyuser/-proxypassword "
        "(ca-connector proxy set)"
    )


def _problem(response: httpx.Response) -> tuple[str | None, str]:
    """`code` and `detail` of an RFC 9457 problem document; a non-problem answer gets a generic detail."""
    try:
        document = response.json()
    except ValueError:
        document = None
    if isinstance(document, dict):
        code = document.get("code")
        detail = document.get("detail") or document.get("title")
        if isinstance(detail, str) and detail:
            return (code if isinstance(code, str) and code else None), detail
    return None, (
        f"HTTP {response.status_code} {response.reason_phrase} for {response.request.url.path}; "
        "check that -manager is the manager's address"
    )


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: rare from our manager, and the back-off covers it
    return seconds if seconds >= 0 else None


def _validation_summary(exc: ValidationError) -> str:
    first = exc.errors(include_input=False, include_url=False)[:3]
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in first)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def describe_network_error(exc: BaseException) -> str:
    """A short operator reason for a failed connection, from the innermost exception that says one."""
    for cause in _causes(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return (
                f"TLS: the manager's certificate is not trusted ({cause.verify_message}); give the CA "
                "certificate that issued it with -cacert FILE"
            )
        if isinstance(cause, ssl.SSLError):
            return f"TLS handshake failed ({cause.reason or cause})"
        if isinstance(cause, socket.gaierror):
            return f"DNS: cannot resolve the host name ({cause.strerror})"
        if isinstance(cause, ConnectionRefusedError):
            return "TCP: connection refused (nothing listens on that port, or a firewall rejects it)"
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
    return str(exc) or type(exc).__name__


def _proxy_refusal(response: httpx.Response) -> bool:
    """Whether a response came from the proxy refusing our credentials rather than from the manager.

    407 always does. tinyproxy 1.11 answers 401 with an HTML page; the manager's own 401s are problem
    documents (application/problem+json), so a 401 of any other type is the proxy's.
    """
    if response.status_code == 407:
        return True
    content_type = response.headers.get("content-type", "")
    return response.status_code == 401 and not content_type.startswith("application/problem+json")
