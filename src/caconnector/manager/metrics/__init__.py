"""`/metrics`: the manager's figures in the Prometheus text format (docs/architecture.md, "Metrics").

exposition.py writes the format; requests.py holds the HTTP counters and histograms; middleware.py
fills them per request; collectors.py reads the database, the process and the parked requests at
scrape time. `install` wires them into an app.
"""

from __future__ import annotations

from fastapi import Depends, FastAPI
from fastapi.responses import Response

from caconnector.manager.auth import READ, require_roles
from caconnector.manager.http_guard import METRICS_PATH
from caconnector.manager.metrics.collectors import (
    ProcessFigures,
    database_families,
    group_commit_families,
    info_family,
    parked_families,
)
from caconnector.manager.metrics.exposition import CONTENT_TYPE, render
from caconnector.manager.metrics.middleware import MetricsMiddleware
from caconnector.manager.metrics.requests import RequestMetrics
from caconnector.manager.runtime import Runtime

__all__ = ["METRICS_PATH", "install"]


def install(app: FastAPI, runtime: Runtime) -> None:
    """Count every request, and serve `/metrics`. Call after the HTTP guard is added: the middleware
    added last runs first, and this one must see the guard's refusals too."""
    requests = RequestMetrics()
    process = ProcessFigures()
    app.add_middleware(MetricsMiddleware, metrics=requests, router=app.router)
    # Any role that can read the API may scrape (it shows route traffic and connector counts); a
    # trusted network may serve it without a key (CA_MANAGER_METRICS_PUBLIC=true).
    access = [] if runtime.settings.metrics_public else [Depends(require_roles(*READ))]

    def metrics() -> Response:
        # A plain def: FastAPI runs it in a worker thread, off the event loop, since it reads the
        # database and /proc. Everything it reads from memory is behind its owner's lock.
        families = [
            info_family(),
            *requests.families(),
            *parked_families(runtime.wakeups, runtime.certificate_wakeups),
            *group_commit_families(runtime.writes),
            *database_families(runtime),
            *process.families(),
        ]
        return Response(render(families), media_type=CONTENT_TYPE)

    # Out of the OpenAPI document, like /healthz: not JSON, and not part of the REST API's contract.
    app.add_api_route(METRICS_PATH, metrics, methods=["GET"], include_in_schema=False, dependencies=access)
