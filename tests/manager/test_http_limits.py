"""The HTTP layer against hostile clients (issue 8), on a real uvicorn with the options `serve` uses,
spoken to over raw sockets where the point is what the server does before a request is complete."""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi.testclient import TestClient
from sqlalchemy import text
from tests.manager.conftest import Caller, make_caller
from tests.ports import free_port

from caconnector.manager.app import create_app
from caconnector.manager.db.migrate import upgrade
from caconnector.manager.roles import Role
from caconnector.manager.runtime import Runtime, build_runtime
from caconnector.manager.serve import http_options
from caconnector.manager.settings import Settings
from caconnector.protocol.version import PROTOCOL_VERSION

MiB = 1024 * 1024


@dataclass(frozen=True)
class Live:
    host: str
    port: int
    admin: Caller

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock


def _settings(tmp_path: Path, **limits: float) -> Settings:
    return Settings(
        datadir=tmp_path / "manager-data",
        scheduler_interval_seconds=0.0,
        poll_wait_seconds=1.0,
        **limits,  # type: ignore[arg-type]
    )


@contextmanager
def _serving(settings: Settings) -> Iterator[Live]:
    runtime: Runtime = build_runtime(settings)
    upgrade(runtime.engine)
    admin = make_caller(runtime, "admin", Role.ADMIN)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    host, port = sock.getsockname()
    config = uvicorn.Config(
        create_app(settings, runtime=runtime), log_level="warning", lifespan="on", **http_options(settings)
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.01)
        yield Live(host, port, admin)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        runtime.engine.dispose()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    settings = _settings(
        tmp_path,
        api_max_body_bytes=MiB,
        header_timeout_seconds=1.0,
        # Long enough for a loaded machine to read a small body in time, short enough to wait for.
        body_timeout_seconds=3.0,
        keepalive_timeout_seconds=1,
        auth_failure_burst=5,
        auth_failure_refill_seconds=30.0,
    )
    with _serving(settings) as served:
        yield served


def _read_answer(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Everything the server sends until it closes the connection (or `timeout` passes)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        pass
    except ConnectionResetError:
        pass
    return data


def _head(method: str, path: str, *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: manager", *headers, "", ""]
    return "\r\n".join(lines).encode()


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


# ---- item 1: bodies ------------------------------------------------------------------------------


def test_a_declared_oversized_body_is_refused_before_a_byte_of_it_is_sent(live: Live) -> None:
    with live.connect() as sock:
        sock.sendall(
            _head(
                "POST",
                "/api/v1/connectors",
                f"Authorization: Bearer {live.admin.api_key}",
                "Content-Type: application/json",
                f"Content-Length: {200 * MiB}",
            )
        )
        answer = _read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" in answer.lower()
    assert b"application/problem+json" in answer
    assert b'"code":"body_too_large"' in answer


def test_a_streamed_body_is_cut_at_the_limit_and_never_read_to_its_end(live: Live) -> None:
    chunk = b"x" * (64 * 1024)
    sent = 0
    answer = b""
    with live.connect() as sock:
        sock.sendall(
            _head(
                "POST",
                "/api/v1/connectors",
                f"Authorization: Bearer {live.admin.api_key}",
                "Content-Type: application/json",
                "Transfer-Encoding: chunked",
            )
        )
        try:
            while sent < 64 * MiB:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                sent += len(chunk)
                if select.select([sock], [], [], 0)[0]:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = _read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    # Answered and closed long before the client finished (the kernel buffers a few MiB at most).
    assert sent < 16 * MiB


def test_an_unauthenticated_body_is_refused_from_its_headers(live: Live) -> None:
    """401 while the 100 MB body is still unsent: the server did not wait for it, let alone parse it."""
    with live.connect() as sock:
        sock.sendall(
            _head(
                "POST",
                "/api/v1/connectors",
                "Authorization: Bearer cak_0123456789ab_notakey",
                "Content-Type: application/json",
                f"Content-Length: {MiB - 1}",
            )
        )
        sock.sendall(b"{" * 1000)
        answer = _read_answer(sock, timeout=3)
    assert answer.startswith(b"HTTP/1.1 401 ")


def test_an_unsigned_channel_body_is_refused_from_its_headers(live: Live) -> None:
    with live.connect() as sock:
        sock.sendall(
            _head(
                "POST",
                "/connector/v1/poll",
                "Authorization: Bearer not.a.jwt",
                "Content-Type: application/json",
                f"Content-Length: {4 * MiB - 1}",
            )
        )
        answer = _read_answer(sock, timeout=3)
    assert answer.startswith(b"HTTP/1.1 401 ")


def test_registration_has_a_small_body_limit_of_its_own(live: Live) -> None:
    answer = httpx.post(f"{live.url}/connector/v1/register", content=b"{" * (100 * 1024))
    assert answer.status_code == 413
    assert answer.json()["limit_bytes"] == 64 * 1024


def test_requests_in_progress_are_bounded_per_lane(tmp_path: Path) -> None:
    """With one channel request allowed, a parked poll's slot is taken, yet the API still answers."""
    settings = _settings(tmp_path, max_channel_requests=1, body_timeout_seconds=5.0)
    with _serving(settings) as served, served.connect() as parked:
        # Headers of a registration whose body never comes: it holds the one channel slot.
        parked.sendall(_head("POST", "/connector/v1/register", "Content-Length: 10"))
        time.sleep(0.3)
        busy = httpx.post(f"{served.url}/connector/v1/register", json={})
        api = httpx.get(f"{served.url}/api/v1/connectors", headers=served.admin.headers)
    assert busy.status_code == 503
    assert busy.headers["retry-after"] == "1"
    assert api.status_code == 200


# ---- item 2: slow and idle connections --------------------------------------------------------------


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(live: Live) -> None:
    with live.connect() as sock:
        assert _closed_within(sock, 5)


def test_half_sent_headers_are_closed_after_the_header_timeout(live: Live) -> None:
    with live.connect() as sock:
        sock.sendall(b"POST /api/v1/connectors HTTP/1.1\r\nHost: manager\r\n")
        started = time.monotonic()
        for _ in range(3):  # a byte now and then does not keep it open
            time.sleep(0.3)
            sock.sendall(b"X")
        assert _closed_within(sock, 5)
        assert time.monotonic() - started < 5


def test_headers_beyond_the_limit_are_answered_431_and_closed(live: Live) -> None:
    with live.connect() as sock:
        sock.sendall(b"GET /api/v1 HTTP/1.1\r\nHost: manager\r\n")
        filler = b"X-Filler: " + b"a" * 1000 + b"\r\n"
        try:
            for _ in range(100):  # 100 KB of headers, never ended
                sock.sendall(filler)
        except OSError:
            pass  # closed while sending: what the test wants
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]


def test_headers_within_the_limit_are_served(live: Live) -> None:
    headers = {f"X-Filler-{i}": "a" * 1000 for i in range(40)}  # 40 KB
    response = httpx.get(f"{live.url}/api/v1", headers=headers, trust_env=False)
    assert response.status_code == 200


def test_a_half_sent_body_is_answered_408_and_closed(live: Live) -> None:
    with live.connect() as sock:
        sock.sendall(
            _head(
                "POST",
                "/api/v1/connectors",
                f"Authorization: Bearer {live.admin.api_key}",
                "Content-Type: application/json",
                "Content-Length: 100",
            )
            + b'{"name":'
        )
        answer = _read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b'"code":"body_timeout"' in answer


def test_an_idle_keep_alive_connection_is_closed(live: Live) -> None:
    with live.connect() as sock:
        sock.sendall(_head("GET", "/healthz"))
        time.sleep(0.2)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        assert _closed_within(sock, 5)


# ---- item 4: failed authentication -------------------------------------------------------------


def test_wrong_keys_are_throttled_with_retry_after_and_logged_without_the_key(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "cak_0123456789ab_" + "s" * 32
    caplog.set_level(logging.WARNING, logger="caconnector.manager.auth")
    with httpx.Client(base_url=live.url) as client:
        answers = [
            client.get("/api/v1/connectors", headers={"Authorization": f"Bearer {wrong}"}) for _ in range(8)
        ]
        # Throttled means throttled: the right key from the same address waits too.
        right = client.get("/api/v1/connectors", headers=live.admin.headers)
    assert [a.status_code for a in answers] == [401] * 5 + [429] * 3
    assert int(answers[-1].headers["retry-after"]) >= 1
    assert answers[-1].headers["content-type"] == "application/problem+json"
    assert answers[-1].json()["code"] == "throttled"
    assert right.status_code == 429
    lines = [r.getMessage() for r in caplog.records if r.name == "caconnector.manager.auth"]
    assert len(lines) == 1  # one line per address per interval, not one per attempt
    assert "127.0.0.1" in lines[0]
    assert "cak_0123456789ab" in lines[0]
    assert wrong not in caplog.text
    assert "s" * 32 not in caplog.text


def test_failed_registrations_are_throttled(live: Live) -> None:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    body = {
        "token": "cat_wrong",
        "public_key": key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode(),
        "hostname": "h",
        "version": "0",
        "protocol_version": PROTOCOL_VERSION,
    }
    codes = [httpx.post(f"{live.url}/connector/v1/register", json=body).status_code for _ in range(7)]
    assert codes == [401] * 5 + [429] * 2


# ---- item 3: headers, 405, docs ------------------------------------------------------------------


def test_security_headers_on_every_answer(live: Live) -> None:
    with httpx.Client(base_url=live.url) as client:
        api = client.get("/api/v1/connectors", headers=live.admin.headers)
        refused = client.get("/api/v1/connectors")
        health = client.get("/healthz")
        missing = client.get("/no/such/page")
    for answer in (api, refused, health, missing):
        assert answer.headers["x-content-type-options"] == "nosniff"
    assert api.headers["cache-control"] == "no-store"
    assert refused.headers["cache-control"] == "no-store"
    assert "strict-transport-security" not in api.headers  # plain HTTP: HSTS would mean nothing


def test_hsts_when_served_over_https(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    runtime = build_runtime(settings)
    upgrade(runtime.engine)
    admin = make_caller(runtime, "admin", Role.ADMIN)
    with TestClient(create_app(settings, runtime=runtime), base_url="https://manager") as client:
        answer = client.get("/api/v1/connectors", headers=admin.headers)
    runtime.engine.dispose()
    assert answer.headers["strict-transport-security"].startswith("max-age=")


def test_405_names_every_method_the_path_allows(live: Live) -> None:
    answer = httpx.delete(f"{live.url}/api/v1/connectors", headers=live.admin.headers)
    assert answer.status_code == 405
    assert answer.headers["content-type"] == "application/problem+json"
    allowed = {m.strip() for m in answer.headers["allow"].split(",")}
    assert {"GET", "POST"} <= allowed
    assert "DELETE" not in allowed


def test_the_docs_page_loads_its_assets_from_the_manager(live: Live) -> None:
    with httpx.Client(base_url=live.url) as client:
        page = client.get("/api/v1/docs")
        assert page.status_code == 200
        urls = [part.split('"')[0] for marker in ('src="', 'href="') for part in page.text.split(marker)[1:]]
        assert urls, page.text
        for url in urls:
            assert url.startswith("/api/v1/docs/assets/"), url
            asset = client.get(url)
            assert asset.status_code == 200, url
            assert len(asset.content) > 100
        assert client.get("/api/v1/docs/assets/index.html").status_code == 404
        redirect = client.get("/docs", follow_redirects=False)
    assert redirect.status_code in (302, 307, 308)
    assert redirect.headers["location"] == "/api/v1/docs"


# ---- item 6: the safety net ----------------------------------------------------------------------


def test_an_unhandled_error_is_a_500_problem_without_the_exception(live: Live, tmp_path: Path) -> None:
    runtime = build_runtime(_settings(tmp_path))
    with runtime.engine.begin() as connection:  # a database broken under the running manager
        connection.execute(text("DROP TABLE audit_events"))
    runtime.engine.dispose()
    answer = httpx.get(f"{live.url}/api/v1/audit", headers=live.admin.headers)
    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == "internal"
    assert "audit_events" not in answer.text
    assert "Traceback" not in answer.text
    assert "sqlite" not in answer.text.lower()


# ---- item 5: file modes --------------------------------------------------------------------------


def _modes(datadir: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(datadir.stat().st_mode)}
    found.update({p.name: stat.S_IMODE(p.stat().st_mode) for p in datadir.iterdir()})
    return found


def _manager(*args: str) -> list[str]:
    return [sys.executable, "-m", "caconnector.manager.cli", *args]


@pytest.mark.slow
def test_db_upgrade_and_serve_create_private_files(tmp_path: Path) -> None:
    datadir = tmp_path / "fresh" / "manager-data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CA_MANAGER_")}
    done = subprocess.run(
        _manager("db", "upgrade", "-datadir", str(datadir)),
        env=env,
        umask=0o022,
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    after_upgrade = _modes(datadir)
    assert after_upgrade["."] == 0o700
    assert after_upgrade["manager.db"] == 0o600
    assert all(mode == 0o600 for name, mode in after_upgrade.items() if name != "."), after_upgrade

    port = free_port()
    fresh = tmp_path / "served"
    server = subprocess.Popen(
        _manager("serve", "-datadir", str(fresh), "-port", str(port)),
        env=env,
        umask=0o022,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "serve did not start"
            time.sleep(0.2)
        while_serving = _modes(fresh)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert {"manager.db", "manager.db-wal", "manager.db-shm"} <= while_serving.keys(), while_serving
    assert while_serving["."] == 0o700
    assert all(mode == 0o600 for name, mode in while_serving.items() if name != "."), while_serving
