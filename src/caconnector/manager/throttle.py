"""Failed authentication, per client address: a token bucket that answers 429 once an address has
failed too often, and a log that says so once per address per interval instead of once per attempt.

In memory, per process: a guesser is slowed down where it knocks, and a restart forgets (an attacker
gains nothing from that he could not get from a second address). The number of addresses remembered
is bounded, so a flood from many addresses costs a bounded amount of memory.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

Monotonic = Callable[[], float]

# Addresses remembered at once; the least recently failing are forgotten first.
MAX_SOURCES = 10_000
# Log lines about failed authentication per interval, over all addresses: a flood from many addresses
# cannot flood the log either.
MAX_LOG_LINES_PER_INTERVAL = 50

log = logging.getLogger("caconnector.manager.auth")


@dataclass
class _Bucket:
    tokens: float
    updated: float


class FailureThrottle:
    """Each address holds up to `burst` attempts; a failure spends one, and one comes back every
    `refill_seconds`. An address with none left is told to come back when it has one again."""

    def __init__(self, burst: int, refill_seconds: float, clock: Monotonic = time.monotonic) -> None:
        self._burst = burst
        self._refill = refill_seconds
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def _current(self, source: str, now: float) -> _Bucket | None:
        bucket = self._buckets.get(source)
        if bucket is not None:
            bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) / self._refill)
            bucket.updated = now
        return bucket

    def retry_after(self, source: str) -> int | None:
        """Whole seconds until `source` may try again, or None when it may now."""
        now = self._clock()
        bucket = self._current(source, now)
        if bucket is None or bucket.tokens >= 1:
            return None
        return max(1, math.ceil((1 - bucket.tokens) * self._refill))

    def failed(self, source: str) -> None:
        now = self._clock()
        bucket = self._current(source, now) or _Bucket(float(self._burst), now)
        bucket.tokens = max(0.0, bucket.tokens - 1)
        self._buckets[source] = bucket
        self._buckets.move_to_end(source)
        while len(self._buckets) > MAX_SOURCES:
            self._buckets.popitem(last=False)


@dataclass
class _Window:
    started: float
    suppressed: int = 0
    what: set[str] = field(default_factory=set)


class FailureLog:
    """One WARNING for an address's first failure in an interval; the failures after it in that
    interval are counted and summed up in one line when the address next fails after the interval."""

    def __init__(self, interval_seconds: float, clock: Monotonic = time.monotonic) -> None:
        self._interval = interval_seconds
        self._clock = clock
        self._windows: OrderedDict[str, _Window] = OrderedDict()
        self._lines_started = -math.inf
        self._lines = 0

    def _may_log(self, now: float) -> bool:
        if now - self._lines_started >= self._interval:
            self._lines_started, self._lines = now, 0
        self._lines += 1
        if self._lines == MAX_LOG_LINES_PER_INTERVAL + 1:
            log.warning(
                "more failed authentications than %d log lines in %.0f s; the rest of this interval is "
                "not logged",
                MAX_LOG_LINES_PER_INTERVAL,
                self._interval,
            )
        return self._lines <= MAX_LOG_LINES_PER_INTERVAL

    def failed(self, kind: str, source: str, credential: str, reason: str) -> None:
        """`credential` names what was presented without revealing it (a key's lookup prefix)."""
        now = self._clock()
        window = self._windows.get(source)
        if window is not None and now - window.started < self._interval:
            window.suppressed += 1
            if len(window.what) < 5:
                window.what.add(f"{kind} {credential}")
            return
        if window is not None and window.suppressed and self._may_log(now):
            log.warning(
                "%d more failed authentications from %s in the %.0f s after the last line (%s)",
                window.suppressed,
                source,
                self._interval,
                ", ".join(sorted(window.what)),
            )
        self._windows[source] = _Window(now)
        self._windows.move_to_end(source)
        while len(self._windows) > MAX_SOURCES:
            self._windows.popitem(last=False)
        if self._may_log(now):
            log.warning("failed %s authentication from %s: %s (%s)", kind, source, reason, credential)
