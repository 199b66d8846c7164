"""Let's Encrypt's `pebble` (Debian's package), the ACME peer of the acme backend's tests, with
`pebble-challtestsrv` as its DNS server.

Each pebble runs on free loopback ports with a TLS certificate made here (trustme), asks challtestsrv for
every name (which answers A 127.0.0.1 for any name, and the TXT records the tests' dns-01 hook sets), and
validates http-01 on `http_port`, where the backend under test serves its tokens. Its management interface
gives its root (`/roots/0`) and each certificate's status (`/cert-status-by-serial/<hex>`).

Environment (pebble reads it at start): PEBBLE_VA_NOSLEEP=1 always; PEBBLE_WFE_NONCEREJECT=0 except where
a test wants nonce rejection; PEBBLE_VA_ALWAYS_VALID=1 only for the `none` challenge tests.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import http.server
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Self

import acme.client
import acme.messages
import josepy.jwa
import josepy.jwk
import requests
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tests.ports import free_port

PEBBLE = shutil.which("pebble") or "/usr/bin/pebble"
CHALLTESTSRV = shutil.which("pebble-challtestsrv") or "/usr/bin/pebble-challtestsrv"
START_TIMEOUT_SECONDS = 30.0
# The test hook for dns-01: `python HOOK URL set|clear NAME VALUE` sets TXT records in challtestsrv.
HOOK = Path(__file__).with_name("challtestsrv_hook.py")


@dataclass
class Pebble:
    """One running pebble (and its challtestsrv)."""

    directory_url: str
    management_url: str
    challtestsrv_url: str
    http_port: int
    tls_ca_pem: str  # what the backend's -cacert must be to trust pebble's HTTPS
    workdir: Path
    tls_ca: trustme.CA
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def _get(self, url: str) -> requests.Response:
        with tempfile.NamedTemporaryFile("w", suffix=".pem") as bundle:
            bundle.write(self.tls_ca_pem)
            bundle.flush()
            return requests.get(url, verify=bundle.name, timeout=10)

    def root_pem(self, index: int = 0) -> str:
        """Pebble's root (or an alternate root), made at its start, from its management interface."""
        response = self._get(f"{self.management_url}/roots/{index}")
        response.raise_for_status()
        return response.text

    def cert_status(self, serial: int) -> dict[str, object] | None:
        """`{"Status": "Valid"|"Revoked", "Reason": n, ...}`, or None when pebble never issued it."""
        response = self._get(f"{self.management_url}/cert-status-by-serial/{serial:x}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        found: dict[str, object] = response.json()
        return found

    def hook_command(self) -> str:
        """A -hook command line that sets the dns-01 TXT records in this pebble's challtestsrv."""
        return f"{sys.executable} {HOOK} {self.challtestsrv_url}"

    @contextlib.contextmanager
    def _account(self, account_key_pem: str, account_url: str) -> Iterator[acme.client.ClientV2]:
        """The account, through the `acme` library directly (not the backend under test)."""
        key = serialization.load_pem_private_key(account_key_pem.encode(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        with tempfile.NamedTemporaryFile("w", suffix=".pem") as bundle:
            bundle.write(self.tls_ca_pem)
            bundle.flush()
            network = acme.client.ClientNetwork(
                key=josepy.jwk.JWKEC(key=key),
                alg=josepy.jwa.ES256,
                verify_ssl=bundle.name,  # type: ignore[arg-type]  # requests takes a bundle path
            )
            network.account = acme.messages.RegistrationResource(
                uri=account_url, body=acme.messages.Registration()
            )
            directory = acme.client.ClientV2.get_directory(self.directory_url, network)
            yield acme.client.ClientV2(directory, network)

    def orders(self, account_key_pem: str, account_url: str) -> list[str]:
        """The URLs of the account's orders that are not invalid, as pebble lists them (RFC 8555 7.1.2.1)."""
        with self._account(account_key_pem, account_url) as client:
            account = client._post_as_get(account_url).json()
            listed = client._post_as_get(account["orders"]).json()
        return [str(url) for url in listed["orders"]]

    def serials(self, account_key_pem: str, account_url: str) -> set[int]:
        """The serials of the certificates pebble issued for the account's orders, revoked or not: pebble
        names a certificate's URL by its serial in hex (and stops serving it once revoked)."""
        found = set()
        with self._account(account_key_pem, account_url) as client:
            account = client._post_as_get(account_url).json()
            for url in client._post_as_get(account["orders"]).json()["orders"]:
                certificate_url = client._post_as_get(url).json().get("certificate")
                if certificate_url:
                    found.add(int(str(certificate_url).rstrip("/").rsplit("/", 1)[1], 16))
        return found

    def deactivate(self, account_key_pem: str, account_url: str) -> None:
        """Deactivate the account (RFC 8555 7.3.6): the CA refuses it from then on."""
        with self._account(account_key_pem, account_url) as client:
            client.deactivate_registration(
                acme.messages.RegistrationResource(uri=account_url, body=acme.messages.Registration())
            )

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.processes.clear()


def start(
    workdir: Path,
    *,
    nonce_reject_percent: int = 0,
    always_valid: bool = False,
    eab_keys: Mapping[str, str] | None = None,
    alternate_roots: int = 0,
) -> Pebble:
    """Start challtestsrv and pebble on free loopback ports; return once pebble's directory answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    cert_path, key_path = workdir / "tls-cert.pem", workdir / "tls-key.pem"
    cert_path.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    key_path.write_bytes(server.private_key_pem.bytes())
    acme_port, management_port, http_port = free_port(), free_port(), free_port()
    dns_port, challtest_port = free_port(), free_port()
    config = {
        "pebble": {
            "listenAddress": f"127.0.0.1:{acme_port}",
            "managementListenAddress": f"127.0.0.1:{management_port}",
            "certificate": str(cert_path),
            "privateKey": str(key_path),
            "httpPort": http_port,
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": eab_keys is not None,
            "externalAccountMACKeys": dict(eab_keys or {}),
        }
    }
    config_path = workdir / "pebble-config.json"
    config_path.write_text(json.dumps(config))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PEBBLE_VA_NOSLEEP": "1",
        "PEBBLE_WFE_NONCEREJECT": str(nonce_reject_percent),
        # Every order gets fresh authorizations, so each test's challenge is really answered.
        "PEBBLE_AUTHZREUSE": "0",
    }
    if always_valid:
        env["PEBBLE_VA_ALWAYS_VALID"] = "1"
    if alternate_roots:
        # Each further root signs its own intermediate; downloads link the other chains as `alternate`.
        env["PEBBLE_ALTERNATE_ROOTS"] = str(alternate_roots)
    peer = Pebble(
        directory_url=f"https://127.0.0.1:{acme_port}/dir",
        management_url=f"https://127.0.0.1:{management_port}",
        challtestsrv_url=f"http://127.0.0.1:{challtest_port}",
        http_port=http_port,
        tls_ca_pem=ca.cert_pem.bytes().decode(),
        workdir=workdir,
        tls_ca=ca,
    )
    # The children write to their own copies of the log's descriptor; ours closes when they are started.
    with (workdir / "pebble.log").open("wb") as log:
        _spawn(peer, env, log, config_path, ports=(dns_port, challtest_port))
    _wait_until_ready(peer)
    return peer


def _spawn(
    peer: Pebble, env: dict[str, str], log: IO[bytes], config_path: Path, *, ports: tuple[int, int]
) -> None:
    dns_port, challtest_port = ports
    peer.processes.append(
        subprocess.Popen(
            [
                CHALLTESTSRV,
                "-dns01",
                f"127.0.0.1:{dns_port}",
                "-management",
                f"127.0.0.1:{challtest_port}",
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    )
    peer.processes.append(
        subprocess.Popen(
            [PEBBLE, "-config", str(config_path), "-dnsserver", f"127.0.0.1:{dns_port}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=peer.workdir,
        )
    )


def _wait_until_ready(peer: Pebble) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        for process in peer.processes:
            if process.poll() is not None:
                peer.stop()
                raise RuntimeError(f"pebble exited at start: {(peer.workdir / 'pebble.log').read_text()}")
        with contextlib.suppress(requests.RequestException):
            if (
                peer._get(peer.directory_url).ok
                and requests.get(peer.challtestsrv_url + "/dns-request-history", timeout=2).status_code < 500
            ):
                return
        time.sleep(0.1)
    peer.stop()
    raise RuntimeError("pebble did not answer within {START_TIMEOUT_SECONDS} s")


@contextlib.contextmanager
def running(**options: object) -> Iterator[Pebble]:
    """A pebble for one test module (nonce rejection on, EAB required, always-valid authorizations)."""
    with tempfile.TemporaryDirectory(prefix="pebble-") as scratch:
        peer = start(Path(scratch), **options)  # type: ignore[arg-type]
        try:
            yield peer
        finally:
            peer.stop()


_PEER: Pebble | None = None
_LOCK = threading.Lock()


def pebble_peer() -> Pebble:
    """The process's plain pebble (no nonce rejection, real validation), started on first use and stopped
    at exit: test modules share it."""
    global _PEER  # noqa: PLW0603  (one server per test process, by design)
    with _LOCK:
        if _PEER is None:
            workdir = Path(tempfile.mkdtemp(prefix="pebble-"))
            _PEER = start(workdir)
            atexit.register(_PEER.stop)
            atexit.register(shutil.rmtree, workdir, True)
        return _PEER


class Intercept:
    """An HTTPS proxy in front of pebble's ACME interface (same TLS CA, so -cacert trusts both) that
    calls `on_first` the first time a request's path starts with `prefix`, and answers that request
    502 instead of forwarding it. pebble builds its URLs from the Host header, so a client pointed at
    the proxy's /dir stays on the proxy."""

    def __init__(
        self, peer: Pebble, prefix: str | None = None, on_first: Callable[[], None] = lambda: None
    ) -> None:
        self._peer = peer
        self._prefix = prefix
        self._on_first = on_first
        self.fired = threading.Event()
        handler = type("InterceptHandler", (_ForwardingHandler,), {"intercept": self})
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        peer.tls_ca.issue_cert("127.0.0.1").configure_cert(context)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = int(self._server.server_address[1])
        self.directory_url = f"https://127.0.0.1:{self.port}/dir"
        self._upstream = ssl.create_default_context(cadata=peer.tls_ca_pem)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes | None
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        if self._prefix is not None and path.startswith(self._prefix) and not self.fired.is_set():
            self.fired.set()
            self._on_first()
            return 502, [], b""
        host = self._peer.directory_url.split("/")[2]
        connection = http.client.HTTPSConnection(host, context=self._upstream, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()


class WithRenewalInfo(Intercept):
    """pebble 2.4 with ACME Renewal Information (RFC 9773), which it lacks: the directory gains
    `renewalInfo`, and every certificate gets `window` as its suggested renewal window. `asked` holds the
    certificate identifiers clients asked about."""

    def __init__(self, peer: Pebble, window: dict[str, str], explanation_url: str) -> None:
        super().__init__(peer)
        self._window = window
        self._explanation_url = explanation_url
        self.asked: list[str] = []

    def forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes | None
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        if path.startswith("/renewal-info/"):
            self.asked.append(path.removeprefix("/renewal-info/"))
            document = {"suggestedWindow": self._window, "explanationURL": self._explanation_url}
            return (
                200,
                [("Content-Type", "application/json"), ("Retry-After", "21600")],
                json.dumps(document).encode(),
            )
        status, response_headers, data = super().forward(method, path, headers, body)
        if path == "/dir" and status == 200:
            directory = json.loads(data)
            directory["renewalInfo"] = f"https://127.0.0.1:{self.port}/renewal-info"
            data = json.dumps(directory).encode()
        return status, response_headers, data


class _ForwardingHandler(http.server.BaseHTTPRequestHandler):
    intercept: Intercept
    protocol_version = "HTTP/1.1"

    def _relay(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {
            k: v for k, v in self.headers.items() if k.lower() not in ("connection", "accept-encoding")
        }
        status, response_headers, data = self.intercept.forward(self.command, self.path, headers, body)
        self.send_response(status)
        for name, value in response_headers:
            if name.lower() not in ("connection", "transfer-encoding", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_GET(self) -> None:
        self._relay()

    def do_POST(self) -> None:
        self._relay()

    def do_HEAD(self) -> None:
        self._relay()

    def log_message(self, format: str, *args: object) -> None:
        return
