"""Answering ACME challenges from the connector: dns-01 through the operator's hook command, http-01 by
serving the tokens on -httpaddress while the CA validates.

The dns-01 hook's contract (docs/acme-dns-hook.md has an example for RFC 2136 DNS servers):

    CMD set   NAME VALUE    create the TXT record NAME with VALUE; exit 0 once it is published
    CMD clear NAME VALUE    remove that TXT record (other values of NAME stay); exit 0

NAME is the record's fully qualified name without the final dot (`_acme-challenge.www.example.com`);
VALUE is the TXT content (RFC 8555 8.4: the base64url SHA-256 of the key authorization). CMD is split
like a shell command line but not run through a shell. The hook must return only when the record can be
seen by the CA (after propagation); a non-zero exit is reported with the last lines of its stderr.
"""

from __future__ import annotations

import http.server
import shlex
import socket
import subprocess
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from caconnector.backends.acme.config import split_address
from caconnector.backends.errors import ConfigError, Transient

HOOK_TIMEOUT_SECONDS = 120
HTTP01_PREFIX = "/.well-known/acme-challenge/"
_STDERR_TAIL = 3


@dataclass(frozen=True)
class TxtRecord:
    name: str
    value: str


def txt_record_name(domain: str) -> str:
    """Where dns-01 looks for the domain's TXT record (RFC 8555 8.4); wildcards are validated on the base."""
    return f"_acme-challenge.{domain.removeprefix('*.').rstrip('.')}"


class DnsHook:
    """Runs the operator's -hook command to set and clear TXT records."""

    def __init__(self, backend: str, command: str) -> None:
        self._backend = backend
        self._argv = shlex.split(command)

    def run(self, verb: str, record: TxtRecord) -> None:
        argv = [*self._argv, verb, record.name, record.value]
        where = f"backend {self._backend!r}: -hook {verb} {record.name}"
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=HOOK_TIMEOUT_SECONDS, check=False
            )
        except FileNotFoundError:
            raise ConfigError(f"{where}: the command {self._argv[0]!r} was not found; check -hook") from None
        except PermissionError:
            raise ConfigError(f"{where}: the command {self._argv[0]!r} cannot be run; check -hook") from None
        except subprocess.TimeoutExpired:
            raise Transient(f"{where}: the hook did not finish within {HOOK_TIMEOUT_SECONDS} s") from None
        if done.returncode != 0:
            tail = " | ".join(done.stderr.strip().splitlines()[-_STDERR_TAIL:]) or "no error output"
            # A DNS server that is down now may answer later: the manager retries.
            raise Transient(f"{where}: the hook exited with status {done.returncode} ({tail})")

    @contextmanager
    def published(self, records: list[TxtRecord]) -> Iterator[None]:
        """The records exist for the duration of the block; each one set is cleared afterwards."""
        done: list[TxtRecord] = []
        try:
            for record in records:
                self.run("set", record)
                done.append(record)
            yield
        finally:
            for record in done:
                try:
                    self.run("clear", record)
                except (ConfigError, Transient):
                    # A record left behind does no harm beyond clutter; the validation result stands.
                    continue


class _TokenHandler(http.server.BaseHTTPRequestHandler):
    tokens: dict[str, str]

    def do_GET(self) -> None:
        token = self.path.removeprefix(HTTP01_PREFIX) if self.path.startswith(HTTP01_PREFIX) else None
        body = self.tokens.get(token) if token is not None else None
        if body is None:
            self.send_error(404)
            return
        data = body.encode("ascii")
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        return  # the CA's fetches are not worth a log line each


@dataclass
class _TokenServer:
    """One listening socket, shared by every validation on its address: the connector's workers run
    several enrollments at once, and only one of them could bind the port."""

    server: http.server.ThreadingHTTPServer
    thread: threading.Thread
    tokens: dict[str, str]
    users: int = 0


_SERVERS: dict[tuple[str, int], _TokenServer] = {}
_SERVERS_LOCK = threading.Lock()


def _acquire(backend: str, address: str) -> tuple[tuple[str, int], _TokenServer]:
    host, port = split_address(address)
    key = (host, port)
    with _SERVERS_LOCK:
        running = _SERVERS.get(key)
        if running is None:
            tokens: dict[str, str] = {}
            handler = type("TokenHandler", (_TokenHandler,), {"tokens": tokens})
            server_class = type(
                "TokenServer",
                (http.server.ThreadingHTTPServer,),
                {"address_family": socket.AF_INET6 if ":" in host else socket.AF_INET},
            )
            try:
                server = server_class((host, port), handler)
            except OSError as exc:
                raise ConfigError(
                    f"backend {backend!r}: cannot serve http-01 tokens on -httpaddress {address} "
                    f"({exc.strerror})"
                ) from None
            thread = threading.Thread(target=server.serve_forever, name=f"acme-http01-{port}", daemon=True)
            thread.start()
            running = _SERVERS[key] = _TokenServer(server, thread, tokens)
        running.users += 1
        return key, running


def _release(key: tuple[str, int], running: _TokenServer, tokens: Mapping[str, str]) -> None:
    with _SERVERS_LOCK:
        for token in tokens:
            running.tokens.pop(token, None)
        running.users -= 1
        if running.users:
            return
        del _SERVERS[key]
    running.server.shutdown()
    running.server.server_close()
    running.thread.join()


@contextmanager
def serving_http01(backend: str, address: str, tokens: Mapping[str, str]) -> Iterator[None]:
    """Serve `tokens` (token -> key authorization) on `address` for the duration of the block."""
    key, running = _acquire(backend, address)
    with _SERVERS_LOCK:
        running.tokens.update(tokens)
    try:
        yield
    finally:
        _release(key, running, tokens)
