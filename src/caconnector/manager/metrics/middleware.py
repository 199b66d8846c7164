"""The ASGI middleware that times and counts every HTTP request. Pure ASGI rather than Starlette's
BaseHTTPMiddleware, which runs the app in a task of its own and buffers streamed answers: this one
only wraps `send` to see the status and adds one `observe` when the app returns.

It sits outside the HTTP guard, so the guard's own answers (401 before the body, 413, 429, 503) are
counted too, under the route they were meant for.
"""

from __future__ import annotations

import time

from starlette.routing import Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from caconnector.manager.http_guard import route_path
from caconnector.manager.metrics.requests import (
    NO_STATUS,
    RequestMetrics,
    RouteTemplates,
    bounded_method,
)


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: RequestMetrics, router: Router) -> None:
        self.app = app
        self.metrics = metrics
        self.router = router
        # Built at the first request: routes are still being added while the middleware is registered.
        self._templates: RouteTemplates | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path = route_path(scope)
        status = NO_STATUS

        async def counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counted)
        except Exception:
            # Starlette's ServerErrorMiddleware, outside this one, answers it with a 500.
            if status == NO_STATUS:
                status = 500
            raise
        finally:
            elapsed = time.perf_counter() - started
            if self._templates is None:
                self._templates = RouteTemplates(self.router.routes)
            route = self._templates.template(scope, path)
            self.metrics.observe(route, bounded_method(scope), status, elapsed)
