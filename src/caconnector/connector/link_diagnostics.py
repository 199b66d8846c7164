"""`ca-connector test-connection`: reach the manager one step at a time and name the step that fails.

    DNS                   resolve the proxy's host when a proxy is set (the proxy resolves the manager's),
                          else the manager's host
    TCP                   connect to that host and port
    proxy authentication  CONNECT host:port (https://) or an absolute-form GET (http://), with the
                          Proxy-Authorization the agent would send; 407 means wrong or missing credentials
    TLS                   handshake with the manager, checking its certificate against the configured
                          bundle (or the system store): the same trust the agent uses
    manager health        GET /healthz through the agent's own client (`link.Link`)
    registration          a signed hello: is this connector's key accepted?

The first four steps use plain sockets because httpx folds them into one ConnectError; the last two go
through `Link`, so they test exactly the path the agent takes. Stops at the first failure.
"""

from __future__ import annotations

import base64
import contextlib
import enum
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urlsplit

from caconnector.connector.link import Identity, Link, LinkError, LinkSettings, ssl_context
from caconnector.connector.link_settings import ProxySettings, url_host_port

MAX_HEAD = 64 * 1024


class StepStatus(enum.StrEnum):
    OK = "OK"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"


@dataclass(frozen=True)
class Step:
    name: str
    status: StepStatus
    detail: str

    def view(self) -> dict[str, Any]:
        return {"step": self.name, "status": self.status.value, "detail": self.detail}


class _Failed(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _read_head(sock: socket.socket) -> tuple[int, str]:
    """Read an HTTP response head byte-wise (nothing past it: TLS may follow) -> (status, reason)."""
    data = b""
    while not data.endswith(b"\r\n\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_HEAD:
            break
    line = data.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise _Failed(f"the proxy did not answer like an HTTP proxy ({line[:80]!r})")
    return int(parts[1]), parts[2] if len(parts) > 2 else ""


def _proxy_authorization(proxy: ProxySettings) -> str:
    if proxy.username is None or proxy.password is None:
        return ""
    token = base64.b64encode(f"{proxy.username}:{proxy.password}".encode()).decode()
    return f"Proxy-Authorization: Basic {token}\r\n"


class ConnectionTest:
    def __init__(self, settings: LinkSettings, identity: Identity | None, *, timeout: float = 10.0) -> None:
        self.settings = settings
        self.identity = identity
        self.timeout = timeout
        self.steps: list[Step] = []
        self.manager_host, self.manager_port = url_host_port(settings.manager_url)
        self.https = settings.manager_url.startswith("https://")

    def run(self) -> list[Step]:
        with contextlib.suppress(_Failed):
            self._run()
        return self.steps

    @property
    def ok(self) -> bool:
        return all(step.status is not StepStatus.FAILED for step in self.steps)

    def _step(self, name: str, status: StepStatus, detail: str) -> None:
        self.steps.append(Step(name, status, detail))

    def _fail(self, name: str, detail: str) -> NoReturn:
        self.steps.append(Step(name, StepStatus.FAILED, detail))
        raise _Failed(detail)

    @contextlib.contextmanager
    def _checking(self, name: str) -> Iterator[None]:
        """Turn a _Failed raised inside into this step's FAILED line."""
        try:
            yield
        except _Failed as exc:
            self._fail(name, exc.detail)

    def _run(self) -> None:
        proxy = self.settings.proxy
        host, port = (proxy.host, proxy.port) if proxy else (self.manager_host, self.manager_port)
        addresses = self._dns(host, port, "the proxy host (-proxyhost)" if proxy else "the manager's host")
        with self._tcp(host, port, addresses) as sock:
            if proxy is None:
                self._step("proxy authentication", StepStatus.SKIPPED, "no proxy is configured")
            else:
                self._proxy(sock, proxy)
            self._tls(sock)
        self._health()
        self._registration()

    # ---- the steps ----------------------------------------------------------------------------------

    def _dns(self, host: str, port: int, what: str) -> list[tuple[Any, ...]]:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
            self._fail("DNS", f"cannot resolve {host} ({reason}): check {what} and this host's DNS settings")
        found = sorted({str(info[4][0]) for info in infos})
        self._step("DNS", StepStatus.OK, f"{host} resolves to {', '.join(found)}")
        return list(infos)

    @contextlib.contextmanager
    def _tcp(self, host: str, port: int, addresses: list[tuple[Any, ...]]) -> Iterator[socket.socket]:
        errors: list[str] = []
        sock: socket.socket | None = None
        for family, kind, proto, _, address in addresses:
            candidate = socket.socket(family, kind, proto)
            candidate.settimeout(self.timeout)
            try:
                candidate.connect(address)
            except OSError as exc:
                candidate.close()
                errors.append(f"{address[0]}: {_reason(exc)}")
                continue
            sock = candidate
            break
        if sock is None:
            self._fail(
                "TCP",
                f"cannot connect to {host}:{port} ({'; '.join(errors)}): check the port, and that a firewall "
                "allows outbound connections to it",
            )
        try:
            self._step("TCP", StepStatus.OK, f"connected to {host}:{port}")
            yield sock
        finally:
            sock.close()

    def _proxy(self, sock: socket.socket, proxy: ProxySettings) -> None:
        target = f"{self.manager_host}:{self.manager_port}"
        if ":" in self.manager_host:
            target = f"[{self.manager_host}]:{self.manager_port}"
        if self.https:
            head = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
        else:
            path = urlsplit(self.settings.manager_url).path.rstrip("/") + "/healthz"
            head = f"GET http://{target}{path} HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n"
        with self._checking("proxy authentication"):
            try:
                sock.sendall((head + _proxy_authorization(proxy) + "\r\n").encode())
                status, reason = _read_head(sock)
            except OSError as exc:
                raise _Failed(f"the proxy {proxy.address} broke the connection ({_reason(exc)})") from None
            # 407 is the standard answer; tinyproxy 1.11 answers 401 instead. Either way it comes from
            # the proxy: the manager's /healthz asks for no credentials and a CONNECT never reaches it.
            if status in (401, 407):
                if proxy.username is None:
                    raise _Failed(
                        "the proxy requires authentication: set -proxyuser and -proxypassword "
                        "(ca-connector proxy set)"
                    )
                raise _Failed("the proxy refused authentication: check -proxyuser/-proxypassword")
            if self.https and not 200 <= status < 300:
                raise _Failed(
                    f"the proxy did not open a tunnel to {target} ({status} {reason}): check that it "
                    "allows connections to the manager's host and port"
                )
        accepted = "accepted the credentials" if proxy.username else "asked for no credentials"
        done = f"opened a tunnel to {target}" if self.https else f"forwarded a request to {target}"
        self._step("proxy authentication", StepStatus.OK, f"the proxy {accepted} and {done}")

    def _tls(self, sock: socket.socket) -> None:
        if not self.https:
            self._step("TLS", StepStatus.SKIPPED, "http:// manager on a loopback address: no TLS")
            return
        context = ssl_context(self.settings.cacert_pem)
        trust = "the -cacert bundle" if self.settings.cacert_pem else "the system's CA store"
        with self._checking("TLS"):
            try:
                tls = context.wrap_socket(sock, server_hostname=self.manager_host)
            except ssl.SSLCertVerificationError as exc:
                raise _Failed(
                    f"the manager's certificate is not trusted ({exc.verify_message}) by {trust}: give "
                    "the CA certificate that issued it with -cacert FILE (ca-connector register -cacert)"
                ) from None
            except ssl.SSLError as exc:
                raise _Failed(
                    f"the TLS handshake with {self.manager_host} failed ({exc.reason or exc}): does the "
                    "manager serve HTTPS on this port?"
                ) from None
            except OSError as exc:
                raise _Failed(f"the connection broke during the TLS handshake ({_reason(exc)})") from None
        with tls:
            version = tls.version()
        self._step(
            "TLS", StepStatus.OK, f"{version} with {self.manager_host}, certificate trusted by {trust}"
        )

    def _health(self) -> None:
        with Link(self.settings) as link, self._checking("manager health"):
            try:
                link.healthz()
            except LinkError as exc:
                raise _Failed(exc.message) from None
        self._step("manager health", StepStatus.OK, f"{self.settings.manager_url}/healthz answered")

    def _registration(self) -> None:
        if self.identity is None:
            self._step(
                "registration",
                StepStatus.SKIPPED,
                "not registered yet: run ca-connector register -token T -manager URL",
            )
            return
        with Link(self.settings, self.identity) as link, self._checking("registration"):
            try:
                hello = link.hello()
            except LinkError as exc:
                raise _Failed(exc.message) from None
        self._step(
            "registration",
            StepStatus.OK,
            f"the manager knows this connector as {hello.name} ({hello.connector_id}), status {hello.status}",
        )


def _reason(exc: OSError) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return exc.strerror or str(exc) or type(exc).__name__
