"""The job contract: every kind has one typed job, read from the wire envelope on its own, and its
result type; an inventory that names a backend is a check."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path

import pytest
from pydantic import ValidationError

from caconnector.connector.jobs import JobRunner
from caconnector.connector.store import ConnectorStore
from caconnector.protocol.jobs import (
    JOB_TYPES,
    CheckJob,
    EnrollJob,
    InventoryJob,
    envelope,
    read_job,
    result_type,
)
from caconnector.protocol.messages import (
    BackendReport,
    IssuedBody,
    JobKind,
    JobMessage,
    JobOutcome,
    PendingBody,
    RevokeBody,
)
from caconnector.testing import make_csr_pem

LEASE = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def _message(kind: JobKind, payload: Mapping[str, object], backend: str | None = "ca1") -> JobMessage:
    return JobMessage(id="j-1", kind=kind, backend=backend, payload=dict(payload), lease_expires_at=LEASE)


def test_every_kind_has_a_typed_job_of_that_kind() -> None:
    assert set(JOB_TYPES) == set(JobKind)
    for kind, job_type in JOB_TYPES.items():
        assert job_type.model_fields["kind"].default is kind


def test_an_enroll_envelope_reads_as_an_enroll_job_and_back() -> None:
    payload = {"csr_pem": make_csr_pem(), "request_id": "r-1", "product": "ssl_plus", "organization": "7"}
    job = read_job(_message(JobKind.ENROLL, payload))
    assert isinstance(job, EnrollJob)
    assert (job.payload.product, job.payload.organization) == ("ssl_plus", "7")
    assert read_job(envelope(job)) == job


def test_an_inventory_naming_a_backend_is_a_check() -> None:
    assert isinstance(read_job(_message(JobKind.INVENTORY, {})), CheckJob)
    assert isinstance(read_job(_message(JobKind.INVENTORY, {}, backend=None)), InventoryJob)


def test_a_job_about_a_backend_must_name_one() -> None:
    with pytest.raises(ValidationError):
        read_job(_message(JobKind.CHECK, {}, backend=None))


def test_result_types_follow_the_kind() -> None:
    assert result_type(JobKind.ENROLL) is IssuedBody
    assert result_type(JobKind.COLLECT, outcome_pending=True) is PendingBody
    assert result_type(JobKind.REVOKE) is RevokeBody
    assert result_type(JobKind.CHECK) is BackendReport
    with pytest.raises(ValueError, match="cannot answer pending"):
        result_type(JobKind.REVOKE, outcome_pending=True)


def test_the_runner_answers_an_unreadable_job_with_invalid_job(tmp_path: Path) -> None:
    runner = JobRunner(ConnectorStore(tmp_path / "c"), "host")
    result = runner.run(_message(JobKind.ENROLL, {"request_id": "r-1"}))
    assert result.outcome is JobOutcome.ERROR
    assert result.error is not None
    assert result.error.code == "invalid_job"
    assert "csr_pem" in result.error.message
    answer = runner.run(_message(JobKind.CHECK, {}, backend=None))
    assert answer.error is not None
    assert answer.error.message == "the check job is not valid (a check job must name a backend)"
