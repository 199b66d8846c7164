"""The Google side of the `gcpcas` backend: the narrow client seam and the one place SDK errors are mapped.

`google-cloud-private-ca` is imported inside the functions here, never at module level, so the rest of
the backend loads without the `gcpcas` extra; building a client without it fails naming the extra.

The client always uses the REST transport (`transport="rest"`): plain HTTPS that proxies and TLS
inspection handle like any other traffic, and what the local test peer speaks. A REST quirk matters for
the mapping below: google-api-core builds its exception from the HTTP status alone, so ALREADY_EXISTS
and ABORTED both arrive as `Conflict` (409), INVALID_ARGUMENT and FAILED_PRECONDITION both as
`BadRequest` (400), RESOURCE_EXHAUSTED as `TooManyRequests` (429). The canonical status is only in the
JSON body (`{"error": {"code", "message", "status", "details"}}`), so `_status` reads it from there.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from caconnector.backends.configs import GcpcasConfig
from caconnector.backends.errors import AuthError, BackendError, ConfigError, Rejected, Transient
from caconnector.backends.registry import BackendTypeUnavailable

if TYPE_CHECKING:
    from google.cloud.security.privateca_v1 import (
        CaPool,
        Certificate,
        CertificateAuthority,
        CertificateTemplate,
        FetchCaCertsResponse,
    )

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
# Each call (each page of a list) gives up after this long. The client has no retry of its own for CA
# Service calls; retrying is the manager's job, on our Transient errors.
CALL_TIMEOUT_SECONDS = 30.0


class CasClient(Protocol):
    """The operations of `privateca_v1.CertificateAuthorityServiceClient` the backend uses.

    List calls return the SDK's pagers, which fetch further pages (`pageToken`) as they are iterated.
    """

    def list_ca_pools(self, request: dict[str, Any], *, timeout: float) -> Iterable[CaPool]: ...
    def list_certificate_authorities(
        self, request: dict[str, Any], *, timeout: float
    ) -> Iterable[CertificateAuthority]: ...
    def list_certificate_templates(
        self, request: dict[str, Any], *, timeout: float
    ) -> Iterable[CertificateTemplate]: ...
    def create_certificate(self, request: dict[str, Any], *, timeout: float) -> Certificate: ...
    def get_certificate(self, request: dict[str, Any], *, timeout: float) -> Certificate: ...
    def list_certificates(self, request: dict[str, Any], *, timeout: float) -> Iterable[Certificate]: ...
    def revoke_certificate(self, request: dict[str, Any], *, timeout: float) -> Certificate: ...
    def fetch_ca_certs(self, request: dict[str, Any], *, timeout: float) -> FetchCaCertsResponse: ...


def _unavailable(exc: ImportError) -> BackendTypeUnavailable:
    return BackendTypeUnavailable(
        f"backend type 'gcpcas' needs optional dependencies that are not installed ({exc.name}); "
        "install them with: pip install 'caconnector[gcpcas]'"
    )


def _is_loopback_http(endpoint: str | None) -> bool:
    if endpoint is None:
        return False
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    if parts.scheme != "http":
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def service_account_credentials(config: GcpcasConfig, backend: str) -> Any:
    """The credentials of the stored service account key, parsed without any network traffic.

    `backend add` calls this too, so a key whose private_key cannot be read is refused there and not
    first noticed by a job.
    """
    try:
        from google.auth.exceptions import GoogleAuthError  # noqa: PLC0415  (lazy: optional extra)
        from google.oauth2 import service_account  # noqa: PLC0415
    except ImportError as exc:
        raise _unavailable(exc) from None
    try:
        info = json.loads(config.key.get_secret_value())
        return service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            info, scopes=list(SCOPES)
        )
    except (ValueError, TypeError, KeyError, GoogleAuthError):
        # Never the exception's text: parsers quote what they could not read, and that is key material.
        raise ConfigError(
            f"backend {backend!r}: -key: the service account key cannot be used (its private_key or "
            "client_email is malformed); create a new key for the service account and give it again"
        ) from None


def connect(config: GcpcasConfig, backend: str) -> CasClient:
    """Build the real client from a config; no network traffic happens here (tokens are fetched on the
    first call). Credentials come from the stored key only, never from the environment (no ADC), so the
    connector acts exactly as the service account the operator configured."""
    credentials = service_account_credentials(config, backend)
    try:
        from google.auth.credentials import AnonymousCredentials  # noqa: PLC0415  (lazy: optional extra)
        from google.cloud.security.privateca_v1 import CertificateAuthorityServiceClient  # noqa: PLC0415
    except ImportError as exc:
        raise _unavailable(exc) from None
    if _is_loopback_http(config.endpoint):
        # A local stand-in for the API (the test peer). Real credentials would fetch an access token from
        # Google's token endpoint (token_uri) before the first call, which a test must never reach and a
        # peer cannot answer. The key was still parsed above, so a broken key fails the same way here as
        # in production, where the endpoint is https:// and the service account key is always used.
        credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
    options = {"api_endpoint": config.endpoint} if config.endpoint else None
    client: CasClient = CertificateAuthorityServiceClient(
        credentials=credentials, transport="rest", client_options=options
    )
    return client


# ---- errors ---------------------------------------------------------------------------------------------


class CertificateExists(Rejected):
    """CreateCertificate said ALREADY_EXISTS: the certificate id is taken (by an earlier delivery of the
    same request, since the id derives from our request id). Enroll catches it and fetches that one."""


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")
# Canonical codes (google.rpc.Code) by the HTTP status the REST transport maps them to; used when a
# response carries no readable body.
_BY_HTTP = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_TRANSIENT = frozenset(
    {"RESOURCE_EXHAUSTED", "UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL", "ABORTED", "CANCELLED", "UNKNOWN"}
)
_AUTH = frozenset({"UNAUTHENTICATED", "PERMISSION_DENIED"})


def _error_body(exc: Any) -> dict[str, Any]:
    """The `error` object of a REST error response, or {} (gRPC, or a body that is not JSON)."""
    response = getattr(exc, "response", None)
    if response is None or not hasattr(response, "json"):
        return {}
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return {}
    return error if isinstance(error, dict) else {}


def _status(exc: Any) -> str:
    """The canonical status name of a google-api-core error (REST body, gRPC code, or HTTP status)."""
    status = _error_body(exc).get("status")
    if isinstance(status, str) and status:
        return status
    grpc_code = getattr(exc, "grpc_status_code", None)
    if grpc_code is not None:
        return str(grpc_code.name)
    code = getattr(exc, "code", None)
    return _BY_HTTP.get(code, "UNKNOWN") if isinstance(code, int) else "UNKNOWN"


def _message(exc: Any) -> str:
    # Over REST, api-core prefixes the service's message with the method and the whole URL; the body's
    # own message is what the operator needs.
    message = _error_body(exc).get("message")
    return message if isinstance(message, str) and message else str(exc.message)


def _retry_after(exc: Any) -> float | None:
    """Seconds from google.rpc.RetryInfo when the service sent one (a dict over REST, a message over
    gRPC), else from an HTTP Retry-After header."""
    for detail in getattr(exc, "details", None) or ():
        if isinstance(detail, dict):
            if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
                match = _DURATION.match(str(detail.get("retryDelay", "")))
                if match:
                    return float(match.group(1))
        elif hasattr(detail, "retry_delay"):
            delay = detail.retry_delay
            return float(delay.seconds) + float(delay.nanos) / 1e9
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is not None:
        value = headers.get("Retry-After")
        if value is not None and str(value).strip().isdigit():
            return float(str(value).strip())
    return None


def _call_error(exc: Any, where: str, not_found: type[BackendError], *, server_side: bool) -> BackendError:
    status = _status(exc)
    # The service's own message names the resource or the rule broken; it never echoes credentials.
    detail = f"{where} failed: {status}: {_message(exc)}"
    if status == "ALREADY_EXISTS":
        return CertificateExists(detail)
    if status in _TRANSIENT or server_side:
        return Transient(detail, retry_after=_retry_after(exc))
    if status in _AUTH:
        return AuthError(
            f"{detail}; check that the service account of -key has the CA Service roles it needs "
            "(roles/privateca.certificateManager on the pools, privateca.caPools.list) and that the API "
            "is enabled in the project"
        )
    if status == "NOT_FOUND":
        return not_found(detail)
    # INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE, and any other 4xx: asking again cannot help.
    return Rejected(detail)


def _translate(
    exc: Exception, backend: str, action: str, not_found: type[BackendError]
) -> BackendError | None:
    """Our error for a foreign one, or None to let it through (a bug, not a CA answer)."""
    from google.api_core import exceptions as api  # noqa: PLC0415  (lazy: the SDK is an optional extra)
    from google.auth import exceptions as auth  # noqa: PLC0415

    where = f"backend {backend!r}: CA Service {action}"
    if isinstance(exc, api.GoogleAPICallError):
        server_side = isinstance(exc, api.ServerError | api.TooManyRequests)
        return _call_error(exc, where, not_found, server_side=server_side)
    if isinstance(exc, auth.RefreshError):
        # Google's token endpoint refused the key (deleted or disabled key, wrong project). Its first
        # argument is the OAuth error text, e.g. "invalid_grant: Invalid JWT Signature."
        reason = exc.args[0] if exc.args and isinstance(exc.args[0], str) else "the token request was refused"
        return AuthError(
            f"backend {backend!r}: Google refused the service account key of -key ({reason}); "
            "create a new key and run backend update"
        )
    if isinstance(exc, auth.GoogleAuthError) and not isinstance(exc, auth.TransportError):
        # E.g. a 401 answered to anonymous credentials, which the transport then tries to refresh.
        return AuthError(f"{where} failed: the service refused the credentials ({type(exc).__name__})")
    if isinstance(exc, auth.TransportError | api.GoogleAPIError | OSError):
        # OSError covers requests' ConnectionError and Timeout: the REST transport lets them through.
        return Transient(f"{where} failed: cannot reach the API ({type(exc).__name__})")
    return None


@contextmanager
def cas_errors(backend: str, action: str, *, not_found: type[BackendError] = ConfigError) -> Iterator[None]:
    """The one place CA Service, google-auth and transport errors become backend errors.

    `not_found` says what a NOT_FOUND means for this call: a wrong -project/-location or pool when
    checking the configuration (ConfigError), a pool, CA or template that a request names (Rejected).
    """
    try:
        yield
    except BackendError:
        raise
    except Exception as exc:
        mapped = _translate(exc, backend, action, not_found)
        if mapped is None:
            raise
        raise mapped from None
