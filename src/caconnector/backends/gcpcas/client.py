"""The Google side of the `gcpcas` backend: the narrow client seam and the one place SDK errors are mapped.

`google-cloud-private-ca` is imported inside the functions here, never at module level, so the rest of
the backend loads without the `gcpcas` extra; building a client without it fails naming the extra.

The client always uses the REST transport (built in `connect`): plain HTTPS that proxies and TLS
inspection handle like any other traffic, and what the local test peer speaks. A REST quirk matters for
the mapping below: google-api-core builds its exception from the HTTP status alone, so ALREADY_EXISTS
and ABORTED both arrive as `Conflict` (409), INVALID_ARGUMENT and FAILED_PRECONDITION both as
`BadRequest` (400), RESOURCE_EXHAUSTED as `TooManyRequests` (429). The canonical status is only in the
JSON body (`{"error": {"code", "message", "status", "details"}}`), so `_status` reads it from there.

Authentication is always the stored service account key: an OAuth 2.0 JWT-bearer grant (RFC 7523) to the
key's `token_uri` gives an access token, sent as a bearer token on every call. The transport fetches a new
one before the old one expires, and once more when a call is answered 401; a token endpoint's refusal
arrives as google-auth's `RefreshError`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from caconnector.backends.errors import AuthError, BackendError, ConfigError, Rejected, Transient
from caconnector.backends.gcpcas.config import GcpcasConfig
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
DEFAULT_HOST = "privateca.googleapis.com"
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
        # google-auth always addresses the grant's JWT to Google's token endpoint, whatever the key's
        # token_uri says; RFC 7523 wants the audience to be the server the grant goes to, so `aud` is the
        # key's token_uri. For keys Google issues the two are the same URL.
        return service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            info, scopes=list(SCOPES), additional_claims={"aud": info["token_uri"]}
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
    connector acts exactly as the service account the operator configured, whatever the endpoint."""
    credentials = service_account_credentials(config, backend)
    try:
        from google.cloud.security.privateca_v1 import CertificateAuthorityServiceClient  # noqa: PLC0415
        from google.cloud.security.privateca_v1.services.certificate_authority_service.transports import (  # noqa: PLC0415  (lazy: optional extra)
            CertificateAuthorityServiceRestTransport,
        )
    except ImportError as exc:
        raise _unavailable(exc) from None
    # The transport is built here rather than by the client because the client always asks for
    # `always_use_jwt_access=True`: with scopes set, google-auth then signs its own JWT for every call and
    # never asks `token_uri` for an access token. We use the OAuth 2.0 JWT-bearer grant (RFC 7523)
    # against the key's `token_uri` instead: Google accepts it, and so does any stand-in for the API
    # that issues its own tokens, so the same path runs in production and against the test peer.
    # The transport passes no scopes on to the credentials; they carry SCOPES themselves (see above).
    transport = CertificateAuthorityServiceRestTransport(
        host=config.endpoint or DEFAULT_HOST,
        credentials=credentials,
        always_use_jwt_access=False,
    )
    client: CasClient = CertificateAuthorityServiceClient(transport=transport)
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
# An OAuth error text from a token endpoint is quoted to the operator, but never a long unbroken run of
# token characters: a misbehaving endpoint (or a proxy) could echo the assertion or a token back.
_TOKENISH = re.compile(r"[A-Za-z0-9_\-+/=.]{40,}")
_REASON_LENGTH = 200


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
    if status == "UNAUTHENTICATED":
        # Answered only after the transport fetched a new token and was refused again: the service does
        # not accept what the key's token endpoint issues.
        return AuthError(
            f"{detail}; the service refused the access token of the service account of -key: check that "
            "-key belongs to -project and that its token_uri is the service's token endpoint"
        )
    if status == "PERMISSION_DENIED":
        return AuthError(
            f"{detail}; check that the service account of -key has the CA Service roles it needs "
            "(roles/privateca.certificateManager on the pools, privateca.caPools.list) and that the API "
            "is enabled in the project"
        )
    if status == "NOT_FOUND":
        return not_found(detail)
    # INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE, and any other 4xx: asking again cannot help.
    return Rejected(detail)


def _oauth_reason(exc: Any) -> str:
    """What the token endpoint said, from its OAuth error response (RFC 6749 section 5.2): the `error`
    code and `error_description`, e.g. "invalid_grant: Invalid JWT Signature.", and nothing else of the
    response (google-auth's own message quotes a body it could not parse as is)."""
    response = exc.args[1] if len(exc.args) > 1 else None
    if not isinstance(response, dict) or not isinstance(response.get("error"), str):
        # google-auth's own text ("No access token in response.") or a body that is no OAuth error.
        text = exc.args[0] if exc.args and isinstance(exc.args[0], str) else ""
        return _TOKENISH.sub("[...]", text)[:_REASON_LENGTH] or "the token request was refused"
    description = response.get("error_description")
    reason = f"{response['error']}: {description}" if isinstance(description, str) else response["error"]
    return _TOKENISH.sub("[...]", reason)[:_REASON_LENGTH]


def _refresh_error(exc: Any, backend: str) -> BackendError:
    """google-auth's RefreshError: the key's token endpoint did not issue an access token."""
    reason = _oauth_reason(exc)
    if getattr(exc, "retryable", False):
        # A 5xx or "temporarily_unavailable" that google-auth already retried a few times.
        return Transient(f"backend {backend!r}: the token endpoint of -key is unavailable ({reason})")
    return AuthError(
        f"backend {backend!r}: the token endpoint refused the service account key of -key ({reason}); "
        "the key may have been deleted or disabled: create a new key and run backend update"
    )


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
        return _refresh_error(exc, backend)
    if isinstance(exc, auth.GoogleAuthError) and not isinstance(exc, auth.TransportError):
        # Any other refusal by google-auth to produce a token from the key.
        return AuthError(
            f"{where} failed: the credentials of -key cannot be used ({type(exc).__name__}); "
            "create a new key for the service account and run backend update"
        )
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
