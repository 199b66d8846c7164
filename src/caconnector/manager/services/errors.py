"""The manager's one error tree: what a service refuses, grouped by what the caller can do about it.

Every service raises these, nothing else for a refusal the caller can fix. The API turns each into a
problem document in one place (`problems.install_handlers`) and the CLI into an exit and a -json code in
one place (`cli._failure`); `code` becomes the problem's `code` and `message` its `detail`.
"""

from __future__ import annotations


class ManagerError(ValueError):
    """The request cannot be done as asked (API 422, CLI exit 1 `failed`).

    A ValueError, as the per-service errors it replaces were, so a caller that guards a parse with
    `except ValueError` keeps its meaning. Named for the program: the connector and the backends have
    error trees of their own, with other meanings.
    """

    default_code = "invalid_request"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code


class Invalid(ManagerError):
    """The input is wrong: fix it and ask again (API 422)."""


class NotFound(ManagerError):
    """The thing named does not exist (API 404, CLI `not_found`)."""

    default_code = "not_found"


class Conflict(ManagerError):
    """The thing's current state forbids it (API 409, CLI `conflict`): not issued yet, already revoked,
    name taken."""

    default_code = "conflict"
