"""Protocol versioning: majors must match, minors may differ (unknown fields are ignored on input)."""

from __future__ import annotations

PROTOCOL_VERSION = "1.0"


class IncompatibleProtocol(ValueError):
    pass


def major_of(version: str) -> int:
    try:
        return int(version.split(".", 1)[0])
    except ValueError:
        raise IncompatibleProtocol(f"malformed protocol version {version!r}; expected MAJOR.MINOR") from None


def check_compatible(theirs: str, ours: str = PROTOCOL_VERSION) -> None:
    """Raise IncompatibleProtocol unless the peer speaks the same major version."""
    if major_of(theirs) != major_of(ours):
        raise IncompatibleProtocol(
            f"protocol version {theirs} is not compatible with {ours}; update the older of "
            "ca-manager and ca-connector so both speak the same major version"
        )
