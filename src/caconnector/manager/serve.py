"""`ca-manager serve`: the manager's HTTP server (uvicorn), and the schema check every command that
opens the database makes first."""

from __future__ import annotations

import logging
import signal
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError as AlembicCommandError
from sqlalchemy import Engine, inspect, make_url

from caconnector import __version__
from caconnector.manager.access_log import leave_out_answered_polls
from caconnector.manager.app import create_app
from caconnector.manager.db.engine import MIGRATIONS_DIR
from caconnector.manager.db.migrate import current_revision, head_revision, upgrade
from caconnector.manager.http_protocol import with_header_limits
from caconnector.manager.public_url import is_loopback
from caconnector.manager.runtime import build_runtime
from caconnector.manager.settings import Settings
from caconnector.manager.tls_client import with_client_certificates

log = logging.getLogger("caconnector.manager")

# Long polls hold requests open for up to a poll's wait; a connector whose poll is cut short just polls
# again (jobs are leased, not lost), so shutdown need not wait for them.
GRACEFUL_SHUTDOWN_SECONDS = 5


class SchemaError(Exception):
    """The database's schema is not the one this ca-manager needs, and it will not guess how to fix it."""


def _is_known_revision(revision: str) -> bool:
    scripts = ScriptDirectory(str(MIGRATIONS_DIR))
    try:
        return scripts.get_revision(revision) is not None
    except AlembicCommandError:
        return False


def ensure_schema(engine: Engine) -> bool:
    """Migrate an empty database (True); pass a current one (False); refuse anything else.

    Migrating a database that already holds data is left to `db upgrade`, run on purpose after a backup.
    """
    current, head = current_revision(engine), head_revision()
    if current == head:
        return False
    database = safe_url(str(engine.url))
    if current is None:
        if inspect(engine).get_table_names():
            raise SchemaError(
                f"the database {database} holds tables but no ca-manager schema; "
                "give -database the URL of an empty database or of the manager's own"
            )
        upgrade(engine)
        return True
    if _is_known_revision(current):
        raise SchemaError(
            f"the database schema is at revision {current}, this ca-manager needs {head}: "
            "back the database up, then run: ca-manager db upgrade"
        )
    raise SchemaError(
        f"the database schema is at revision {current}, which this ca-manager ({__version__}) does not "
        "know: it was upgraded by a newer version; run that version"
    )


def safe_url(url: str) -> str:
    """A database URL fit for a log line: the password masked."""
    return make_url(url).render_as_string(hide_password=True)


def default_public_url(host: str, port: int, tls: bool) -> str:
    """How connectors reach this server when -public-url is not given: its own address, with the
    machine's name in place of a wildcard address."""
    if host in ("", "0.0.0.0", "::"):  # noqa: S104  (comparing, not binding)
        host = socket.getfqdn()
    elif ":" in host:
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port}"


@dataclass(frozen=True)
class Listen:
    host: str
    port: int
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls_cert else 'http'}://{host}:{self.port}"


@contextmanager
def _stop_on_signals() -> Iterator[list[int]]:
    """Make SIGTERM and SIGINT a clean stop with exit code 0.

    uvicorn catches both while it runs, shuts down gracefully, restores the handlers it found and then
    raises the signal again. Left to Python's defaults, that re-raise would kill the process (SIGTERM)
    or raise KeyboardInterrupt (SIGINT) after an orderly shutdown; these handlers just note it.
    """
    received: list[int] = []

    def note(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)

    previous = {sig: signal.signal(sig, note) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def http_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options for the HTTP layer's limits (the rest are in manager/http_guard.py)."""
    return {
        "http": with_header_limits(settings.header_timeout_seconds),
        "timeout_keep_alive": settings.keepalive_timeout_seconds,
        "limit_concurrency": settings.max_connections,
        "ws": "none",
    }


def client_certificate_options(settings: Settings, listen: Listen) -> dict[str, Any]:
    """With TLS and `compat_client_ca_file`: ask for a client certificate (optional: connectors and the
    REST API present none), verify it against those CAs, and hand it to the app (manager/tls_client.py)."""
    if settings.compat_client_ca_file is None or not listen.tls_cert:
        return {}
    return {
        "ssl_cert_reqs": ssl.CERT_OPTIONAL,
        "ssl_ca_certs": str(settings.compat_client_ca_file),
        "http": with_client_certificates(http_options(settings)["http"]),
    }


def serve(settings: Settings, listen: Listen) -> bool:
    """Run until SIGTERM or SIGINT. False when the server could not start (uvicorn has logged why)."""
    runtime = build_runtime(settings)
    try:
        if ensure_schema(runtime.engine):
            log.info(
                "migrated the empty database %s to the current schema", safe_url(str(runtime.engine.url))
            )
        config = uvicorn.Config(
            create_app(settings, runtime=runtime),
            host=listen.host,
            port=listen.port,
            ssl_certfile=listen.tls_cert,
            ssl_keyfile=listen.tls_key,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
            server_header=False,
            log_level="info",
            # The client certificate options replace the HTTP protocol with one that passes them on.
            **{**http_options(settings), **client_certificate_options(settings, listen)},
        )
        leave_out_answered_polls()  # after uvicorn.Config, which (re)configures uvicorn's loggers
        if not listen.tls_cert and not is_loopback(listen.host):
            log.warning(
                "serving plain HTTP on %s: put a TLS-terminating proxy in front, or give -tls-cert and "
                "-tls-key (connectors accept http:// only for loopback addresses)",
                listen.host,
            )
        log.info(
            "ca-manager %s serving on %s (public URL %s, database %s)",
            __version__,
            listen.url,
            settings.public_url,
            safe_url(settings.effective_database_url),
        )
        with _stop_on_signals() as received:
            try:
                uvicorn.Server(config).run()
            except SystemExit:  # uvicorn exits when it cannot bind, after logging the reason
                return False
        if received:
            log.info("ca-manager stopped (%s)", signal.Signals(received[0]).name)
        return True
    finally:
        runtime.engine.dispose()
