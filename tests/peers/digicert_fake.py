"""A fake of DigiCert CertCentral (Services API v2), the peer of the digicert tests.

A real HTTP server (Starlette under uvicorn, in a thread, on a loopback port) answering the calls of the
Services API v2 as DigiCert documents them, with state: products, organizations, orders, requests and
certificates signed by test CAs.

    GET  /product                                   {"products": [{group_name, name_id, name, type, ...}]}
    GET  /product/{name_id}                         {..., allowed_ca_certs[{id, name}]}
    GET  /organization[?include_validation=true]    {"organizations": [...], "page": {...}}
    GET  /organization/{id}/validation              {"validations": [{type, name, status, validated_until}]}
    POST /order/certificate/{name_id}               201 {id, requests[{id, status}]} (+ certificate_id,
                                                    certificate_chain[{subject_common_name, pem}] if issued)
    GET  /order/certificate?limit=&offset=          {"orders": [...], "page": {total, limit, offset}}
    GET  /order/certificate/{id}                    {id, status, certificate{...}, requests[...], ...}
    PUT  /order/certificate/{id}/check-dcv          {"dcv_status": "complete"|"pending"}
    GET  /request/{id}                              {id, type, status, comments, processor_comment, order}
    PUT  /request/{id}/status                       {"status": "approved"|"rejected", processor_comment} 204
    GET  /certificate/{id}/download/format/pem_all  the certificate, its intermediate and root, PEM
    PUT  /certificate/{id}/revoke                   {reason, comments}: 204 revoked, 201 a pending request

Every call needs `X-DC-DEVKEY` with a known key (else 401 `access_denied`). Errors are
`{"errors": [{"code", "message"}]}`. Each key may make 100 requests per 5 seconds and 1,000 per 5 minutes,
then 429 `request_limit_exceeded`; `throttle_every = N` answers every Nth request so as well (a storm).

What waits, as at DigiCert: with the account's approval step on (`require_approval`, the default), an
order is `needs_approval` until its request is approved (or rejected: the order is then `rejected`),
unless it says `skip_approval` and the key's user may skip it (`may_skip_approval`: a Manager or
Administrator); a revoke likewise answers 201 with a pending request unless skipped (then 204). An order
naming a domain in `unvalidated_domains`, or an organization whose validation is not active, is `pending`
until `complete_dcv()` (the domain is validated at DigiCert) or its organization is validated.
"""

from __future__ import annotations

import datetime as dt
import itertools
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from caconnector.testing import TestCA, make_ca

API_KEY = "49ca638f-ec73-40fa-a6f6-6a85e997a5a7"  # the reference document's sample key
VALIDATED_ORG = 112233
VALIDATED_ORG_NAME = "Example Validated Inc."
PENDING_ORG = 445566
PENDING_ORG_NAME = "Pending Validation LLC"
PUBLIC_PRODUCT = "ssl_basic"
PRIVATE_PRODUCT = "private_ssl_plus"
PRIVATE_CA_ID = "5A3F9D0E2C71B8A4"
PRIVATE_CA_NAME = "Fake Private Issuing CA"
_SHORT_WINDOW = (5.0, 100)
_LONG_WINDOW = (300.0, 1000)
_REASONS = {"unspecified", "key_compromise", "affiliation_changed", "superseded", "cessation_of_operation"}


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"errors": [{"code": code, "message": message}]}, status_code=status, headers=headers)


def _stamp(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


@dataclass
class _CA:
    name: str
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    root: x509.Certificate | None  # None for a root itself

    def pems(self) -> list[str]:
        chain = [self.certificate] + ([self.root] if self.root is not None else [])
        return [c.public_bytes(serialization.Encoding.PEM).decode() for c in chain]


def _make_ca(name: str, issuer: _CA | None) -> _CA:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Fake DigiCert"),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    signer = TestCA(issuer.certificate, issuer.key) if issuer else None
    made = make_ca(subject, issuer=signer, key=key, path_length=None if issuer is None else 0)
    return _CA(name, key, made.certificate, issuer.certificate if issuer else None)


@dataclass
class FakeRequest:
    id: int
    order_id: int
    type: str  # new_request | revoke
    status: str  # pending | approved | rejected
    comments: str
    date: dt.datetime
    processor_comment: str = ""
    certificate_id: int | None = None


@dataclass
class FakeOrder:
    id: int
    product: str
    common_name: str
    dns_names: list[str]
    csr: x509.CertificateSigningRequest
    csr_pem: str
    organization_id: int | None
    validity_days: int
    signature_hash: str
    ca_cert_id: str | None
    status: str
    comments: str
    date_created: dt.datetime
    request_ids: list[int] = field(default_factory=list)
    certificate_id: int | None = None
    certificate: x509.Certificate | None = None
    revoked_reason: str | None = None


class FakeCertCentral:
    """The state of the fake account, and the knobs tests turn."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.public_root = _make_ca("Fake DigiCert Global Root G2", None)
        self.public_ca = _make_ca("Fake DigiCert Global G2 TLS RSA SHA256 2020 CA1", self.public_root)
        self.private_root = _make_ca("Fake Private Root CA", None)
        self.private_ca = _make_ca(PRIVATE_CA_NAME, self.private_root)
        self.url = ""
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.keys = {API_KEY}
            self.require_approval = True
            self.may_skip_approval = True
            self.unvalidated_domains: set[str] = set()
            self.throttle_every: int | None = None
            # Shapes other CertCentral answers may take: a chain in the order answer without the
            # certificate itself; an organization list without validations (read per organization).
            self.chain_without_certificate = False
            self.validations_in_list = True
            self.comments_in_details = True  # whether an order's details show its comments
            self.fail_next: list[tuple[int, str, str]] = []  # (HTTP status, code, message) for next calls
            self.orders: dict[int, FakeOrder] = {}
            self.requests: dict[int, FakeRequest] = {}
            self.organizations: dict[int, dict[str, Any]] = {
                VALIDATED_ORG: {"name": VALIDATED_ORG_NAME, "validation": "active"},
                PENDING_ORG: {"name": PENDING_ORG_NAME, "validation": "pending"},
            }
            self._order_ids = itertools.count(10_000_001)
            self._request_ids = itertools.count(5_000_001)
            self._certificate_ids = itertools.count(7_000_001)
            self._answers = 0
            self._recent: dict[str, deque[float]] = {}
            self.calls: list[tuple[str, str]] = []
            self.throttled = 0

    # -- what tests read -----------------------------------------------------------------------------

    def placed(self) -> list[FakeOrder]:
        with self._lock:
            return list(self.orders.values())

    def issued(self) -> list[x509.Certificate]:
        with self._lock:
            return [o.certificate for o in self.orders.values() if o.certificate is not None]

    def revoked_serials(self) -> set[int]:
        with self._lock:
            return {
                o.certificate.serial_number
                for o in self.orders.values()
                if o.certificate is not None and o.status == "revoked"
            }

    def pending_requests(self) -> list[FakeRequest]:
        with self._lock:
            return [r for r in self.requests.values() if r.status == "pending"]

    # -- what happens at DigiCert outside the API --------------------------------------------------------

    def add_orders(self, count: int, common_name: str, *, comments: str = "", age_days: int = 0) -> None:
        """Orders placed by others (the portal, other tools): pending, for `common_name`."""
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
        )
        pem = csr.public_bytes(serialization.Encoding.PEM).decode()
        created = dt.datetime.now(dt.UTC) - dt.timedelta(days=age_days)
        with self._lock:
            for _ in range(count):
                order = FakeOrder(
                    id=next(self._order_ids), product=PUBLIC_PRODUCT, common_name=common_name,
                    dns_names=[common_name], csr=csr, csr_pem=pem, organization_id=VALIDATED_ORG,
                    validity_days=90, signature_hash="sha256", ca_cert_id=None, status="pending",
                    comments=comments, date_created=created,
                )  # fmt: skip
                order.certificate_id = next(self._certificate_ids)
                request = FakeRequest(id=next(self._request_ids), order_id=order.id, type="new_request",
                                      status="approved", comments=comments, date=created)  # fmt: skip
                self.requests[request.id] = request
                order.request_ids.append(request.id)
                self.orders[order.id] = order

    def complete_dcv(self, domain: str | None = None) -> None:
        """The domain (every unvalidated one when None) passes DCV; orders waiting only on it issue."""
        with self._lock:
            if domain is None:
                self.unvalidated_domains.clear()
            else:
                self.unvalidated_domains.discard(domain)
            for order in list(self.orders.values()):
                self._advance(order)

    def approve_all(self) -> None:
        """An administrator approves every pending request in CertCentral."""
        with self._lock:
            for request in self.pending_requests():
                self._decide(request, "approved", "")

    def validate_organization(self, organization_id: int) -> None:
        with self._lock:
            self.organizations[organization_id]["validation"] = "active"
            for order in list(self.orders.values()):
                self._advance(order)

    # -- the rules --------------------------------------------------------------------------------------

    def _waits_for_dcv(self, order: FakeOrder) -> bool:
        names = {order.common_name, *order.dns_names}
        organization = self.organizations.get(order.organization_id or -1)
        org_pending = organization is not None and organization["validation"] != "active"
        return bool(names & self.unvalidated_domains) or org_pending

    def _advance(self, order: FakeOrder) -> None:
        """Move an order on as far as its approvals and validations allow."""
        if order.status not in ("needs_approval", "pending"):
            return
        if any(self.requests[r].status == "pending" for r in order.request_ids):
            order.status = "needs_approval"
            return
        if self._waits_for_dcv(order):
            order.status = "pending"
            return
        self._issue(order)

    def _issue(self, order: FakeOrder) -> None:
        ca = self.private_ca if order.ca_cert_id else self.public_ca
        now = dt.datetime.now(dt.UTC)
        names = list(dict.fromkeys([order.common_name, *order.dns_names]))
        subject = [x509.NameAttribute(NameOID.COMMON_NAME, order.common_name)]
        organization = self.organizations.get(order.organization_id or -1)
        if organization is not None:
            subject.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization["name"]))
        order.certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(subject))
            .issuer_name(ca.certificate.subject)
            .public_key(order.csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=order.validity_days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
            )
            .sign(ca.key, hashes.SHA256())
        )
        order.status = "issued"

    def _chain(self, order: FakeOrder) -> list[dict[str, str]]:
        assert order.certificate is not None
        ca = self.private_ca if order.ca_cert_id else self.public_ca
        pems = [order.certificate.public_bytes(serialization.Encoding.PEM).decode(), *ca.pems()]
        names = [
            order.common_name,
            ca.name,
            (self.private_root if order.ca_cert_id else self.public_root).name,
        ]
        return [{"subject_common_name": n, "pem": p} for n, p in zip(names, pems, strict=True)]

    def _decide(self, request: FakeRequest, status: str, comment: str) -> None:
        request.status = status
        request.processor_comment = comment
        order = self.orders[request.order_id]
        if request.type == "revoke":
            if status == "approved":
                order.status = "revoked"
        elif status == "rejected":
            order.status = "rejected"
        else:
            self._advance(order)

    def _skips(self, body: Any) -> bool:
        return bool(isinstance(body, dict) and body.get("skip_approval") is True and self.may_skip_approval)

    # -- rate limits ------------------------------------------------------------------------------------

    def _throttle(self, key: str) -> JSONResponse | None:
        self._answers += 1
        if self.throttle_every and self._answers % self.throttle_every == 0:
            self.throttled += 1
            return _error(429, "request_limit_exceeded", "Rate limit exceeded.", {"Retry-After": "1"})
        now = time.monotonic()
        recent = self._recent.setdefault(key, deque())
        while recent and now - recent[0] > _LONG_WINDOW[0]:
            recent.popleft()
        in_short = sum(1 for t in recent if now - t <= _SHORT_WINDOW[0])
        if in_short >= _SHORT_WINDOW[1] or len(recent) >= _LONG_WINDOW[1]:
            self.throttled += 1
            return _error(429, "request_limit_exceeded", "Rate limit exceeded.", {"Retry-After": "5"})
        recent.append(now)
        return None

    # -- the API ----------------------------------------------------------------------------------------

    def app(self) -> Starlette:
        routes = [
            Route("/services/v2/product", self._products),
            Route("/services/v2/product/{name_id}", self._product),
            Route("/services/v2/organization", self._organizations),
            Route("/services/v2/organization/{id:int}/validation", self._validation),
            Route("/services/v2/order/certificate", self._list_orders),
            Route("/services/v2/order/certificate/{name:str}", self._order_or_place, methods=["GET", "POST"]),
            Route("/services/v2/order/certificate/{id:int}/check-dcv", self._check_dcv, methods=["PUT"]),
            Route("/services/v2/request/{id:int}", self._request),
            Route("/services/v2/request/{id:int}/status", self._request_status, methods=["PUT"]),
            Route("/services/v2/certificate/{id:int}/download/format/{fmt}", self._download),
            Route("/services/v2/certificate/{id:int}/revoke", self._revoke, methods=["PUT"]),
        ]

        async def guard(request: Request, call_next: Any) -> Response:
            key = request.headers.get("X-DC-DEVKEY", "")
            with self._lock:
                self.calls.append((request.method, request.url.path))
                if key not in self.keys:
                    return _error(401, "access_denied", "Access denied. The API key is missing or invalid.")
                throttled = self._throttle(key)
                if throttled is not None:
                    return throttled
                if self.fail_next:
                    status, code, message = self.fail_next.pop(0)
                    return _error(status, code, message)
            response: Response = await call_next(request)
            return response

        return Starlette(routes=routes, middleware=[Middleware(BaseHTTPMiddleware, dispatch=guard)])

    async def _products(self, request: Request) -> JSONResponse:
        return JSONResponse(
            {"products": [self._product_body(PUBLIC_PRODUCT), self._product_body(PRIVATE_PRODUCT)]}
        )

    def _product_body(self, name_id: str, detail: bool = False) -> dict[str, Any]:
        if name_id == PUBLIC_PRODUCT:
            body: dict[str, Any] = {
                "group_name": "ssl_certificate",
                "name_id": PUBLIC_PRODUCT,
                "name": "Basic OV",
                "type": "ssl_certificate",
                "validation_type": "ov",
                "validation_name": "OV",
                "validation_description": "Normal Organization Validation",
            }
        else:
            body = {
                "group_name": "private_ssl_certificate",
                "name_id": PRIVATE_PRODUCT,
                "name": "Private SSL Plus",
                "type": "private_ssl_certificate",
                "validation_type": "ov",
                "validation_name": "OV",
                "validation_description": "Normal Organization Validation",
            }
        if detail:
            body["allowed_validity_years"] = [1]
            body["signature_hash_types"] = {
                "allowed_hash_types": [{"id": h} for h in ("sha256", "sha384", "sha512")]
            }
            if name_id == PRIVATE_PRODUCT:
                body["allowed_ca_certs"] = [{"id": PRIVATE_CA_ID, "name": PRIVATE_CA_NAME}]
        return body

    async def _product(self, request: Request) -> JSONResponse:
        name_id = request.path_params["name_id"]
        if name_id not in (PUBLIC_PRODUCT, PRIVATE_PRODUCT):
            return _error(404, "not_found", "The requested resource could not be found.")
        return JSONResponse(self._product_body(name_id, detail=True))

    def _validations(self, organization_id: int) -> list[dict[str, Any]]:
        state = self.organizations[organization_id]["validation"]
        until = _stamp(dt.datetime.now(dt.UTC) + dt.timedelta(days=395)) if state == "active" else None
        return [
            {
                "type": "ov",
                "name": "OV",
                "description": "Normal Organization Validation",
                "validated_until": until,
                "status": state,
            }
        ]

    async def _organizations(self, request: Request) -> JSONResponse:
        with self._lock:
            include = request.query_params.get("include_validation") == "true"
            items = []
            for organization_id, organization in self.organizations.items():
                item: dict[str, Any] = {
                    "id": organization_id,
                    "status": "active",
                    "name": organization["name"],
                    "display_name": organization["name"],
                    "is_active": True,
                    "city": "Lehi",
                    "state": "ut",
                    "country": "us",
                }
                if include and self.validations_in_list:
                    item["validations"] = self._validations(organization_id)
                items.append(item)
            return JSONResponse(
                {"organizations": items, "page": {"total": len(items), "limit": 0, "offset": 0}}
            )

    async def _validation(self, request: Request) -> JSONResponse:
        with self._lock:
            organization_id = request.path_params["id"]
            if organization_id not in self.organizations:
                return _error(404, "not_found", "The requested resource could not be found.")
            return JSONResponse({"validations": self._validations(organization_id)})

    def _summary(self, order: FakeOrder, full: bool) -> dict[str, Any]:
        certificate: dict[str, Any] = {
            "common_name": order.common_name,
            "dns_names": order.dns_names,
            "signature_hash": order.signature_hash,
        }
        # As DigiCert's examples show: the certificate id exists from the order on; the serial number
        # only in the order's own details, once issued.
        certificate["id"] = order.certificate_id
        if order.certificate is not None:
            certificate["valid_till"] = order.certificate.not_valid_after_utc.strftime("%Y-%m-%d")
            if full:
                certificate["serial_number"] = format(order.certificate.serial_number, "X")
        body: dict[str, Any] = {
            "id": order.id,
            "certificate": certificate,
            "status": order.status,
            "date_created": _stamp(order.date_created),
            "product": {
                "name_id": order.product,
                "name": self._product_body(order.product)["name"],
                "type": self._product_body(order.product)["type"],
            },
        }
        if order.organization_id is not None:
            body["organization"] = {
                "id": order.organization_id,
                "name": self.organizations[order.organization_id]["name"],
            }
        if full:
            certificate["csr"] = order.csr_pem
            if order.ca_cert_id:
                certificate["ca_cert"] = {"id": order.ca_cert_id, "name": PRIVATE_CA_NAME}
            body["requests"] = [
                {
                    "id": r.id,
                    "date": _stamp(r.date),
                    "type": r.type,
                    "status": r.status,
                }
                | ({"comments": r.comments} if self.comments_in_details else {})
                for r in (self.requests[i] for i in order.request_ids)
            ]
            body["order_validity"] = {"days": order.validity_days}
        return body

    async def _list_orders(self, request: Request) -> JSONResponse:
        try:
            limit = int(request.query_params.get("limit", "1000"))
            offset = int(request.query_params.get("offset", "0"))
        except ValueError:
            return _error(400, "invalid_type", "limit and offset must be integers.")
        limit = min(max(limit, 1), 1000)
        query = request.query_params
        with self._lock:
            everything = sorted(self.orders.values(), key=lambda o: o.id, reverse=True)
            if "filters[common_name]" in query:
                everything = [o for o in everything if o.common_name == query["filters[common_name]"]]
            if "filters[status]" in query:
                everything = [o for o in everything if o.status == query["filters[status]"]]
            if "filters[certificate_id]" in query:
                everything = [
                    o for o in everything if str(o.certificate_id) == query["filters[certificate_id]"]
                ]
            if "filters[serial_number]" in query:
                wanted = int(query["filters[serial_number]"], 16)
                everything = [
                    o for o in everything if o.certificate and o.certificate.serial_number == wanted
                ]
            page = everything[offset : offset + limit]
            return JSONResponse(
                {
                    "orders": [self._summary(o, full=False) for o in page],
                    "page": {"total": len(everything), "limit": limit, "offset": offset},
                }
            )

    async def _order_or_place(self, request: Request) -> JSONResponse:
        name = request.path_params["name"]
        if request.method == "GET":
            with self._lock:
                order = self.orders.get(int(name)) if name.isdigit() else None
                if order is None:
                    return _error(404, "not_found", "The requested resource could not be found.")
                return JSONResponse(self._summary(order, full=True))
        return await self._place(request, name)

    async def _place(self, request: Request, product: str) -> JSONResponse:  # noqa: PLR0911  (one refusal per rule)
        if product not in (PUBLIC_PRODUCT, PRIVATE_PRODUCT):
            return _error(400, "invalid_product", f"Invalid product name id: {product}.")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "invalid_json", "The request body is not valid JSON.")
        certificate = body.get("certificate") if isinstance(body, dict) else None
        if not isinstance(certificate, dict) or not certificate.get("common_name"):
            return _error(400, "missing_param", "certificate.common_name is required.")
        try:
            csr = x509.load_pem_x509_csr(str(certificate.get("csr", "")).encode())
        except ValueError:
            return _error(400, "invalid_csr", "The CSR is invalid or malformed.")
        if not csr.is_signature_valid:
            return _error(400, "invalid_csr", "The CSR signature is invalid.")
        validity = body.get("order_validity") or {}
        days = validity.get("days") if isinstance(validity, dict) else None
        years = body.get("validity_years") or (validity.get("years") if isinstance(validity, dict) else None)
        if not days and not years:
            return _error(400, "missing_param", "order_validity is required.")
        validity_days = int(days) if days else int(str(years)) * 365
        ca_cert_id = certificate.get("ca_cert_id")
        if product == PRIVATE_PRODUCT and ca_cert_id != PRIVATE_CA_ID:
            return _error(400, "invalid_ca_cert_id", "A valid ca_cert_id is required for this product.")
        organization = body.get("organization")
        organization_id = organization.get("id") if isinstance(organization, dict) else None
        with self._lock:
            if organization_id is None:
                return _error(400, "missing_param", "organization.id is required for OV products.")
            if int(organization_id) not in self.organizations:
                return _error(400, "invalid_organization", f"Organization {organization_id} does not exist.")
            now = dt.datetime.now(dt.UTC)
            order = FakeOrder(
                id=next(self._order_ids),
                product=product,
                common_name=str(certificate["common_name"]),
                dns_names=[str(n) for n in certificate.get("dns_names") or ()],
                csr=csr,
                csr_pem=str(certificate["csr"]),
                organization_id=int(organization_id),
                validity_days=min(validity_days, 397),
                signature_hash=str(certificate.get("signature_hash", "sha256")),
                ca_cert_id=ca_cert_id,
                status="pending",
                comments=str(body.get("comments", "")),
                date_created=now,
            )
            order.certificate_id = next(self._certificate_ids)
            self.orders[order.id] = order
            new = FakeRequest(
                id=next(self._request_ids),
                order_id=order.id,
                type="new_request",
                status="pending" if self.require_approval and not self._skips(body) else "approved",
                comments=order.comments,
                date=now,
            )
            self.requests[new.id] = new
            order.request_ids.append(new.id)
            self._advance(order)
            answer: dict[str, Any] = {"id": order.id, "requests": [{"id": new.id, "status": new.status}]}
            if order.status == "issued":
                answer["certificate_id"] = order.certificate_id
                answer["certificate_chain"] = self._chain(order)[1 if self.chain_without_certificate else 0 :]
            return JSONResponse(answer, status_code=201)

    async def _check_dcv(self, request: Request) -> JSONResponse:
        with self._lock:
            order = self.orders.get(request.path_params["id"])
            if order is None:
                return _error(404, "not_found", "The requested resource could not be found.")
            self._advance(order)
            pending = self._waits_for_dcv(order) and order.status != "issued"
            return JSONResponse(
                {"order_status": order.status, "dcv_status": "pending" if pending else "complete"}
            )

    async def _request(self, request: Request) -> JSONResponse:
        with self._lock:
            found = self.requests.get(request.path_params["id"])
            if found is None:
                return _error(404, "not_found", "The requested resource could not be found.")
            return JSONResponse(
                {
                    "id": found.id,
                    "date": _stamp(found.date),
                    "type": found.type,
                    "status": found.status,
                    "comments": found.comments,
                    "processor_comment": found.processor_comment,
                    "order": {"id": found.order_id},
                }
            )

    async def _request_status(self, request: Request) -> Response:
        body = await request.json()
        status = body.get("status") if isinstance(body, dict) else None
        if status not in ("approved", "rejected"):
            return _error(400, "invalid_status", "status must be approved or rejected.")
        with self._lock:
            found = self.requests.get(request.path_params["id"])
            if found is None:
                return _error(404, "not_found", "The requested resource could not be found.")
            if found.status != "pending":
                return _error(400, "request_already_processed", "This request has already been processed.")
            self._decide(found, status, str(body.get("processor_comment", "")))
            return Response(status_code=204)

    def _by_certificate(self, certificate_id: int) -> FakeOrder | None:
        return next((o for o in self.orders.values() if o.certificate_id == certificate_id), None)

    async def _download(self, request: Request) -> Response:
        with self._lock:
            order = self._by_certificate(request.path_params["id"])
            if order is None or order.certificate is None:
                return _error(404, "not_found", "The requested resource could not be found.")
            if request.path_params["fmt"] != "pem_all":
                return _error(400, "invalid_format", "This fake serves pem_all only.")
            text = "".join(item["pem"] for item in self._chain(order))
            return PlainTextResponse(text, media_type="application/x-pem-file")

    async def _revoke(self, request: Request) -> Response:
        body = await request.json()
        reason = body.get("reason", "unspecified") if isinstance(body, dict) else "unspecified"
        if reason not in _REASONS:
            return _error(400, "invalid_reason", f"Invalid revocation reason: {reason}.")
        with self._lock:
            order = self._by_certificate(request.path_params["id"])
            if order is None:
                return _error(404, "not_found", "The requested resource could not be found.")
            if order.status == "revoked":
                return _error(
                    400, "certificate_already_revoked", "This certificate has already been revoked."
                )
            order.revoked_reason = reason
            if self._skips(body):
                order.status = "revoked"
                return Response(status_code=204)
            now = dt.datetime.now(dt.UTC)
            revoke = FakeRequest(
                id=next(self._request_ids),
                order_id=order.id,
                type="revoke",
                status="pending",
                comments=str(body.get("comments", "")),
                date=now,
                certificate_id=order.certificate_id,
            )
            self.requests[revoke.id] = revoke
            order.request_ids.append(revoke.id)
            return JSONResponse(
                {
                    "id": revoke.id,
                    "date": _stamp(now),
                    "type": "revoke",
                    "status": "pending",
                    "requester": {"id": 1, "first_name": "API", "last_name": "Key"},
                    "comments": revoke.comments,
                },
                status_code=201,
            )


_PEER: FakeCertCentral | None = None
_PEER_LOCK = threading.Lock()


def serve(fake: FakeCertCentral, tls: tuple[str, str] | None = None) -> uvicorn.Server:
    """Run `fake` on a free loopback port in a daemon thread; sets `fake.url` (ends in /services/v2).
    `tls`: the paths of a certificate chain and its key, to serve https."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    host, port = sock.getsockname()
    certfile, keyfile = tls if tls is not None else (None, None)
    config = uvicorn.Config(
        fake.app(), log_level="warning", lifespan="off", ssl_certfile=certfile, ssl_keyfile=keyfile
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="fake-certcentral", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the fake CertCentral did not start")
        time.sleep(0.01)
    fake.url = f"{'https' if tls else 'http'}://{host}:{port}/services/v2"
    return server


def digicert_peer() -> FakeCertCentral:
    """The fake, started once per test process."""
    global _PEER  # noqa: PLW0603  (one server per process, as the other peers)
    with _PEER_LOCK:
        if _PEER is None:
            fake = FakeCertCentral()
            serve(fake)
            _PEER = fake
        return _PEER
