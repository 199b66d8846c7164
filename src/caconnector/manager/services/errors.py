"""Errors of the certificate services, grouped by what the caller can do about them. The API turns
each into a problem document (see api.errors); `code` becomes the problem's `code`."""

from __future__ import annotations


class ServiceError(ValueError):
    """The request cannot be done as asked; the caller can fix it (API 422)."""

    default_code = "invalid_request"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code


class NotFound(ServiceError):
    """The thing named in the path does not exist (API 404)."""

    default_code = "not_found"


class Conflict(ServiceError):
    """The thing's current state forbids it (API 409): not issued yet, already revoked, name taken."""

    default_code = "conflict"
