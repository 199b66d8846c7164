"""The HTTP figures: requests counted by route template, method and status, and their latency, kept in
plain dicts under one lock. Written on the event loop by the middleware, read by the scrape in a worker
thread: the lock makes the scrape's copy consistent and costs a few tens of nanoseconds uncontended.

Labels are bounded by construction: a route is a template of the app's own routes (or `<unmatched>`),
a method one of the standard ones (or `other`), a status a number below 600. A raw URL never becomes a
label: it is unbounded (a scanner's 404s would grow the dicts without end) and may carry secrets.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from re import Pattern
from typing import Any

from starlette.routing import BaseRoute
from starlette.types import Scope

from caconnector.manager.metrics.exposition import Family

# From 1 ms (a cached GET) to 60 s: long polls park for the poll wait (30 s by default) and `wait`
# enrollments for up to their `wait`, so those routes fill the top buckets by design; the route label
# tells them apart from slow API calls.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
UNMATCHED = "<unmatched>"  # no route of the app matches the path (a 404, a slash redirect)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "other"
NO_STATUS = 0  # the request ended without an answer (the client went away first): status="0"


class _Latency:
    __slots__ = ("buckets", "count", "total")

    def __init__(self, size: int) -> None:
        self.buckets = [0] * size  # per bucket, not cumulative; the last one is +Inf
        self.count = 0
        self.total = 0.0


class RequestMetrics:
    def __init__(self, buckets: Sequence[float] = BUCKETS) -> None:
        self.bounds = tuple(buckets)
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], int] = {}
        self._latency: dict[tuple[str, str], _Latency] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        index = bisect_left(self.bounds, seconds)  # the first bound >= seconds: Prometheus' `le`
        key = (route, method)
        with self._lock:
            counted = (route, method, status)
            self._requests[counted] = self._requests.get(counted, 0) + 1
            latency = self._latency.get(key)
            if latency is None:
                latency = self._latency[key] = _Latency(len(self.bounds) + 1)
            latency.buckets[index] += 1
            latency.count += 1
            latency.total += seconds

    def families(self) -> list[Family]:
        with self._lock:
            requests = dict(self._requests)
            latency = {key: (list(v.buckets), v.count, v.total) for key, v in self._latency.items()}
        counter = Family(
            "ca_manager_http_requests_total",
            "counter",
            "HTTP requests answered, by route template, method and status code (0: no answer was sent)",
        )
        for (route, method, status), count in sorted(requests.items()):
            counter.add(count, route=route, method=method, status=str(status))
        histogram = Family(
            "ca_manager_http_request_duration_seconds",
            "histogram",
            "HTTP request latency, by route template and method (long polls and `wait` requests are long "
            "by design)",
        )
        for (route, method), (buckets, count, total) in sorted(latency.items()):
            cumulative = 0
            for bound, in_bucket in zip(self.bounds, buckets, strict=False):
                cumulative += in_bucket
                histogram.add(cumulative, "_bucket", route=route, method=method, le=repr(bound))
            histogram.add(count, "_bucket", route=route, method=method, le="+Inf")
            histogram.add(total, "_sum", route=route, method=method)
            histogram.add(count, "_count", route=route, method=method)
        return [counter, histogram]


def bounded_method(scope: Scope) -> str:
    method: str = scope["method"]
    return method if method in METHODS else OTHER_METHOD


def _route_contexts(routes: Sequence[BaseRoute]) -> Iterator[Any]:
    """The app's routes as the router sees them, each with its full path template and regex. Recent
    FastAPI keeps included routers nested (a route's own `path` lacks its prefix) and names the
    effective routes through `iter_route_contexts`; older versions copy every route into the app's
    list with its prefix applied."""
    try:
        from fastapi.routing import iter_route_contexts  # noqa: PLC0415  (absent from older FastAPI)
    except ImportError:  # pragma: no cover  (the FastAPI the tests run has it)
        yield from ((route, route) for route in routes)
        return
    for context in iter_route_contexts(routes):
        yield context.original_route, context


class RouteTemplates:
    """The route template a request was served by: `/api/v1/certificates/{certificate_id}`.

    The router leaves the route it chose in `scope["route"]`; most routes are included once, so the
    template is one dict lookup. A route included under two prefixes (the compatible API under `/` and
    `/private`) is told apart by its regexes; a request the router never reached (refused by the HTTP
    guard first) or that reached a mount (static files) is matched against every template."""

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        self._by_route: dict[int, list[tuple[Pattern[str], str]]] = {}
        self._all: list[tuple[Pattern[str], str]] = []
        self._keep: list[object] = []  # the routes keyed by id(), kept alive so no id is reused
        for original, context in _route_contexts(routes):
            template = getattr(context, "path_format", None)
            regex = getattr(context, "path_regex", None)
            if not isinstance(template, str) or not isinstance(regex, Pattern):
                continue
            self._by_route.setdefault(id(original), []).append((regex, template))
            self._all.append((regex, template))
            self._keep.append(original)

    def template(self, scope: Scope, path: str) -> str:
        """`path`: the request's path as the routes see it, taken before the app ran (a mount moves
        the scope's root_path on)."""
        route = scope.get("route")
        if route is not None:
            candidates = self._by_route.get(id(route))
            if candidates is not None:
                if len(candidates) == 1:
                    return candidates[0][1]
                for regex, template in candidates:
                    if regex.match(path):
                        return template
        for regex, template in self._all:
            if regex.match(path):
                return template
        return UNMATCHED
