"""The roles a user may have. Its own module (no database imports) so the CLI can parse `-role` quickly."""

from __future__ import annotations

import enum


class Role(enum.StrEnum):
    ADMIN = "admin"  # everything
    OPERATOR = "operator"  # enroll, collect, renew, revoke, scan
    AUDITOR = "auditor"  # read only
