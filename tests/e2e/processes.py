"""Real processes for end-to-end tests: `ca-manager serve` over TLS, `ca-connector run`, and tinyproxy
with basic authentication. Each writes its output to a log file the test can read."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import trustme
from tests.ports import free_port

BIN = Path(sys.executable).parent


def wait_until(
    predicate: Callable[[], object], timeout: float, interval: float = 0.05, what: str = "it"
) -> float:
    """Poll `predicate()` until true; return the seconds it took. A predicate that raises counts as
    not yet (a server still starting); on time-out the test fails naming `what` and the last error."""
    started = time.monotonic()
    last_error: Exception | None = None
    while True:
        try:
            if predicate():
                return time.monotonic() - started
        except Exception as exc:  # noqa: BLE001  (any failure just means "not yet")
            last_error = exc
        if time.monotonic() - started > timeout:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what} (last error: {last_error!r})"
            )
        time.sleep(interval)


@dataclass
class Process:
    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str]
    popen: subprocess.Popen[bytes] | None = None
    _log: object = field(default=None, repr=False)

    def start(self) -> Process:
        handle = self.log_path.open("ab")
        try:
            self.popen = subprocess.Popen(self.argv, stdout=handle, stderr=subprocess.STDOUT, env=self.env)
        except BaseException:  # a missing binary: fail this test only, not the next one with a leaked file
            handle.close()
            raise
        self._log = handle
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.popen is None:
            return 0
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        code = self.popen.returncode
        if self._log is not None:
            self._log.close()  # type: ignore[attr-defined]
            self._log = None
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def run(argv: Sequence[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, env=env, timeout=timeout, check=False)


@dataclass
class TLSFiles:
    ca_pem: Path
    cert_pem: Path
    key_pem: Path


def make_tls(directory: Path) -> TLSFiles:
    """A test CA and a server certificate for 127.0.0.1 and localhost (what the manager serves)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    files = TLSFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    ca.cert_pem.write_to_path(str(files.ca_pem))
    server.private_key_pem.write_to_path(str(files.key_pem))
    with files.cert_pem.open("wb") as handle:
        for blob in server.cert_chain_pems:
            handle.write(blob.bytes())
    return files


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_PROXY") and not k.endswith("_proxy")}
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        env.pop(name, None)
    env.update(extra)
    return env


@contextlib.contextmanager
def serving_manager(port: int, tls: TLSFiles, env: dict[str, str], log_path: Path) -> Iterator[Process]:
    """`ca-manager serve` over TLS on `port` with `env`, once it answers /healthz; stopped at the end."""
    argv = [
        str(BIN / "ca-manager"),
        "serve",
        "-port",
        str(port),
        "-tls-cert",
        str(tls.cert_pem),
        "-tls-key",
        str(tls.key_pem),
    ]
    process = Process("manager", argv, log_path, env).start()
    try:
        url = f"https://127.0.0.1:{port}"
        wait_until(lambda: healthy(url, tls.ca_pem), 30, what="the manager to serve /healthz")
        yield process
    finally:
        process.stop()


@dataclass
class Tinyproxy:
    port: int
    user: str
    password: str
    log_path: Path
    process: Process

    def connections_to(self, port: int) -> int:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text.count(f"CONNECT 127.0.0.1:{port}") + text.count(f"http://127.0.0.1:{port}/")


@contextlib.contextmanager
def tinyproxy(
    directory: Path, user: str = "proxyuser", password: str = "pr0xy-s3cret"
) -> Iterator[Tinyproxy]:
    """tinyproxy on a free loopback port, requiring basic authentication, logging every connection."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = directory / "tinyproxy.log"
    config = directory / "tinyproxy.conf"
    config.write_text(
        f"Port {port}\nListen 127.0.0.1\nTimeout 120\nMaxClients 100\n"
        f'LogFile "{log_path}"\nLogLevel Connect\nBasicAuth {user} {password}\nAllow 127.0.0.1\n'
    )
    binary = next((p for p in ("/usr/bin/tinyproxy", "/usr/sbin/tinyproxy") if Path(p).exists()), "tinyproxy")
    process = Process(
        "tinyproxy", [binary, "-d", "-c", str(config)], directory / "tinyproxy.out", clean_env()
    )
    process.start()
    wait_until(lambda: _port_open(port), 10, what="tinyproxy to listen")
    try:
        yield Tinyproxy(port, user, password, log_path, process)
    finally:
        process.stop()


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def healthy(url: str, ca: Path) -> bool:
    try:
        context = ssl.create_default_context(cafile=str(ca))
        return httpx.get(f"{url}/healthz", verify=context, timeout=1, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False
