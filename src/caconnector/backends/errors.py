"""The typed error tree every backend raises. The type says what happens next; the manager owns retries.

Each backend module translates its SDK's exceptions into these in exactly one place.
"""

from __future__ import annotations

from caconnector.protocol.errors import JobErrorCode


class BackendError(Exception):
    """Base of every error a backend raises. `code` travels on the wire with `message` and `retryable`."""

    code: JobErrorCode = JobErrorCode.BACKEND_ERROR
    retryable = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(BackendError):
    """The backend's configuration is wrong or incomplete: fix it with `backend update`."""

    code = JobErrorCode.CONFIG_ERROR


class AuthError(BackendError):
    """The CA refused the credentials: the operator must supply new ones."""

    code = JobErrorCode.AUTH_ERROR


class Rejected(BackendError):
    """The CA refused this request for good (bad CSR, policy, unknown serial). Retrying cannot help."""

    code = JobErrorCode.REJECTED


class NotSupported(BackendError):
    """This backend (or this CA tier) cannot do what was asked."""

    code = JobErrorCode.NOT_SUPPORTED


class Transient(BackendError):
    """Try again later: timeouts, throttling, 5xx. `retry_after` is in seconds when the CA said so."""

    code = JobErrorCode.TRANSIENT
    retryable = True

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
