"""Messages on the connector channel (`/connector/v1/...`). Unknown fields are ignored on input so a
newer minor version can add fields; certificates travel as PEM text."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from caconnector.protocol.errors import JobErrorCode
from caconnector.protocol.text import (
    Blob,
    Id,
    JsonObject,
    Name,
    Pem,
    Prose,
    Ref,
    Short,
    Version,
    bounded_list,
    line,
)
from caconnector.protocol.version import PROTOCOL_VERSION

CHANNEL_PREFIX = "/connector/v1"
REGISTER_PATH = f"{CHANNEL_PREFIX}/register"
HELLO_PATH = f"{CHANNEL_PREFIX}/hello"
POLL_PATH = f"{CHANNEL_PREFIX}/poll"
INVENTORY_PATH = f"{CHANNEL_PREFIX}/inventory"
GOODBYE_PATH = f"{CHANNEL_PREFIX}/goodbye"


class Message(BaseModel):
    # NaN and infinity are refused: they are not JSON, and PostgreSQL would refuse to store them.
    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)


# An installation token is "cat_" and 32 base64url characters; the bound leaves room, not more.
Token = Annotated[str, line(256)]
Hostname = Annotated[str, line(255)]
ProtocolVersion = Annotated[str, line(16)]
Seconds = Annotated[float, Field(ge=0, le=366 * 24 * 3600)]


# ---- registration ---------------------------------------------------------------------------------


class RegisterRequest(Message):
    token: Token
    public_key: Pem = Field(description="the connector's public key, PEM SubjectPublicKeyInfo")
    hostname: Hostname
    version: Version = Field(description="the connector's software version")
    protocol_version: ProtocolVersion = PROTOCOL_VERSION
    force: bool = Field(default=False, description="replace an existing registration (the restore flow)")


class RegisterResponse(Message):
    connector_id: Id
    name: Name
    protocol_version: ProtocolVersion = PROTOCOL_VERSION
    poll_wait_seconds: Seconds
    inventory_interval_seconds: Seconds


class HelloResponse(Message):
    connector_id: Id
    name: Name
    status: Short
    protocol_version: ProtocolVersion = PROTOCOL_VERSION


# ---- inventory ------------------------------------------------------------------------------------


class CAReport(Message):
    id: Ref
    name: Ref
    subject: Annotated[str, line(4096)]
    key_type: Short
    serial: Version
    not_after: dt.datetime | None = None
    state: Short = "active"
    certificate_pem: Pem | None = None
    crl_der_b64: Blob | None = Field(
        default=None, description="the CA's latest CRL, DER in base64, where the backend publishes one"
    )


class OrganizationReport(Message):
    """An organization as the CA validates it (DigiCert, Entrust): requests naming it wait until then."""

    id: Ref
    name: Ref
    status: Short = Field(description="`validated` when the CA will issue for it; anything else when not")
    validated_until: dt.datetime | None = None


class ProductReport(Message):
    """Something the CA lets one order (DigiCert's product name id, Entrust's certType)."""

    id: Ref
    name: Ref
    type: Short | None = None
    ca_ids: Annotated[list[Ref], bounded_list()] = Field(
        default=[], description="the CAs it may issue from, where the CA says (DigiCert private SSL)"
    )


class BackendReport(Message):
    name: Name
    type: Short
    status: Literal["Available", "Offline"]
    error: Prose | None = None
    cas: Annotated[list[CAReport], bounded_list()] = []
    templates: Annotated[list[Ref], bounded_list()] = []
    products: Annotated[list[ProductReport], bounded_list()] = []
    organizations: Annotated[list[OrganizationReport], bounded_list()] = []


class InventoryReport(Message):
    hostname: Hostname
    version: Version
    protocol_version: ProtocolVersion = PROTOCOL_VERSION
    backends: Annotated[list[BackendReport], bounded_list(256)]


# ---- jobs -----------------------------------------------------------------------------------------


class JobKind(enum.StrEnum):
    INVENTORY = "inventory"
    ENROLL = "enroll"
    COLLECT = "collect"
    REVOKE = "revoke"
    SCAN = "scan"
    CHECK = "check"


class EnrollPayload(Message):
    csr_pem: Pem
    request_id: Id = Field(description="the idempotency source for every CA call that takes a key")
    ca: Ref | None = None
    template: Ref | None = Field(default=None, description="AD CS and local CA: the template")
    product: Ref | None = Field(default=None, description="DigiCert and Entrust: the product")
    organization: Ref | None = Field(default=None, description="the organization, by the CA's id or name")
    validity_days: int | None = Field(default=None, ge=1, le=100 * 366)


class CollectPayload(Message):
    order_ref: Ref
    request_id: Id


class RevokePayload(Message):
    serial: Version
    reason: Short = "unspecified"
    ca: Ref | None = None


class ScanPayload(Message):
    since: dt.datetime | None = None


class JobMessage(Message):
    id: Id
    kind: JobKind
    backend: Name | None = Field(default=None, description="the connector-local backend name")
    payload: JsonObject = {}
    attempt: int = Field(default=1, ge=0, le=1_000_000)
    lease_expires_at: dt.datetime


class ErrorBody(Message):
    # A code this version knows becomes its member; another (a newer connector's) is kept as sent, not
    # mapped to a default: the manager stores and shows it, and its policy follows `retryable` for it.
    code: Annotated[JobErrorCode | Short, Field(union_mode="left_to_right")]
    message: Prose
    retryable: bool = False
    retry_after: Seconds | None = None


class RenewalWindowBody(Message):
    """The CA's suggested renewal window (ACME Renewal Information, RFC 9773)."""

    start: dt.datetime
    end: dt.datetime
    explanation_url: Annotated[str, line(2048)] | None = None


class IssuedBody(Message):
    certificate_pem: Pem
    chain_pem: Annotated[list[Pem], bounded_list(16)] = Field(
        description="issuer first, up to and including the root"
    )
    order_ref: Ref | None = None
    renewal_window: RenewalWindowBody | None = None


class PendingBody(Message):
    order_ref: Ref
    reason: Prose
    retry_after: Seconds | None = None


class JobOutcome(enum.StrEnum):
    # result: IssuedBody (enroll/collect), BackendReport (check/inventory), ScanBody (scan),
    # RevokeBody (revoke: {} or {"crl_der_b64": ...})
    OK = "ok"
    PENDING = "pending"  # result: PendingBody
    ERROR = "error"  # error: ErrorBody


class ScanBody(Message):
    certificates: Annotated[list[IssuedBody], bounded_list(10_000)]


class RevokeBody(Message):
    crl_der_b64: Blob | None = Field(
        default=None, description="the CA's CRL made after the revocation, DER in base64, where it has one"
    )
    requested: Prose | None = Field(
        default=None,
        description="set when the CA took the revocation as a request still to be approved there (DigiCert):"
        " why; the certificate is not revoked yet",
    )


class JobResult(Message):
    job_id: Id
    outcome: JobOutcome
    result: JsonObject | None = None
    error: ErrorBody | None = None


class PollRequest(Message):
    results: Annotated[list[JobResult], bounded_list()] = []
    running: Annotated[list[Id], bounded_list()] = Field(
        default=[], description="ids of jobs still running: their leases are extended"
    )
    capacity: int = Field(default=4, ge=0, le=64)
    wait_seconds: float | None = Field(default=None, ge=0, le=60)
    protocol_version: ProtocolVersion = PROTOCOL_VERSION


class PollResponse(Message):
    jobs: Annotated[list[JobMessage], bounded_list(64)] = []
    acknowledged: Annotated[list[Id], bounded_list()] = Field(
        default=[], description="job ids whose results the manager stored"
    )
    server_time: dt.datetime
