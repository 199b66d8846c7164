"""The CertCentral side of the `digicert` backend: a thin typed client for the Services API v2 on httpx,
and the one place its answers become backend errors.

CertCentral quirks kept here, so the backend never sees them:

- Every call carries the key in `X-DC-DEVKEY`; nothing else authenticates. The key is never logged or
  put in an error: httpx's messages name the URL only, and DigiCert's error bodies do not echo headers.
- Errors are `{"errors": [{"code", "message"}]}`; the messages are passed on verbatim (they name the
  field or rule broken). 401/403 mean the key (or its permissions); 429 `request_limit_exceeded` is the
  per-key rate limit (1,000 requests per 5 minutes, 100 per 5 seconds), sometimes with `Retry-After`.
  A 429 is a refusal before anything happened, so the client paces itself: it waits the few seconds
  asked and sends the call again (twice at most); a limit that persists is Transient for the manager.
- Lists page with `limit`/`offset` and answer `page{total, limit, offset}`; `limit` is at most 1000.
- `POST /order/certificate/{product}` answers 201 `{id, requests[{id, status}]}`, plus `certificate_id`
  and `certificate_chain[{subject_common_name, pem}]` when the certificate was issued at once.
- `PUT /certificate/{id}/revoke` answers 204 when revoked, 201 with a request when someone must approve
  (without `skip_approval`, or when the key's user may not skip it).
- Order statuses: pending, processing, needs_approval, issued, rejected, canceled, revoked, expired, ...
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from caconnector.backends.digicert.config import DigicertConfig
from caconnector.backends.errors import AuthError, BackendError, ConfigError, Rejected, Transient

CALL_TIMEOUT_SECONDS = 30.0
PAGE_LIMIT = 1000  # the largest page CertCentral serves
USER_AGENT = "caconnector-digicert"
# On a 429 the client waits (Retry-After, else a second) and sends the call again, this many times at
# most and only for waits this short; beyond that the call fails Transient for the manager to schedule.
RATE_LIMIT_PACING = 2
RATE_LIMIT_WAIT_SECONDS = 1.0
MAX_PACING_SECONDS = 5.0


@dataclass(frozen=True)
class ApiAnswer:
    """A successful answer: its HTTP status and JSON body (empty for 204)."""

    status: int
    body: dict[str, Any]


@dataclass(frozen=True)
class OrderRequest:
    """One request of an order (the approval step): its id, status and the comments on it."""

    id: str
    status: str
    comments: str = ""
    processor_comment: str = ""


@dataclass(frozen=True)
class Order:
    """An order as `GET /order/certificate[/{id}]` shows it (the list shows fewer fields)."""

    id: str
    status: str
    certificate_id: str | None
    common_name: str | None
    serial_number: str | None
    comments: str
    requests: tuple[OrderRequest, ...] = ()
    ca_cert_id: str | None = None  # the private CA that issues it, where the order names one
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class PlacedOrder:
    """The answer to placing an order."""

    id: str
    certificate_id: str | None
    chain_pems: tuple[str, ...]
    requests: tuple[OrderRequest, ...]


def _text(value: Any) -> str:
    return "" if value is None else str(value)


class RateLimited(Transient):
    """429 `request_limit_exceeded`: the key's rate limit. The client paces a few of these itself."""


def _object(body: dict[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key)
    return value if isinstance(value, dict) else {}


def _requests(body: dict[str, Any]) -> tuple[OrderRequest, ...]:
    found = body.get("requests")
    if not isinstance(found, list):
        return ()
    return tuple(
        OrderRequest(
            id=_text(item.get("id")),
            status=_text(item.get("status")),
            comments=_text(item.get("comments")),
            processor_comment=_text(item.get("processor_comment")),
        )
        for item in found
        if isinstance(item, dict)
    )


def parse_order(body: dict[str, Any]) -> Order:
    certificate = _object(body, "certificate")
    certificate_id = certificate.get("id") or body.get("certificate_id")
    return Order(
        id=_text(body.get("id")),
        status=_text(body.get("status")).lower(),
        certificate_id=_text(certificate_id) or None,
        common_name=_text(certificate.get("common_name")) or None,
        serial_number=_text(certificate.get("serial_number")) or None,
        comments=_text(body.get("comments")),
        requests=_requests(body),
        ca_cert_id=_text(_object(certificate, "ca_cert").get("id")) or None,
        raw=body,
    )


def _messages(response: httpx.Response) -> str:
    """DigiCert's error messages, verbatim, joined; or the HTTP status when the body is not theirs."""
    try:
        document = response.json()
    except ValueError:
        document = None
    errors = document.get("errors") if isinstance(document, dict) else None
    if isinstance(errors, list):
        parts = [
            f"{_text(e.get('code'))}: {_text(e.get('message'))}".strip(": ")
            for e in errors
            if isinstance(e, dict)
        ]
        if parts:
            return "; ".join(parts)
    return f"HTTP {response.status_code} {response.reason_phrase}".strip()


def _codes(response: httpx.Response) -> set[str]:
    try:
        document = response.json()
    except ValueError:
        return set()
    errors = document.get("errors") if isinstance(document, dict) else None
    if not isinstance(errors, list):
        return set()
    return {_text(e.get("code")) for e in errors if isinstance(e, dict)}


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def error_for(response: httpx.Response, where: str, not_found: type[BackendError]) -> BackendError:
    """The one mapping of a CertCentral error answer to our error tree."""
    status = response.status_code
    detail = f"{where} failed: {_messages(response)}"
    if status == 429 or "request_limit_exceeded" in _codes(response):
        return RateLimited(detail, retry_after=_retry_after(response))
    if status >= 500:
        return Transient(detail, retry_after=_retry_after(response))
    if status in (401, 403):
        return AuthError(
            f"{detail}; check -apikey: the DigiCert API key must be active and its user must have the "
            "Manager or Administrator role with the permissions view_organizations, place_orders, "
            "view_orders, manage_orders, manage_requests and review_requests"
        )
    if status == 404:
        return not_found(detail)
    return Rejected(detail)


class CertCentral:
    """The CertCentral Services API v2 operations the backend uses, over one httpx client."""

    def __init__(
        self,
        make_http: Callable[[], httpx.Client],
        backend: str,
        *,
        page_limit: int = PAGE_LIMIT,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._make_http = make_http
        self._sleep = sleep
        self._page_limit = page_limit
        self._http: httpx.Client | None = None
        self._backend = backend

    @classmethod
    def connect(cls, config: DigicertConfig, backend: str) -> CertCentral:
        """The real client for a config: no traffic until the first call."""
        # Our own context, always: the system's trust anchors plus -cacert. (Given a context, httpx
        # leaves it alone; trust_env then only brings the operator's HTTPS_PROXY and NO_PROXY.)
        verify = ssl.create_default_context()
        if config.cacert is not None:
            verify.load_verify_locations(cadata=config.cacert)
        headers = {
            "X-DC-DEVKEY": config.apikey.get_secret_value(),
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }

        def make_http() -> httpx.Client:
            return httpx.Client(
                base_url=config.base_url, headers=headers, verify=verify, timeout=CALL_TIMEOUT_SECONDS
            )

        return cls(make_http, backend)

    @contextmanager
    def session(self) -> Iterator[None]:
        """One connection pool for the calls of one operation, closed when it ends (backends live for a
        job; nothing would close a pool kept on the object)."""
        if self._http is not None:
            yield
            return
        self._http = self._make_http()
        try:
            yield
        finally:
            self._http.close()
            self._http = None

    # -- the calls --------------------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        action: str,
        *,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
        not_found: type[BackendError] = Rejected,
    ) -> httpx.Response:
        where = f"backend {self._backend!r}: DigiCert {action}"
        with self.session():
            assert self._http is not None  # noqa: S101  (session() just opened it)
            for paced in range(RATE_LIMIT_PACING + 1):
                try:
                    return self._send(self._http, method, path, where, params, json, not_found)
                except RateLimited as exc:
                    # Pacing, not retrying: a 429 means CertCentral refused the call unread (so even an
                    # order is safe to send again), and the per-key limit frees up within seconds. A
                    # longer wait, or a limit that persists, goes to the manager as Transient.
                    wait = RATE_LIMIT_WAIT_SECONDS if exc.retry_after is None else exc.retry_after
                    if paced == RATE_LIMIT_PACING or wait > MAX_PACING_SECONDS:
                        raise
                    self._sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _send(  # noqa: PLR0917  (private; the arguments of _call passed on)
        http: httpx.Client,
        method: str,
        path: str,
        where: str,
        params: dict[str, Any] | None,
        json: dict[str, Any] | None,
        not_found: type[BackendError],
    ) -> httpx.Response:
        try:
            response = http.request(method, path, params=params, json=json)
        except httpx.TimeoutException:
            raise Transient(f"{where} failed: the API did not answer in time") from None
        except httpx.ConnectError as exc:
            if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                # Waiting will not help: the API's certificate chains to no anchor we trust.
                raise ConfigError(
                    f"{where} failed: the API's TLS certificate is not trusted; if a TLS-inspecting proxy "
                    "or a private endpoint is in the way, give its CA certificate with -cacert"
                ) from None
            raise Transient(f"{where} failed: cannot reach the API ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise Transient(f"{where} failed: cannot reach the API ({type(exc).__name__})") from None
        if response.status_code >= 400:
            raise error_for(response, where, not_found)
        return response

    def _json(self, response: httpx.Response, action: str) -> dict[str, Any]:
        if response.status_code == 204 or not response.content:
            return {}
        try:
            body = response.json()
        except ValueError:
            raise Transient(
                f"backend {self._backend!r}: DigiCert {action}: the API answered something that is not JSON"
            ) from None
        return body if isinstance(body, dict) else {}

    def get(self, path: str, action: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._json(self._call("GET", path, action, params=params), action)

    def products(self) -> list[dict[str, Any]]:
        found = self.get("/product", "listing products").get("products")
        return [p for p in found if isinstance(p, dict)] if isinstance(found, list) else []

    def product(self, name_id: str) -> dict[str, Any]:
        return self.get(f"/product/{name_id}", f"reading product {name_id}")

    def organizations(self) -> list[dict[str, Any]]:
        found = self.get("/organization", "listing organizations", {"include_validation": "true"}).get(
            "organizations"
        )
        return [o for o in found if isinstance(o, dict)] if isinstance(found, list) else []

    def organization_validations(self, organization_id: str) -> list[dict[str, Any]]:
        found = self.get(
            f"/organization/{organization_id}/validation",
            f"reading the validation of organization {organization_id}",
        ).get("validations")
        return [v for v in found if isinstance(v, dict)] if isinstance(found, list) else []

    def orders(self, filters: dict[str, str] | None = None) -> Iterator[Order]:
        """Every order of the account (that `filters` match: `filters[common_name]`, `[serial_number]`,
        `[status]`), page after page until `page.total` is reached. The filters only narrow what is sent:
        callers check what they get, as a server that ignores one sends everything."""
        offset = 0
        narrowing = {f"filters[{name}]": value for name, value in (filters or {}).items()}
        while True:
            params: dict[str, Any] = {**narrowing, "limit": self._page_limit, "offset": offset}
            body = self.get("/order/certificate", "listing orders", params)
            found = body.get("orders")
            items = [o for o in found if isinstance(o, dict)] if isinstance(found, list) else []
            for item in items:
                yield parse_order(item)
            offset += len(items)
            total = _object(body, "page").get("total")
            if (
                not items
                or (isinstance(total, int) and offset >= total)
                or (not isinstance(total, int) and len(items) < self._page_limit)
            ):
                return

    def order(self, order_id: str) -> Order:
        return parse_order(self.get(f"/order/certificate/{order_id}", f"reading order {order_id}"))

    def request_info(self, request_id: str) -> list[OrderRequest]:
        body = self.get(f"/request/{request_id}", f"reading request {request_id}")
        return list(_requests({"requests": [body]}))

    def place_order(self, product: str, order: dict[str, Any]) -> PlacedOrder:
        action = f"ordering a {product} certificate"
        body = self._json(self._call("POST", f"/order/certificate/{product}", action, json=order), action)
        chain = body.get("certificate_chain")
        pems = (
            tuple(str(item["pem"]) for item in chain if isinstance(item, dict) and item.get("pem"))
            if isinstance(chain, list)
            else ()
        )
        return PlacedOrder(
            id=_text(body.get("id")),
            certificate_id=_text(body.get("certificate_id")) or None,
            chain_pems=pems,
            requests=_requests(body),
        )

    def download_pem_all(self, certificate_id: str) -> bytes:
        """The certificate, its intermediates and the root, in PEM."""
        response = self._call(
            "GET", f"/certificate/{certificate_id}/download/format/pem_all",
            f"downloading certificate {certificate_id}",
        )  # fmt: skip
        return response.content

    def revoke_certificate(self, certificate_id: str, reason: str, comments: str) -> ApiAnswer:
        action = f"revoking certificate {certificate_id}"
        response = self._call(
            "PUT",
            f"/certificate/{certificate_id}/revoke",
            action,
            json={"reason": reason, "comments": comments, "skip_approval": True},
        )
        return ApiAnswer(response.status_code, self._json(response, action))
