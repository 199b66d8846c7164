"""`/api/v1/jobs`: follow a job the manager gave a connector."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from caconnector.manager.api.params import PathKey
from caconnector.manager.auth import Reader
from caconnector.manager.db.models import Job
from caconnector.manager.problems import not_found
from caconnector.manager.runtime import runtime_of

router = APIRouter(prefix="/jobs", tags=["jobs"])


class JobOut(BaseModel):
    id: str
    kind: str
    status: str = Field(description="queued | leased (handed to the connector) | done")
    connector: str = Field(description="the connector's id")
    backend: str | None = Field(description="the connector-local backend name")
    attempts: int = Field(description="how many times the job was handed out")
    outcome: str | None = Field(description="ok | pending | error, once done")
    error: dict[str, Any] | None = Field(description="{code, message, retryable} when the outcome is error")
    result: dict[str, Any] | None
    created_at: dt.datetime
    completed_at: dt.datetime | None

    @classmethod
    def of(cls, job: Job) -> JobOut:
        return cls(
            id=job.id,
            kind=job.kind,
            status=job.status,
            connector=job.connector_id,
            backend=job.backend_name,
            attempts=job.attempts,
            outcome=job.outcome,
            error=job.error,
            result=job.result,
            created_at=job.created_at,
            completed_at=job.completed_at,
        )


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: PathKey, request: Request, _caller: Reader) -> JobOut:
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise not_found("job", job_id)
        return JobOut.of(job)
