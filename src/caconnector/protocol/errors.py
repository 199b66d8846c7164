"""Error codes the manager's connector channel answers with, inside RFC 9457 problem documents
(`{"type", "title", "status", "detail", "code"}`). The connector acts on `code`, never on prose."""

from __future__ import annotations

import enum


class ChannelError(enum.StrEnum):
    # Error codes, not credentials (ruff S105 reads "token" as a password).
    TOKEN_INVALID = "token_invalid"  # noqa: S105  # no such installation token
    TOKEN_USED = "token_used"  # noqa: S105  # single use: a failed install needs a new token
    TOKEN_EXPIRED = "token_expired"  # noqa: S105
    ALREADY_REGISTERED = "already_registered"  # register again only with -force and a restore token
    SIGNATURE_INVALID = "signature_invalid"  # missing, malformed, expired, or not for this method/path
    REPLAYED = "replayed"  # a signed request id seen before
    CONNECTOR_UNKNOWN = "connector_unknown"  # deleted, or never existed
    CONNECTOR_EXPIRED = "connector_expired"  # not seen for too long: restore it
    PROTOCOL_VERSION = "protocol_version"
    INVALID_REQUEST = "invalid_request"


# What the connector should do about each code: these mean "stop using this registration".
FATAL_FOR_REGISTRATION = frozenset(
    {ChannelError.CONNECTOR_UNKNOWN, ChannelError.CONNECTOR_EXPIRED, ChannelError.PROTOCOL_VERSION}
)


class JobErrorCode(enum.StrEnum):
    """The `code` of a job's error (`ErrorBody.code`): what happens next is decided by it, in the manager's
    retry policy. The values are the wire strings; a newer peer may send a code not listed here."""

    # Raised by backends (`backends/errors.py`, one class each).
    BACKEND_ERROR = "backend_error"  # the base class: no more specific type applies
    CONFIG_ERROR = "config_error"
    AUTH_ERROR = "auth_error"
    REJECTED = "rejected"
    NOT_SUPPORTED = "not_supported"  # also: a job this connector version cannot read
    TRANSIENT = "transient"  # also: a try that ended with no answer (a lease ran out)
    # Set by the connector around a backend.
    INVALID_JOB = "invalid_job"
    INTERNAL_ERROR = "internal_error"
    # Set by the manager.
    INVALID_RESULT = "invalid_result"  # the connector's answer cannot be used
    UNDELIVERABLE = "undeliverable"  # delivered too many times without an answer
