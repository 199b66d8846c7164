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
