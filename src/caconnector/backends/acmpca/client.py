"""The AWS side of the `acmpca` backend: the narrow client seam and the one place botocore errors are mapped.

boto3 and botocore are imported inside the functions here, never at module level, so the rest of the
backend (and everything that imports it) loads without the `acmpca` extra; building a client without it
fails with a message naming the extra.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from caconnector import __version__
from caconnector.backends.acmpca.config import AcmpcaConfig
from caconnector.backends.errors import AuthError, BackendError, ConfigError, Rejected, Transient
from caconnector.backends.registry import BackendTypeUnavailable

CONNECT_TIMEOUT_SECONDS = 10
READ_TIMEOUT_SECONDS = 30
# botocore's "standard" mode retries throttling, 5xx and connection errors with jittered back-off inside
# one call. Kept short: longer waits belong to the manager's scheduler, which sees our Transient errors.
MAX_ATTEMPTS = 3


class AcmPcaClient(Protocol):
    """The operations of a boto3 `acm-pca` client the backend uses (boto3 ships no type stubs)."""

    def list_certificate_authorities(self, **kwargs: Any) -> dict[str, Any]: ...
    def describe_certificate_authority(self, **kwargs: Any) -> dict[str, Any]: ...
    def get_certificate_authority_certificate(self, **kwargs: Any) -> dict[str, Any]: ...
    def issue_certificate(self, **kwargs: Any) -> dict[str, Any]: ...
    def get_certificate(self, **kwargs: Any) -> dict[str, Any]: ...
    def revoke_certificate(self, **kwargs: Any) -> dict[str, Any]: ...
    def create_certificate_authority_audit_report(self, **kwargs: Any) -> dict[str, Any]: ...
    def describe_certificate_authority_audit_report(self, **kwargs: Any) -> dict[str, Any]: ...


class S3Client(Protocol):
    """The one S3 operation scan needs: reading an audit report."""

    def get_object(self, **kwargs: Any) -> dict[str, Any]: ...


@dataclass(frozen=True)
class AwsClients:
    acmpca: AcmPcaClient
    s3: S3Client | None


def connect(config: AcmpcaConfig) -> AwsClients:
    """Build the real clients from a config; no network traffic happens here.

    Both clients come from one session with the configured key, never from the environment or
    ~/.aws, so the connector acts exactly as the IAM user the operator configured.
    """
    try:
        import boto3.session  # noqa: PLC0415  (lazy: the SDK is an optional extra)
        from botocore.config import Config  # noqa: PLC0415
    except ImportError as exc:
        raise BackendTypeUnavailable(
            f"backend type 'acmpca' needs optional dependencies that are not installed ({exc.name}); "
            "install them with: pip install 'caconnector[acmpca]'"
        ) from None
    session = boto3.session.Session(
        aws_access_key_id=config.accesskeyid,
        aws_secret_access_key=config.secretaccesskey.get_secret_value(),
        region_name=config.region,
    )
    settings = Config(
        retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=READ_TIMEOUT_SECONDS,
        user_agent_extra=f"caconnector/{__version__}",
    )
    acmpca: AcmPcaClient = session.client("acm-pca", endpoint_url=config.endpoint, config=settings)
    s3: S3Client | None = None
    if config.auditbucket is not None:
        s3_endpoint = _s3_endpoint(config.endpoint)
        s3_settings = settings
        if s3_endpoint is not None:
            # A local peer has no bucket.host DNS names: address buckets in the path.
            s3_settings = settings.merge(Config(s3={"addressing_style": "path"}))
        s3 = session.client("s3", endpoint_url=s3_endpoint, config=s3_settings)
    return AwsClients(acmpca=acmpca, s3=s3)


def _s3_endpoint(endpoint: str | None) -> str | None:
    """Where to read audit reports from.

    `-endpoint` names the ACM PCA API only: a private (VPC) endpoint for ACM PCA says nothing about S3,
    which keeps its regional endpoint. A loopback endpoint is a local stand-in for AWS (moto,
    LocalStack), which serves every service on one port, so S3 is read there too.
    """
    if endpoint is None:
        return None
    host = urlsplit(endpoint).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    return endpoint if loopback else None


# ---- errors ---------------------------------------------------------------------------------------------

# Wrong or unknown keys. AWS says which in the code; the message never repeats the key.
_BAD_KEY_CODES = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidAccessKeyId",  # S3's spelling
    }
)
_DENIED_CODES = frozenset({"AccessDeniedException", "AccessDenied", "UnauthorizedOperation"})
_THROTTLE_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "SlowDown",
        "ProvisionedThroughputExceededException",
    }
)
# The service had a problem, or another change to the CA is still running: the next attempt may pass.
_RETRY_CODES = frozenset(
    {
        "InternalFailure",
        "InternalError",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "ConcurrentModificationException",
        "RequestInProgressException",
        "InvalidNextTokenException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
# Refusals of this request that repeating cannot change. LimitExceededException is a quota such as the
# number of certificates a CA may issue (throttling has its own code), so it is permanent too.
# RequestFailedException is how GetCertificate reports an issuance AWS gave up on.
_REJECTED_CODES = frozenset(
    {
        "InvalidRequestException",
        "MalformedCSRException",
        "InvalidArgsException",
        "InvalidArnException",
        "InvalidStateException",
        "InvalidParameterException",
        "InvalidParameterValue",
        "ValidationException",
        "LimitExceededException",
        "RequestFailedException",
        "InvalidPolicyException",
    }
)
_NOT_FOUND_CODES = frozenset({"ResourceNotFoundException", "NoSuchKey"})


class ExpectedAwsError(Exception):
    """An AWS error code the caller asked to handle itself (e.g. RequestInProgressException on
    GetCertificate, which means "not issued yet"). Never leaves the backend."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@contextmanager
def aws_errors(
    backend: str,
    operation: str,
    *,
    expected: Collection[str] = (),
    not_found: str | None = None,
) -> Iterator[None]:
    """The one place botocore's exceptions become the backend error tree.

    `expected` codes are raised as ExpectedAwsError for the caller to handle; `not_found` replaces the
    message of a ResourceNotFoundException with one that says what was not found.
    """
    try:
        yield
    except BackendError:
        raise
    except Exception as exc:
        mapped = translate(exc, backend, operation, expected=expected, not_found=not_found)
        if mapped is None:
            raise
        raise mapped from None


def translate(  # noqa: PLR0911  (one return per error family: the mapping reads as a table)
    exc: BaseException,
    backend: str,
    operation: str,
    *,
    expected: Collection[str] = (),
    not_found: str | None = None,
) -> Exception | None:
    """The backend error for a botocore exception, or None for anything that is not botocore's."""
    try:
        from botocore import exceptions as bce  # noqa: PLC0415  (lazy: optional extra)
    except ImportError:  # pragma: no cover - no botocore, so no botocore exception either
        return None
    where = f"backend {backend!r}"
    if isinstance(exc, bce.ClientError):
        return _client_error(
            exc, where=where, backend=backend, operation=operation, expected=expected, not_found=not_found
        )
    if isinstance(exc, bce.EndpointConnectionError | bce.ConnectTimeoutError | bce.ProxyConnectionError):
        # An unknown region fails here too: its endpoint name does not resolve.
        endpoint = exc.kwargs.get("endpoint_url", "its endpoint")
        return Transient(
            f"{where}: cannot reach AWS Private CA at {endpoint}; check -region (and -endpoint if set) "
            "and that this host can reach AWS"
        )
    if isinstance(exc, bce.ReadTimeoutError | bce.ConnectionClosedError | bce.HTTPClientError):
        return Transient(f"{where}: the connection to AWS failed during {operation} ({type(exc).__name__})")
    if isinstance(exc, bce.NoCredentialsError | bce.PartialCredentialsError | bce.NoRegionError):
        return ConfigError(f"{where}: {exc}; check -accesskeyid, -secretaccesskey and -region")
    if isinstance(exc, bce.ParamValidationError):
        # Raised before anything is sent: a value AWS's own rules refuse (a bucket name too short, ...).
        detail = " ".join(str(exc).split())
        return Rejected(f"{where}: {operation} was not sent, AWS would refuse it: {detail}")
    if isinstance(exc, bce.BotoCoreError):
        # Anything else from the SDK (a response it could not parse, ...): worth another try later.
        return Transient(f"{where}: {operation} failed in the AWS SDK ({type(exc).__name__})")
    return None


def _client_error(  # noqa: PLR0911  (as above)
    exc: Any,
    *,
    where: str,
    backend: str,
    operation: str,
    expected: Collection[str],
    not_found: str | None,
) -> Exception:
    response: dict[str, Any] = exc.response or {}
    error: dict[str, Any] = response.get("Error") or {}
    metadata: dict[str, Any] = response.get("ResponseMetadata") or {}
    code = str(error.get("Code") or "Unknown")
    message = " ".join(str(error.get("Message") or "").split())
    status = int(metadata.get("HTTPStatusCode") or 0)
    if code in expected:
        return ExpectedAwsError(code, message)
    if code in _BAD_KEY_CODES:
        return AuthError(
            f"AWS refused the access key ({code}): "
            f"check -accesskeyid/-secretaccesskey for backend {backend!r}"
        )
    if code in _DENIED_CODES:
        service = "s3" if operation == "GetObject" else "acm-pca"
        return AuthError(
            f"{where}: AWS denied {operation} to the IAM user of -accesskeyid; grant it {service}:{operation}"
        )
    if code in _THROTTLE_CODES:
        return Transient(
            f"{where}: AWS is throttling {operation} ({code})",
            retry_after=_retry_after(metadata),
        )
    if code in _RETRY_CODES or status >= 500:
        return Transient(
            f"{where}: AWS could not complete {operation} just now ({code})",
            retry_after=_retry_after(metadata),
        )
    if code in _NOT_FOUND_CODES:
        return Rejected(f"{where}: {not_found or f'AWS found no such resource ({message})'}")
    if code == "NoSuchBucket":
        return ConfigError(
            f"{where}: the S3 bucket of -auditbucket does not exist; create it or fix the name"
        )
    if code in _REJECTED_CODES or 400 <= status < 500:
        return Rejected(f"{where}: AWS refused {operation} ({code}: {message})")
    return Transient(f"{where}: {operation} failed ({code}: {message})")


def _retry_after(metadata: dict[str, Any]) -> float | None:
    headers: dict[str, Any] = metadata.get("HTTPHeaders") or {}
    value = headers.get("retry-after")
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare from AWS, and botocore has already backed off
    return seconds if seconds is not None and seconds >= 0 else None
