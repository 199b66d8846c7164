"""A typed client of the Entrust Certificate Services Enterprise API v2 on httpx, and the one place its
answers and transport failures become backend errors.

Every call carries HTTP Basic (the API user name and key) over mutual TLS (the user's certificate, see
`tls`). The operations used, as the API and public clients (Keyfactor's ECS plugin, Ansible's ecs
modules) show them:

    GET   /application/version                       {"version"}
    GET   /organizations                             {"organizations": [{clientId, name, verificationStatus}]}
    GET   /clients                                   {"clients": [{clientId, clientName, verificationStatus,
                                                     ovExpiryDate}]}   (the fallback for /organizations)
    GET   /inventories                               {"inventories": [{productType, remainingCount}]}
    POST  /certificates                              201 {trackingId, endEntityCert, chainCerts,
                                                     serialNumber}; 202 {trackingId} while it awaits approval
    GET   /certificates?limit=&offset=[&serialNumber=] {"summary": {total, offset, limit}, "certificates"}
    GET   /certificates/{trackingId}                 {trackingId, status, serialNumber, endEntityCert,
                                                     chainCerts, tracking{trackingInfo}, ...}
    POST  /certificates/{trackingId}/revocations     {crlReason, revocationComment}

Errors are `{"status": N, "errors": [{"message": ...}]}`. Throttling is 429 with `Retry-After` (seconds).
"""

from __future__ import annotations

import datetime as dt
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from caconnector.backends.entrust.config import DEFAULT_ENDPOINT, EntrustConfig
from caconnector.backends.entrust.tls import client_context
from caconnector.backends.errors import AuthError, BackendError, ConfigError, Rejected, Transient

# Each call gives up after this long; retrying is the manager's job, on our Transient errors.
CALL_TIMEOUT_SECONDS = 30.0
PAGE_SIZE = 100
# A 429 whose Retry-After is this short is waited out inside the call, a few times: every job makes
# several calls (organizations, the tracking lookup, the order), and a job that fails whenever any one of
# them is throttled would mostly fail under steady throttling. Longer waits, or a throttle that outlasts
# these tries, become Transient with the CA's retry_after, for the manager's retry policy.
THROTTLE_WAIT_SECONDS = 5.0
THROTTLE_TRIES = 4
_MESSAGE_LENGTH = 300
# TLS alerts a server sends when it does not accept the client certificate (OpenSSL's reason names).
_CLIENT_CERT_REFUSED = frozenset(
    {
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "SSLV3_ALERT_CERTIFICATE_EXPIRED",
        "SSLV3_ALERT_CERTIFICATE_REVOKED",
        "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
        "TLSV1_ALERT_UNKNOWN_CA",
        "TLSV1_ALERT_ACCESS_DENIED",
        "TLSV1_ALERT_DECRYPT_ERROR",
        # TLS 1.2 servers often answer a client certificate they refuse with a plain handshake failure.
        "SSLV3_ALERT_HANDSHAKE_FAILURE",
    }
)


@dataclass(frozen=True)
class EcsOrganization:
    client_id: int
    name: str
    verification_status: str
    expires: dt.datetime | None = None


@dataclass(frozen=True)
class EcsCertificate:
    """A certificate (or an order for one) as ECS holds it, by tracking id."""

    tracking_id: int
    status: str
    serial_number: str | None = None
    end_entity_cert: str | None = None
    chain_certs: tuple[str, ...] = ()
    tracking_info: str | None = None
    cert_type: str | None = None
    decline_reason: str | None = None


@dataclass(frozen=True)
class EcsPage:
    certificates: tuple[EcsCertificate, ...]
    total: int


@dataclass(frozen=True)
class Ordered:
    """What POST /certificates answered: 201 with the certificate, or 202 queued for approval."""

    certificate: EcsCertificate
    awaiting_approval: bool


def _datetime(value: object) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _certificate(document: dict[str, Any], *, status: str | None = None) -> EcsCertificate:
    tracking = document.get("tracking")
    chain = document.get("chainCerts")
    return EcsCertificate(
        tracking_id=int(document["trackingId"]),
        status=str(document.get("status") or status or "UNKNOWN").upper(),
        serial_number=document.get("serialNumber") or None,
        end_entity_cert=document.get("endEntityCert") or None,
        chain_certs=tuple(str(c) for c in chain) if isinstance(chain, list) else (),
        tracking_info=tracking.get("trackingInfo") if isinstance(tracking, dict) else None,
        cert_type=document.get("certType") or None,
        decline_reason=document.get("declineReason") or None,
    )


class EntrustClient:
    """The ECS operations the backend uses, over one httpx connection pool."""

    def __init__(
        self,
        base_url: str,
        *,
        username: str,
        apikey: str,
        tls: ssl.SSLContext,
        backend: str,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._backend = backend
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=base_url.rstrip("/") + "/",
            auth=httpx.BasicAuth(username, apikey),
            verify=tls,
            timeout=CALL_TIMEOUT_SECONDS,
            # Never the environment's proxy or CA bundle settings: the TLS context says whom to trust.
            trust_env=False,
            headers={"Accept": "application/json"},
            # No idle connections kept: a backend lives for one job and has no close() in the contract,
            # so a kept-alive socket would outlive it unclosed. A handshake per call is cheap next to ECS.
            limits=httpx.Limits(max_keepalive_connections=0),
            transport=transport,
        )

    @classmethod
    def from_config(cls, config: EntrustConfig, backend: str) -> EntrustClient:
        """No network traffic here: the first call makes the connection."""
        return cls(
            config.endpoint or DEFAULT_ENDPOINT,
            username=config.username.get_secret_value(),
            apikey=config.apikey.get_secret_value(),
            tls=client_context(config, backend),
            backend=backend,
        )

    def close(self) -> None:
        self._http.close()

    # -- operations ------------------------------------------------------------------------------------

    def version(self) -> str:
        document = self._call("GET", "application/version", "reading the API version")
        return str(document.get("version", "unknown"))

    def organizations(self) -> list[EcsOrganization]:
        """The organizations of the account, with their verification status."""
        try:
            document = self._call("GET", "organizations", "listing organizations", not_found=_NotFound)
        except _NotFound:
            return self._clients()
        organizations = document.get("organizations") or []
        return [
            EcsOrganization(
                client_id=int(item["clientId"]),
                name=str(item.get("name") or item["clientId"]),
                verification_status=str(item.get("verificationStatus") or "UNKNOWN").upper(),
                expires=_datetime(item.get("ovExpiryDate") or item.get("expirationDate")),
            )
            for item in organizations
            if isinstance(item, dict) and "clientId" in item
        ]

    def _clients(self) -> list[EcsOrganization]:
        document = self._call("GET", "clients", "listing clients")
        return [
            EcsOrganization(
                client_id=int(item["clientId"]),
                name=str(item.get("clientName") or item["clientId"]),
                verification_status=str(item.get("verificationStatus") or "UNKNOWN").upper(),
                expires=_datetime(item.get("ovExpiryDate")),
            )
            for item in document.get("clients") or []
            if isinstance(item, dict) and "clientId" in item
        ]

    def product_types(self) -> list[str]:
        """The certTypes the account has inventory of (GET /inventories)."""
        document = self._call("GET", "inventories", "listing inventories")
        return [
            str(item["productType"])
            for item in document.get("inventories") or []
            if isinstance(item, dict) and item.get("productType")
        ]

    def order(self, body: dict[str, Any]) -> Ordered:
        response = self._send("POST", "certificates", "ordering a certificate", json=body)
        document = response.json()
        awaiting = response.status_code == 202 or not document.get("endEntityCert")
        return Ordered(
            certificate=_certificate(document, status="PENDING" if awaiting else "ACTIVE"),
            awaiting_approval=awaiting,
        )

    def certificate(self, tracking_id: int) -> EcsCertificate:
        document = self._call(
            "GET", f"certificates/{tracking_id}", f"reading tracking id {tracking_id}", not_found=Rejected
        )
        return _certificate(document)

    def certificates(self, offset: int, limit: int = PAGE_SIZE) -> EcsPage:
        document = self._call(
            "GET", "certificates", "listing certificates", params={"limit": limit, "offset": offset}
        )
        items = [_certificate(c) for c in document.get("certificates") or [] if isinstance(c, dict)]
        summary = document.get("summary") or {}
        total = summary.get("total") if isinstance(summary, dict) else None
        return EcsPage(certificates=tuple(items), total=int(total) if total is not None else len(items))

    def all_certificates(self) -> Iterator[EcsCertificate]:
        """Every certificate of the account, page by page until summary.total is reached."""
        offset = 0
        while True:
            page = self.certificates(offset)
            yield from page.certificates
            offset += len(page.certificates)
            if not page.certificates or offset >= page.total:
                return

    def certificates_by_serial(self, serial: str) -> list[EcsCertificate]:
        """The certificates GET /certificates?serialNumber= finds (Entrust's spelling of the serial)."""
        try:
            document = self._call(
                "GET",
                "certificates",
                f"looking up serial {serial}",
                params={"serialNumber": serial, "limit": PAGE_SIZE, "offset": 0},
                not_found=_NotFound,
            )
        except _NotFound:
            return []
        return [_certificate(c) for c in document.get("certificates") or [] if isinstance(c, dict)]

    def revoke(self, tracking_id: int, crl_reason: str, comment: str) -> None:
        self._call(
            "POST",
            f"certificates/{tracking_id}/revocations",
            f"revoking tracking id {tracking_id}",
            json={"crlReason": crl_reason, "revocationComment": comment},
            not_found=Rejected,
        )

    # -- transport and errors --------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        action: str,
        *,
        not_found: type[BackendError] = ConfigError,
        **kwargs: Any,
    ) -> dict[str, Any]:
        response = self._send(method, path, action, not_found=not_found, **kwargs)
        if not response.content:
            return {}
        try:
            document = response.json()
        except ValueError:
            raise Transient(f"{self._where(action)}: the API answered something that is not JSON") from None
        return document if isinstance(document, dict) else {}

    def _send(
        self,
        method: str,
        path: str,
        action: str,
        *,
        not_found: type[BackendError] = ConfigError,
        **kwargs: Any,
    ) -> httpx.Response:
        for attempt in range(1, THROTTLE_TRIES + 1):
            with self._transport_errors(action):
                response = self._http.request(method, path, **kwargs)
            wait = _retry_after(response) if response.status_code == 429 else None
            if wait is None or wait > THROTTLE_WAIT_SECONDS or attempt == THROTTLE_TRIES:
                break
            self._sleep(wait)
        if response.status_code >= 400:
            raise _status_error(response, self._where(action), not_found)
        return response

    def _where(self, action: str) -> str:
        return f"backend {self._backend!r}: Entrust API {action} failed"

    @contextmanager
    def _transport_errors(self, action: str) -> Iterator[None]:
        """Transport failures: a refused client certificate is AuthError, an API certificate we do not
        trust is ConfigError, anything else (timeouts, resets, DNS) Transient."""
        where = self._where(action)
        try:
            yield
        except httpx.HTTPError as exc:
            tls = _ssl_error(exc)
            if isinstance(tls, ssl.SSLCertVerificationError):
                raise ConfigError(
                    f"{where}: the API's TLS certificate is not trusted ({tls.verify_message}); check "
                    "-endpoint, or give its CA with -cacert"
                ) from None
            if tls is not None and getattr(tls, "reason", None) in _CLIENT_CERT_REFUSED:
                raise AuthError(
                    f"{where}: the API refused the client certificate of -cert in the TLS handshake "
                    f"({tls.reason}); check that -cert is the user's active Entrust certificate, linked "
                    "to the API key"
                ) from None
            if tls is not None:
                raise NoAnswer(
                    f"{where}: TLS failed ({getattr(tls, 'reason', None) or 'handshake'})"
                ) from None
            raise NoAnswer(f"{where}: cannot reach the API ({type(exc).__name__})") from None


class NoAnswer(Transient):
    """No answer came (a timeout, a reset, no connection): whether ECS acted on the call is unknown."""


class Throttled(Transient):
    """429: ECS did not act on the call; ask again after `retry_after`."""


class _NotFound(BackendError):
    """A path this API version does not have (only where another path can answer instead)."""


def _ssl_error(exc: BaseException) -> ssl.SSLError | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _messages(response: httpx.Response) -> str:
    """The API's own error messages (`errors[].message`), shortened; they never echo credentials."""
    try:
        document = response.json()
    except ValueError:
        return response.reason_phrase or f"HTTP {response.status_code}"
    errors = document.get("errors") if isinstance(document, dict) else None
    texts = [str(e.get("message")) for e in errors or [] if isinstance(e, dict) and e.get("message")]
    return "; ".join(texts)[:_MESSAGE_LENGTH] or response.reason_phrase or f"HTTP {response.status_code}"


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    if value.isdigit():
        return float(value)
    try:
        moment = dt.datetime.strptime(value, "%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=dt.UTC)
    except ValueError:
        return None
    return max(0.0, (moment - dt.datetime.now(dt.UTC)).total_seconds())


def _status_error(response: httpx.Response, where: str, not_found: type[BackendError]) -> BackendError:
    status = response.status_code
    detail = f"{where}: {status} {_messages(response)}"
    if status == 429:
        return Throttled(detail, retry_after=_retry_after(response))
    if status == 408 or status >= 500:
        return Transient(detail, retry_after=_retry_after(response))
    if status == 401:
        return AuthError(
            f"{detail}; the API refused -username and -apikey: check the user name and give a current "
            "API key of that user"
        )
    if status == 403:
        return AuthError(
            f"{detail}; the user of -username (with the certificate of -cert) may not do this: it needs "
            "the administrator role, and -cert must be the certificate linked to -apikey"
        )
    if status == 404:
        return not_found(detail)
    return Rejected(detail)
