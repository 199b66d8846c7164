"""`create_app(settings)`: the manager's ASGI application. No global app: each test builds its own."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text

from caconnector import __version__
from caconnector.manager import channel, compat, downloads, home, metrics, ui
from caconnector.manager.acme import routes as acme_routes
from caconnector.manager.api import (
    acme_bindings,
    audit_log,
    backends,
    cas,
    certificates,
    connectors,
    index,
    jobs,
    profiles,
    users,
)
from caconnector.manager.docs_assets import docs_router
from caconnector.manager.http_guard import HttpGuard
from caconnector.manager.openapi import install_openapi
from caconnector.manager.problems import install_handlers
from caconnector.manager.runtime import Clock, Runtime, build_runtime, utcnow
from caconnector.manager.services.scheduler import Scheduler
from caconnector.manager.settings import Settings

API_PREFIX = "/api/v1"
# How long start-up waits for the PostgreSQL LISTEN connections before serving without them.
LISTEN_TIMEOUT_SECONDS = 10.0

log = logging.getLogger(__name__)


def create_app(settings: Settings, clock: Clock = utcnow, runtime: Runtime | None = None) -> FastAPI:
    runtime = runtime or build_runtime(settings, clock)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        interval = settings.scheduler_interval_seconds
        scheduler = Scheduler(runtime, interval) if interval > 0 else None
        if scheduler is not None:
            scheduler.start()
        if not await asyncio.to_thread(runtime.start_listening, LISTEN_TIMEOUT_SECONDS):
            # Not fatal: the listeners keep trying, and a poll's wait ends with a look of its own.
            log.warning(
                "the wake-up listeners are not listening yet after %.0f s; polls see jobs other "
                "manager processes create at the end of their wait until they do",
                LISTEN_TIMEOUT_SECONDS,
            )
        try:
            yield
        finally:
            if scheduler is not None:
                await scheduler.stop()
            # Stops the PostgreSQL LISTEN threads (the server has answered or cut every request by now).
            runtime.close_wakeups()

    app = FastAPI(
        lifespan=lifespan,
        title="ca-manager",
        version=__version__,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,  # docs_assets serves the page, with its Swagger UI from the manager itself
        redoc_url=None,
    )
    app.state.runtime = runtime
    install_handlers(app)
    # The connector channel first: routes are matched in order, and its polls are the most frequent
    # requests (its paths, under /connector/v1/, overlap no other router's).
    app.include_router(channel.router)
    for front in (index.router, home.router):  # the front door, / and /api/v1, outside API_PREFIX
        app.include_router(front)
    # Certificates first of the API: an enrollment is the most frequent API request, and each router
    # before the one that matches costs a request a try at each of its routes (no two overlap).
    for module in (certificates, connectors, backends, cas, profiles, jobs, audit_log, users):
        app.include_router(module.router, prefix=API_PREFIX)
    # The commercial manager's REST API (/api/ssl/v1, /api/organization/v1), for its clients' scripts.
    compat.install(app)
    # The ACME server (RFC 8555): /acme/{profile}/directory, for any ACME client (issue 20).
    acme_routes.install(app)
    app.include_router(acme_bindings.router, prefix=API_PREFIX)
    app.include_router(downloads.router)  # the connector packages (issue 17)
    app.include_router(docs_router(f"{API_PREFIX}/openapi.json", "ca-manager"))
    # The web UI under /ui (manager/ui/): pages over the same services, its own session cookie and CSRF.
    ui.install(app)
    # Authenticates and limits before any body is read; see http_guard for what it does in which order.
    app.add_middleware(HttpGuard, runtime=runtime, router=app.router)
    # /metrics, and the middleware counting every request: outside the guard, to count its refusals too.
    metrics.install(app, runtime)
    install_openapi(app)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> JSONResponse:
        try:
            with runtime.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001  (any database failure means "not healthy")
            return JSONResponse({"status": "unavailable", "detail": type(exc).__name__}, status_code=503)
        return JSONResponse({"status": "ok", "version": __version__})

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> JSONResponse:
        """Ready for traffic: the database answers and its schema is at this version's migration head
        (a load balancer keeps a manager whose database is not upgraded yet out of rotation)."""
        from caconnector.manager.db.migrate import current_revision, head_revision  # noqa: PLC0415

        head = head_revision()
        try:
            current = current_revision(runtime.engine)
        except Exception as exc:  # noqa: BLE001  (any database failure means "not ready")
            return JSONResponse({"status": "unavailable", "detail": type(exc).__name__}, status_code=503)
        if current != head:
            detail = (
                f"the database schema is at {current}, this version needs {head}: run ca-manager db upgrade"
            )
            return JSONResponse({"status": "not ready", "detail": detail}, status_code=503)
        return JSONResponse({"status": "ready", "version": __version__, "schema": current})

    return app
