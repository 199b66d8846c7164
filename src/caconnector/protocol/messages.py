"""Messages on the connector channel (`/connector/v1/...`). Unknown fields are ignored on input so a
newer minor version can add fields; certificates travel as PEM text."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from caconnector.protocol.version import PROTOCOL_VERSION

CHANNEL_PREFIX = "/connector/v1"
REGISTER_PATH = f"{CHANNEL_PREFIX}/register"
HELLO_PATH = f"{CHANNEL_PREFIX}/hello"
POLL_PATH = f"{CHANNEL_PREFIX}/poll"
INVENTORY_PATH = f"{CHANNEL_PREFIX}/inventory"
GOODBYE_PATH = f"{CHANNEL_PREFIX}/goodbye"


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# ---- registration ---------------------------------------------------------------------------------


class RegisterRequest(Message):
    token: str
    public_key: str = Field(description="the connector's public key, PEM SubjectPublicKeyInfo")
    hostname: str
    version: str = Field(description="the connector's software version")
    protocol_version: str = PROTOCOL_VERSION
    force: bool = Field(default=False, description="replace an existing registration (the restore flow)")


class RegisterResponse(Message):
    connector_id: str
    name: str
    protocol_version: str = PROTOCOL_VERSION
    poll_wait_seconds: float
    inventory_interval_seconds: float


class HelloResponse(Message):
    connector_id: str
    name: str
    status: str
    protocol_version: str = PROTOCOL_VERSION


# ---- inventory ------------------------------------------------------------------------------------


class CAReport(Message):
    id: str
    name: str
    subject: str
    key_type: str
    serial: str
    not_after: dt.datetime | None = None
    state: str = "active"
    certificate_pem: str | None = None
    crl_der_b64: str | None = Field(
        default=None, description="the CA's latest CRL, DER in base64, where the backend publishes one"
    )


class OrganizationReport(Message):
    """An organization as the CA validates it (DigiCert, Entrust): requests naming it wait until then."""

    id: str
    name: str
    status: str = Field(description="`validated` when the CA will issue for it; anything else when not")
    validated_until: dt.datetime | None = None


class BackendReport(Message):
    name: str
    type: str
    status: Literal["Available", "Offline"]
    error: str | None = None
    cas: list[CAReport] = []
    templates: list[str] = []
    organizations: list[OrganizationReport] = []


class InventoryReport(Message):
    hostname: str
    version: str
    protocol_version: str = PROTOCOL_VERSION
    backends: list[BackendReport]


# ---- jobs -----------------------------------------------------------------------------------------


class JobKind(enum.StrEnum):
    INVENTORY = "inventory"
    ENROLL = "enroll"
    COLLECT = "collect"
    REVOKE = "revoke"
    SCAN = "scan"
    CHECK = "check"


class EnrollPayload(Message):
    csr_pem: str
    request_id: str = Field(description="the idempotency source for every CA call that takes a key")
    ca: str | None = None
    template: str | None = None
    validity_days: int | None = None


class CollectPayload(Message):
    order_ref: str
    request_id: str


class RevokePayload(Message):
    serial: str
    reason: str = "unspecified"
    ca: str | None = None


class ScanPayload(Message):
    since: dt.datetime | None = None


class Job(Message):
    id: str
    kind: JobKind
    backend: str | None = Field(default=None, description="the connector-local backend name")
    payload: dict[str, Any] = {}
    attempt: int = 1
    lease_expires_at: dt.datetime


class ErrorBody(Message):
    code: str
    message: str
    retryable: bool = False
    retry_after: float | None = None


class IssuedBody(Message):
    certificate_pem: str
    chain_pem: list[str] = Field(description="issuer first, up to and including the root")
    order_ref: str | None = None


class PendingBody(Message):
    order_ref: str
    reason: str
    retry_after: float | None = None


class JobOutcome(enum.StrEnum):
    # result: IssuedBody (enroll/collect), BackendReport (check/inventory), ScanBody (scan),
    # RevokeBody (revoke: {} or {"crl_der_b64": ...})
    OK = "ok"
    PENDING = "pending"  # result: PendingBody
    ERROR = "error"  # error: ErrorBody


class ScanBody(Message):
    certificates: list[IssuedBody]


class RevokeBody(Message):
    crl_der_b64: str | None = Field(
        default=None, description="the CA's CRL made after the revocation, DER in base64, where it has one"
    )


class JobResult(Message):
    job_id: str
    outcome: JobOutcome
    result: dict[str, Any] | None = None
    error: ErrorBody | None = None


class PollRequest(Message):
    results: list[JobResult] = []
    running: list[str] = Field(default=[], description="ids of jobs still running: their leases are extended")
    capacity: int = Field(default=4, ge=0, le=64)
    wait_seconds: float | None = Field(default=None, ge=0, le=60)
    protocol_version: str = PROTOCOL_VERSION


class PollResponse(Message):
    jobs: list[Job] = []
    acknowledged: list[str] = Field(default=[], description="job ids whose results the manager stored")
    server_time: dt.datetime
