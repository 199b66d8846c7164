"""The retry policy: the one place that decides what happens after a try that did not issue.

The error's *code* decides (style: "the error type decides what happens next"): `transient` (timeouts,
throttling, 5xx, which backends map to it) is tried again with exponential back-off and jitter, up to
`max_attempts` failures in a row; every other known code is final at once, since asking the same CA the
same thing again gives the same answer (`ON_ERROR` decides each `JobErrorCode`). The bare
`backend_error`, and a code this version does not know, follow the wire's `retryable` flag. A pending
order is not a failure: it is collected again, never given up on here (the CA says when it is rejected).

Jitter spreads the retries of many requests that failed together (a CA outage) so they do not all
return at the same instant; it only ever shortens a delay, so the cap holds.
"""

from __future__ import annotations

import datetime as dt
import enum
import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from caconnector.protocol.errors import JobErrorCode
from caconnector.protocol.messages import ErrorBody


class OnError(enum.Enum):
    """What a failed try's error code means for the next try."""

    RETRY = "retry"  # with back-off, up to `max_attempts` failures in a row
    FINAL = "final"  # at once: the request, the configuration or the credentials must change first
    AS_FLAGGED = "as_flagged"  # the wire's `retryable` flag decides


# Every code decided here (a test checks none is left out, so a new code cannot be added undecided).
ON_ERROR: Mapping[JobErrorCode, OnError] = {
    JobErrorCode.TRANSIENT: OnError.RETRY,
    JobErrorCode.REJECTED: OnError.FINAL,
    JobErrorCode.CONFIG_ERROR: OnError.FINAL,
    JobErrorCode.AUTH_ERROR: OnError.FINAL,
    JobErrorCode.NOT_SUPPORTED: OnError.FINAL,
    JobErrorCode.INVALID_RESULT: OnError.FINAL,
    JobErrorCode.INVALID_JOB: OnError.FINAL,
    JobErrorCode.INTERNAL_ERROR: OnError.FINAL,
    JobErrorCode.UNDELIVERABLE: OnError.FINAL,
    # The base backend error says nothing more specific; the backend that raised it set the flag.
    JobErrorCode.BACKEND_ERROR: OnError.AS_FLAGGED,
}
PERMANENT_CODES = frozenset(code for code, on_error in ON_ERROR.items() if on_error is OnError.FINAL)

# A CA asking for more than a day is treated as asking for a day: the request stays visible and alive.
MAX_RETRY_AFTER_SECONDS = 24 * 3600.0
# 2**64 times any base is far past any cap; stops the float from overflowing on absurd attempt counts.
_MAX_EXPONENT = 64


@dataclass(frozen=True)
class Retry:
    """Try again at `at`."""

    at: dt.datetime


@dataclass(frozen=True)
class Fail:
    """Give up: the certificate fails with `reason`; `code` is the last error's."""

    reason: str
    code: JobErrorCode | str  # a str: a code this version does not know, kept as the connector sent it


RetryDecision = Retry | Fail


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float = 5.0
    factor: float = 2.0
    cap_seconds: float = 15 * 60.0
    max_attempts: int = 10
    jitter: float = 0.25  # a delay is shortened by up to this fraction
    # Seeded in tests; jitter needs spread, not unpredictability, so a plain PRNG is right here.
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def backoff(self, attempts: int) -> float:
        """Seconds to wait after the `attempts`-th try (1-based), jitter included, never above the cap."""
        exponent = min(max(attempts, 1) - 1, _MAX_EXPONENT)
        delay = min(self.cap_seconds, self.base_seconds * self.factor**exponent)
        return delay * (1.0 - self.jitter * self.rng.random())

    def decide(self, error: ErrorBody | None, attempts: int, now: dt.datetime) -> RetryDecision:
        """After the `attempts`-th failed try in a row. `error` None: the try ended with no answer to go
        on (nothing says it cannot work), which is retried like a transient error."""
        if error is None:
            error = ErrorBody(
                code=JobErrorCode.TRANSIENT, message="the try ended without an answer", retryable=True
            )
        if not _retryable(error):
            return Fail(error.message, error.code)
        if attempts >= self.max_attempts:
            return Fail(f"gave up after {attempts} attempts: {error.message}", error.code)
        return Retry(self._after(attempts, error.retry_after, now))

    def collect_at(self, retry_after: float | None, attempts: int, now: dt.datetime) -> dt.datetime:
        """When to collect a pending order again, after the `attempts`-th answer."""
        return self._after(attempts, retry_after, now)

    def _after(self, attempts: int, retry_after: float | None, now: dt.datetime) -> dt.datetime:
        # The CA's own retry_after wins when it asks for longer: sooner would only be refused again.
        wanted = min(retry_after or 0.0, MAX_RETRY_AFTER_SECONDS)
        return now + dt.timedelta(seconds=max(self.backoff(attempts), wanted))


def _retryable(error: ErrorBody) -> bool:
    try:
        on_error = ON_ERROR[JobErrorCode(error.code)]
    except ValueError:
        on_error = OnError.AS_FLAGGED  # a code this version does not know
    if on_error is OnError.AS_FLAGGED:
        return error.retryable
    return on_error is OnError.RETRY
