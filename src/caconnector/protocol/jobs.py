"""The job contract: for each job kind, the one payload type it carries and the result types it answers
with, tied to the kind by the type system (`TypedJob`, a union discriminated by `kind`).

On the wire a job travels as the `JobMessage` envelope, its payload a JSON object: one job that this
version cannot read must become that job's `invalid_job` answer, not a poll nobody can read, so the
envelope is read first and each job is typed on its own by `read_job`. The manager builds the payloads
from these types (`manager.services.jobs_factory`); the connector runs the typed job
(`connector.jobs.JobRunner`), each kind's handler returning its kind's result type.

`check` is the one job about a single backend: an `inventory` job that names a backend (an older
manager's way to ask) is read as a `check`.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, ClassVar, Literal

from pydantic import Field, TypeAdapter

from caconnector.protocol.messages import (
    BackendReport,
    CollectPayload,
    EnrollPayload,
    InventoryReport,
    IssuedBody,
    JobKind,
    JobMessage,
    Message,
    PendingBody,
    RevokeBody,
    RevokePayload,
    ScanBody,
    ScanPayload,
)
from caconnector.protocol.text import Id, Name


class CheckPayload(Message):
    """A check carries nothing: the job names its backend."""


class InventoryPayload(Message):
    """An inventory of the whole connector carries nothing."""


class _TypedJob(Message):
    id: Id
    backend: Name | None = None
    attempt: int = Field(default=1, ge=0, le=1_000_000)
    lease_expires_at: dt.datetime

    # What an answer of outcome `ok` holds, and whether the kind may answer `pending` (a PendingBody).
    ok_result: ClassVar[type[Message]]
    may_pend: ClassVar[bool] = False


class EnrollJob(_TypedJob):
    kind: Literal[JobKind.ENROLL] = JobKind.ENROLL
    backend: Name
    payload: EnrollPayload
    ok_result: ClassVar[type[Message]] = IssuedBody
    may_pend: ClassVar[bool] = True


class CollectJob(_TypedJob):
    kind: Literal[JobKind.COLLECT] = JobKind.COLLECT
    backend: Name
    payload: CollectPayload
    ok_result: ClassVar[type[Message]] = IssuedBody
    may_pend: ClassVar[bool] = True


class RevokeJob(_TypedJob):
    kind: Literal[JobKind.REVOKE] = JobKind.REVOKE
    backend: Name
    payload: RevokePayload
    ok_result: ClassVar[type[Message]] = RevokeBody


class ScanJob(_TypedJob):
    kind: Literal[JobKind.SCAN] = JobKind.SCAN
    backend: Name
    payload: ScanPayload = ScanPayload()
    ok_result: ClassVar[type[Message]] = ScanBody


class CheckJob(_TypedJob):
    kind: Literal[JobKind.CHECK] = JobKind.CHECK
    backend: Name
    payload: CheckPayload = CheckPayload()
    ok_result: ClassVar[type[Message]] = BackendReport


class InventoryJob(_TypedJob):
    kind: Literal[JobKind.INVENTORY] = JobKind.INVENTORY
    backend: None = None
    payload: InventoryPayload = InventoryPayload()
    ok_result: ClassVar[type[Message]] = InventoryReport


TypedJob = Annotated[
    EnrollJob | CollectJob | RevokeJob | ScanJob | CheckJob | InventoryJob, Field(discriminator="kind")
]
JOB_TYPES: dict[JobKind, type[_TypedJob]] = {
    JobKind.ENROLL: EnrollJob,
    JobKind.COLLECT: CollectJob,
    JobKind.REVOKE: RevokeJob,
    JobKind.SCAN: ScanJob,
    JobKind.CHECK: CheckJob,
    JobKind.INVENTORY: InventoryJob,
}
Payload = EnrollPayload | CollectPayload | RevokePayload | ScanPayload | CheckPayload | InventoryPayload
# Every result a job answers with; `result_type` says which a kind's answer holds.
Answer = IssuedBody | PendingBody | RevokeBody | ScanBody | BackendReport | InventoryReport

_TYPED_JOB: TypeAdapter[TypedJob] = TypeAdapter(TypedJob)


def read_job(job: JobMessage) -> TypedJob:
    """The typed job an envelope carries. Raises pydantic's ValidationError when its payload (or a
    backend it must name) is not what its kind needs."""
    data = job.model_dump()
    if job.kind is JobKind.INVENTORY and job.backend:
        data["kind"] = JobKind.CHECK
    return _TYPED_JOB.validate_python(data)


def envelope(job: TypedJob) -> JobMessage:
    """The wire form of a typed job."""
    return JobMessage(
        id=job.id,
        kind=job.kind,
        backend=job.backend,
        payload=job.payload.model_dump(mode="json"),
        attempt=job.attempt,
        lease_expires_at=job.lease_expires_at,
    )


def result_type(kind: JobKind, outcome_pending: bool = False) -> type[Message]:
    """What a `kind` job's answer holds: its ok result, or a PendingBody for a pending answer."""
    job_type = JOB_TYPES[kind]
    if outcome_pending:
        if not job_type.may_pend:
            raise ValueError(f"a {kind.value} job cannot answer pending")
        return PendingBody
    return job_type.ok_result
