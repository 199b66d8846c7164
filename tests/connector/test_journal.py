"""The job journal: redeliveries answered from it, crash recovery by kind, acknowledgement and pruning."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from caconnector.connector.journal import SAFE_TO_REPEAT, Delivery, Journal
from caconnector.protocol.messages import ErrorBody, JobKind, JobMessage, JobOutcome, JobResult
from caconnector.testing import Clock

START = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)


def _job(job_id: str = "j-1", kind: JobKind = JobKind.ENROLL) -> JobMessage:
    return JobMessage(
        id=job_id, kind=kind, backend="LocalCA", lease_expires_at=START + dt.timedelta(minutes=5)
    )


def _ok(job_id: str = "j-1") -> JobResult:
    return JobResult(job_id=job_id, outcome=JobOutcome.OK, result={"certificate_pem": "PEM", "chain_pem": []})


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def journal(tmp_path: Path, clock: Clock) -> Iterator[Journal]:
    with Journal(tmp_path / "journal.sqlite", now=clock) as opened:
        yield opened


def test_a_redelivered_job_is_answered_from_the_journal(journal: Journal) -> None:
    assert journal.begin(_job(), "run-a") is Delivery.RUN
    journal.finish(_ok())
    assert journal.unacknowledged() == [_ok()]
    journal.acknowledge(["j-1"])
    assert journal.unacknowledged() == []

    # The manager delivers it again (it lost our answer): not run, and the stored result goes out again.
    assert journal.begin(_job(), "run-a") is Delivery.ANSWERED
    assert journal.unacknowledged() == [_ok()]
    entry = journal.get("j-1")
    assert entry is not None and entry.attempts == 1 and entry.state == "done"


def test_a_job_running_in_this_process_is_neither_run_nor_answered(journal: Journal) -> None:
    assert journal.begin(_job(), "run-a") is Delivery.RUN
    assert journal.begin(_job(), "run-a") is Delivery.RUNNING
    assert journal.unacknowledged() == []


def test_a_job_interrupted_by_a_crash_is_run_again_when_safe(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "journal.sqlite"
    with Journal(path, now=clock) as before_crash:
        assert before_crash.begin(_job(), "run-a") is Delivery.RUN
    with Journal(path, now=clock) as after_restart:
        assert after_restart.begin(_job(), "run-b") is Delivery.RUN
        entry = after_restart.get("j-1")
        assert entry is not None and entry.attempts == 2


def test_every_current_kind_is_safe_to_repeat() -> None:
    # The rule is documented in the module: enroll is idempotent on request_id, the rest only read or
    # are idempotent at the CA. A new kind must be added here deliberately.
    assert {JobKind(kind) for kind in SAFE_TO_REPEAT} == set(JobKind)


def test_an_interrupted_job_of_a_kind_not_safe_to_repeat_is_answered_interrupted(
    tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "journal.sqlite"
    with Journal(path, now=clock) as before_crash:
        before_crash.begin(_job(kind=JobKind.REVOKE), "run-a")
    with Journal(path, now=clock, safe_to_repeat=frozenset()) as after_restart:
        assert after_restart.begin(_job(kind=JobKind.REVOKE), "run-b") is Delivery.ANSWERED
        [result] = after_restart.unacknowledged()
    assert result.outcome is JobOutcome.ERROR
    assert result.error is not None and result.error.code == "interrupted" and not result.error.retryable


def test_results_are_kept_for_late_redeliveries_then_pruned(journal: Journal, clock: Clock) -> None:
    for job_id in ("old", "recent", "never-acked"):
        journal.begin(_job(job_id), "run-a")
        journal.finish(_ok(job_id))
    journal.acknowledge(["old"])
    clock.advance(days=5)
    journal.acknowledge(["recent"])
    clock.advance(days=3)  # "old" was acknowledged 8 days ago, "recent" 3 days ago

    assert journal.prune() == 1
    assert journal.get("old") is None
    assert journal.get("recent") is not None
    assert journal.begin(_job("recent"), "run-a") is Delivery.ANSWERED  # a late redelivery still answered
    assert {r.job_id for r in journal.unacknowledged()} == {"recent", "never-acked"}

    clock.advance(days=23)  # "never-acked" finished 31 days ago; "recent" is unacknowledged again
    assert journal.prune() == 2
    assert journal.unacknowledged() == []


def test_unreadable_jobs_and_abandoned_ones(journal: Journal) -> None:
    journal.record_unreadable("j-x", "kind: 'teleport' is not a job kind")
    [result] = journal.unacknowledged()
    assert result.error == ErrorBody(
        code="not_supported",
        message="this version of ca-connector cannot read the job (kind: 'teleport' is not a job kind); "
        "update it",
    )
    journal.begin(_job("j-2"), "run-a")
    journal.abandon("j-2")
    assert journal.get("j-2") is None
    assert journal.begin(_job("j-2"), "run-a") is Delivery.RUN


def test_the_journal_file_is_private(journal: Journal) -> None:
    assert journal.path.stat().st_mode & 0o077 == 0
