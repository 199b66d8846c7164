"""The retry policy, exhaustively, with a fixed clock and seeded jitter: no database, no time passing."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest

from caconnector.manager.services.retry import (
    MAX_RETRY_AFTER_SECONDS,
    PERMANENT_CODES,
    Fail,
    Retry,
    RetryPolicy,
)
from caconnector.protocol.messages import ErrorBody

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
TRANSIENT = ErrorBody(code="transient", message="CA answered 503", retryable=True)


def policy(seed: int = 7, **overrides: Any) -> RetryPolicy:
    return RetryPolicy(rng=random.Random(seed), **overrides)  # noqa: S311 - jitter, not cryptography


def delay(decision: Retry | Fail) -> float:
    assert isinstance(decision, Retry), decision
    return (decision.at - NOW).total_seconds()


def test_without_jitter_the_delays_double_from_the_base_up_to_the_cap() -> None:
    flat = policy(jitter=0.0, max_attempts=100)
    delays = [delay(flat.decide(TRANSIENT, n, NOW)) for n in range(1, 12)]
    assert delays == [5, 10, 20, 40, 80, 160, 320, 640, 900, 900, 900]


def test_jitter_only_shortens_and_stays_within_its_fraction() -> None:
    jittery = policy(max_attempts=100)
    for attempts in range(1, 40):
        full = min(900.0, 5.0 * 2 ** (attempts - 1))
        seconds = delay(jittery.decide(TRANSIENT, attempts, NOW))
        assert full * 0.75 <= seconds <= full


def test_jitter_spreads_requests_that_failed_together() -> None:
    jittery = policy()
    assert len({delay(jittery.decide(TRANSIENT, 3, NOW)) for _ in range(20)}) > 10


def test_the_same_seed_gives_the_same_delays() -> None:
    first = [delay(policy(seed=3).decide(TRANSIENT, n, NOW)) for n in range(1, 6)]
    again = [delay(policy(seed=3).decide(TRANSIENT, n, NOW)) for n in range(1, 6)]
    assert first == again


def test_retry_after_wins_when_it_asks_for_longer_and_is_capped_at_a_day() -> None:
    flat = policy(jitter=0.0)
    slow_down = ErrorBody(code="transient", message="429", retryable=True, retry_after=120)
    assert delay(flat.decide(slow_down, 1, NOW)) == 120  # longer than the 5 s back-off
    assert delay(flat.decide(slow_down, 7, NOW)) == 320  # the back-off is longer by now
    absurd = slow_down.model_copy(update={"retry_after": 10 * MAX_RETRY_AFTER_SECONDS})
    assert delay(flat.decide(absurd, 1, NOW)) == MAX_RETRY_AFTER_SECONDS


def test_it_gives_up_after_max_attempts_naming_the_last_error() -> None:
    capped = policy(max_attempts=3)
    assert isinstance(capped.decide(TRANSIENT, 2, NOW), Retry)
    assert capped.decide(TRANSIENT, 3, NOW) == Fail("gave up after 3 attempts: CA answered 503", "transient")


@pytest.mark.parametrize("code", sorted(PERMANENT_CODES))
def test_permanent_codes_fail_at_once_whatever_the_flag_says(code: str) -> None:
    error = ErrorBody(code=code, message=f"{code} happened", retryable=True)
    assert policy().decide(error, 1, NOW) == Fail(f"{code} happened", code)


def test_unknown_codes_follow_the_retryable_flag() -> None:
    assert isinstance(
        policy().decide(ErrorBody(code="new_thing", message="m", retryable=True), 1, NOW), Retry
    )
    assert policy().decide(ErrorBody(code="new_thing", message="m"), 1, NOW) == Fail("m", "new_thing")


def test_no_error_body_is_retried_like_a_transient_error() -> None:
    flat = policy(jitter=0.0, max_attempts=2)
    assert delay(flat.decide(None, 1, NOW)) == 5
    failed = flat.decide(None, 2, NOW)
    assert isinstance(failed, Fail)
    assert failed.reason.startswith("gave up after 2 attempts")


def test_pending_orders_are_collected_at_the_later_of_retry_after_and_the_back_off() -> None:
    flat = policy(jitter=0.0)
    assert flat.collect_at(600, 1, NOW) == NOW + dt.timedelta(seconds=600)
    assert flat.collect_at(None, 1, NOW) == NOW + dt.timedelta(seconds=5)
    assert flat.collect_at(30, 4, NOW) == NOW + dt.timedelta(seconds=40)
    # Never given up on: the 1000th collect is as welcome as the first, every 15 minutes.
    assert flat.collect_at(None, 1000, NOW) == NOW + dt.timedelta(seconds=900)


def test_absurd_attempt_counts_do_not_overflow() -> None:
    assert delay(policy(jitter=0.0, max_attempts=10**9).decide(TRANSIENT, 10**6, NOW)) == 900
