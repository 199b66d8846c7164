"""What the /metrics middleware costs per request: the manager's app called in process through ASGI (no
sockets, so the figure is the app's own time), with and without the middleware, in alternating rounds
of the same run; and the middleware alone around an app that does nothing.

    .venv/bin/python -m bench.metrics_overhead [--requests N] [--rounds R]

Prints CPU µs per request for each path and the ratio with/without, the median of many short
alternating blocks (so a burst of load on the machine hits both alike). The paths: the API index (a matched
route, no database), a certificate without a key (a path parameter, a 401 from the route), and an
unknown path (a 404: no route in the scope, so every template is tried: the slowest case).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from fastapi import FastAPI
from starlette.routing import Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from caconnector.manager.app import create_app
from caconnector.manager.db.migrate import upgrade
from caconnector.manager.metrics.middleware import MetricsMiddleware
from caconnector.manager.metrics.requests import RequestMetrics
from caconnector.manager.runtime import build_runtime
from caconnector.manager.settings import Settings

PATHS = ("/api/v1", "/api/v1/certificates/0123456789abcdef", "/no/such/path")


def _scope(path: str) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8443),
    }


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(_: Message) -> None:
    return None


async def _time(app: ASGIApp, path: str, count: int) -> float:
    """CPU seconds per request for `count` requests of `path` to the ASGI `app`. CPU time, not wall
    time: on a shared machine the time this process waits for a core is not the app's cost."""
    started = time.process_time()
    for _ in range(count):
        await app(_scope(path), _receive, _send)
    return (time.process_time() - started) / count


def _apps(settings: Settings) -> tuple[FastAPI, FastAPI]:
    """The manager's app as `create_app` makes it, and the same without the metrics middleware."""
    runtime = build_runtime(settings)
    upgrade(runtime.engine)
    with_metrics = create_app(settings, runtime=runtime)
    without = create_app(settings, runtime=runtime)
    # The stack is built at the first call, from this list: dropping the entry drops the middleware.
    without.user_middleware = [m for m in without.user_middleware if m.cls is not MetricsMiddleware]
    return with_metrics, without


async def _compare(settings: Settings, requests: int, rounds: int) -> None:
    with_metrics, without = _apps(settings)
    for app in (with_metrics, without):  # warm-up: builds the stacks and the route table
        for path in PATHS:
            await _time(app, path, 50)
    print(f"{'path':<42} {'without':>10} {'with':>10} {'ratio':>7} (CPU µs/request, median: {rounds} blocks)")
    for path in PATHS:
        before, after = [], []
        for _ in range(rounds):  # alternating, so a burst of load on the machine hits both alike
            before.append(await _time(without, path, requests))
            after.append(await _time(with_metrics, path, requests))
        b, a = statistics.median(before) * 1e6, statistics.median(after) * 1e6
        print(f"GET {path:<38} {b:10.1f} {a:10.1f} {a / b:7.3f}   (+{a - b:.1f} µs)")


async def _middleware_alone(requests: int, rounds: int) -> None:
    """Around an app that answers at once: what the middleware adds, without the app's own time."""
    app = FastAPI()

    @app.get("/api/v1/certificates/{certificate_id}")
    def _route(certificate_id: str) -> None:
        return None

    route = next(
        r for r in app.router.routes if getattr(r, "path", "") == "/api/v1/certificates/{certificate_id}"
    )

    async def answer(scope: Scope, _: Receive, send: Send) -> None:
        scope["route"] = route  # as the router leaves it
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    router: Router = app.router
    counted = MetricsMiddleware(answer, metrics=RequestMetrics(), router=router)
    path = "/api/v1/certificates/0123456789abcdef"
    bare, wrapped = [], []
    for _ in range(rounds):
        bare.append(await _time(answer, path, requests))
        wrapped.append(await _time(counted, path, requests))
    b, w = statistics.median(bare) * 1e6, statistics.median(wrapped) * 1e6
    print(
        f"{'middleware alone, around a no-op app':<42} {b:10.2f} {w:10.2f} {w / b:7.3f}   (+{w - b:.2f} µs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=100, help="requests per path per block")
    parser.add_argument("--rounds", type=int, default=60, help="alternating blocks; the median is printed")
    args = parser.parse_args()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {load} (shared machine: compare the ratios)"
    )
    with tempfile.TemporaryDirectory() as workdir:
        settings = Settings(
            datadir=Path(workdir),
            database_url=f"sqlite:///{Path(workdir) / 'manager.db'}",
            scheduler_interval_seconds=0.0,
            # The 401s must stay 401s: the failed-authentication throttle would answer 429 after 10.
            auth_failure_burst=10**9,
            auth_log_interval_seconds=3600.0,
        )
        asyncio.run(_compare(settings, args.requests, args.rounds))
    asyncio.run(_middleware_alone(args.requests * 10, args.rounds))


if __name__ == "__main__":
    main()
