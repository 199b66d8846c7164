"""A fake of Entrust Certificate Services, Enterprise API v2: the peer of the entrust tests.

A real HTTPS server on a loopback port, started once per test process, that requires a client certificate
in the TLS handshake (issued by the fake's own client CA, as Entrust issues the API user's certificate)
and HTTP Basic with the API user name and key on every call. Base path `/enterprise/v2`, as the API.

Paths, bodies and statuses as the API and public clients (Keyfactor's ECS plugin, Ansible's ecs modules)
show them:

    GET   /application/version                      200 {"version"}
    GET   /organizations                            200 {"organizations": [{clientId, name,
                                                    verificationStatus}]}
    GET   /clients                                  200 {"clients": [{clientId, clientName,
                                                    verificationStatus, ovExpiryDate}]}
    GET   /inventories                              200 {"inventories": [{productType, totalCount,
                                                    remainingCount, usedCount}]}
    POST  /certificates {csr, certType, certExpiryDate, cn, subjectAltName, clientId, tracking, ...}
                                                    201 {trackingId, endEntityCert, chainCerts, serialNumber}
                                                    202 {trackingId} when the certType needs approval
    GET   /certificates?limit=&offset=[&serialNumber=]  200 {"summary": {timestamp, elapsed, offset, limit,
                                                    total, sort}, "certificates": [...]}
    GET   /certificates/{trackingId}                200 the certificate, with tracking, endEntityCert,
                                                    chainCerts (and declineReason once declined)
    PATCH /certificates/{trackingId} {operation: APPROVE | DECLINE, declineReason}
    POST  /certificates/{trackingId}/revocations {crlReason, revocationComment}

Errors are `{"status": N, "errors": [{"message"}]}`; throttling is 429 with `Retry-After` (seconds). ECS
spells serial numbers in upper-case hex without leading zeros; every serial the fake signs has its top
bit set, so its DER encoding (and openssl's spelling) begins with a zero byte Entrust drops.
`chainCerts` begins with the end-entity certificate, then the root before the intermediate: clients must
order the chain by signature.
"""

from __future__ import annotations

import atexit
import base64
import datetime as dt
import http.server
import itertools
import json
import secrets
import socket
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from caconnector.testing import make_ca

BASE_PATH = "/enterprise/v2"
USERNAME = "SampleAdminUser"
APIKEY = "49ca638f-ec73-40fa-a6f6-6a85e997a5a7"
VERSION = "2.1.0"
APPROVED_ORG = "Example Corp"
PENDING_ORG = "Pending Inc"
STANDARD = "STANDARD_SSL"
APPROVAL_REQUIRED = "PRIVATE_SSL"
# What Entrust accepts as crlReason any more (Keyfactor's ECS plugin: "Entrust no longer accepts any
# reason codes other than keyCompromise and unspecified").
CRL_REASONS = ("keyCompromise", "unspecified")
MAX_LIMIT = 100
DROP = 0  # the status `handle` gives for an answer to leave unsent


class EcsError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass
class FakeOrder:
    tracking_id: int
    body: dict[str, Any]
    csr: x509.CertificateSigningRequest
    cert_type: str
    client_id: int
    status: str
    certificate: x509.Certificate | None = None
    decline_reason: str | None = None
    revocation: tuple[str, str] | None = None  # (crlReason, comment)
    created: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


@dataclass(frozen=True)
class FakeRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def entrust_serial(serial: int) -> str:
    return format(serial, "X")


class _Issuer:
    """The fake's root and issuing CA (EC P-256)."""

    def __init__(self) -> None:
        root = make_ca("Fake Entrust Root CA - G2")
        issuing = make_ca("Fake Entrust Certification Authority - L1K", issuer=root, days=1825, path_length=0)
        self.root_key, self.root = root.key, root.certificate
        self.key, self.certificate = issuing.key, issuing.certificate

    def sign(self, order: FakeOrder, serial: int, organization: str) -> x509.Certificate:
        now = dt.datetime.now(dt.UTC)
        expiry = dt.date.fromisoformat(order.body["certExpiryDate"])
        not_after = dt.datetime.combine(expiry, dt.time(23, 59, 59), tzinfo=dt.UTC)
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in order.body.get("subjectAltName") or []]
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, str(order.body["cn"])),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            ]
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(order.csr.public_key())
            .serial_number(serial)
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), False)
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(self.key, hashes.SHA256())


class FakeECS:
    """The state of the fake account, what it was asked, and the knobs the tests turn."""

    def __init__(self) -> None:
        self.url = ""
        self._lock = threading.RLock()
        self.server_ca = trustme.CA(organization_name="Fake Entrust API TLS")
        self.client_ca = trustme.CA(organization_name="Fake Entrust Client Authentication")
        self.server_cert = self.server_ca.issue_cert("127.0.0.1", "localhost")
        user = self.client_ca.issue_cert(f"{USERNAME}@example.test", common_name=USERNAME)
        self.client_cert_pem = user.cert_chain_pems[0].bytes().decode()
        self.client_key_pem = user.private_key_pem.bytes().decode()
        self.issuer = _Issuer()
        self.reset()

    @property
    def ca_pem(self) -> str:
        """The trust anchor of the API's TLS certificate (what `-cacert` gives)."""
        return self.server_ca.cert_pem.bytes().decode()

    def reset(self) -> None:
        with self._lock:
            self.organizations: dict[int, tuple[str, str]] = {
                1: (APPROVED_ORG, "APPROVED"),
                2: (PENDING_ORG, "PENDING"),
            }
            self.cert_types: dict[str, bool] = {STANDARD: False, APPROVAL_REQUIRED: True}
            self.orders: dict[int, FakeOrder] = {}
            self.requests: list[FakeRequest] = []
            self.handshake_failures = 0
            self._ids = itertools.count(4242)
            self._throttle_every = 0
            self._retry_after = 1
            self._answers = 0
            self.throttled = 0
            self._failures: list[tuple[str, int, str]] = []
            self._drops: list[str] = []
            self.page_limit = MAX_LIMIT
            self.apikey = APIKEY

    # -- knobs -----------------------------------------------------------------------------------------

    def throttle(self, every: int, retry_after: int = 1) -> None:
        """Answer every `every`-th request 429 with Retry-After (0 stops), before doing anything."""
        with self._lock:
            self._throttle_every = every
            self._retry_after = retry_after

    def fail_next(self, operation: str, status: int, message: str = "Simulated failure") -> None:
        """Answer the next request whose 'METHOD path' starts with `operation` with `status`."""
        with self._lock:
            self._failures.append((operation, status, message))

    def drop_answer_next(self, operation: str) -> None:
        """Do the next request whose 'METHOD path' starts with `operation`, then close the connection
        without answering (an answer lost on the way: the client cannot know what happened)."""
        with self._lock:
            self._drops.append(operation)

    def approve(self, tracking_id: int) -> None:
        with self._lock:
            self._approve(self.orders[tracking_id])

    def decline(self, tracking_id: int, reason: str) -> None:
        with self._lock:
            order = self.orders[tracking_id]
            order.status, order.decline_reason = "DECLINED", reason

    @property
    def orders_placed(self) -> int:
        return len(self.orders)

    def revoked_serials(self) -> set[int]:
        with self._lock:
            return {
                o.certificate.serial_number
                for o in self.orders.values()
                if o.status == "REVOKED" and o.certificate is not None
            }

    def pending(self) -> list[int]:
        with self._lock:
            return [t for t, o in self.orders.items() if o.status == "PENDING"]

    # -- the API ---------------------------------------------------------------------------------------

    def handle(
        self, method: str, target: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, Any] | None, dict[str, str]]:
        parts = urlsplit(target)
        query = parse_qs(parts.query)
        try:
            document = json.loads(body) if body else None
        except ValueError:
            document = body.decode(errors="replace")
        with self._lock:
            self.requests.append(FakeRequest(method, parts.path, query, document))
            try:
                self._authenticate(headers)
                self._maybe_throttle()
                self._maybe_fail(f"{method} {parts.path.removeprefix(BASE_PATH)}")
                status, answer = self._route(method, parts.path, query, document)
            except EcsError as exc:
                return exc.status, {"status": exc.status, "errors": [{"message": exc.message}]}, exc.headers
            call = f"{method} {parts.path.removeprefix(BASE_PATH)}"
            dropped = next((d for d in self._drops if call.startswith(d)), None)
            if dropped is not None:
                self._drops.remove(dropped)
                return DROP, None, {}
            return status, answer, {}

    def _authenticate(self, headers: dict[str, str]) -> None:
        value = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        scheme, _, encoded = value.partition(" ")
        try:
            user, _, key = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            user, key = "", ""
        if scheme.lower() != "basic" or user != USERNAME or key != self.apikey:
            raise EcsError(401, "Authentication failed: invalid credentials")

    def _maybe_throttle(self) -> None:
        self._answers += 1
        if self._throttle_every and self._answers % self._throttle_every == 0:
            self.throttled += 1
            raise EcsError(
                429,
                "Rate limit exceeded. Please retry after the period in Retry-After.",
                {"Retry-After": str(self._retry_after)},
            )

    def _maybe_fail(self, call: str) -> None:
        for index, (operation, status, message) in enumerate(self._failures):
            if call.startswith(operation):
                del self._failures[index]
                raise EcsError(status, message)

    def _route(  # noqa: PLR0911  (one return per operation reads best in a router)
        self, method: str, full_path: str, query: dict[str, list[str]], body: Any
    ) -> tuple[int, dict[str, Any] | None]:
        if not full_path.startswith(BASE_PATH + "/"):
            raise EcsError(404, "Resource not found")
        path = full_path.removeprefix(BASE_PATH)
        segments = [s for s in path.split("/") if s]
        if method == "GET" and segments == ["application", "version"]:
            return 200, {"version": VERSION}
        if method == "GET" and segments == ["organizations"]:
            return 200, {"organizations": self._organizations_json()}
        if method == "GET" and segments == ["clients"]:
            return 200, {"clients": self._clients_json()}
        if method == "GET" and segments == ["inventories"]:
            return 200, {"inventories": self._inventories_json()}
        if segments[:1] == ["certificates"]:
            if len(segments) == 1 and method == "POST":
                return self._create(body)
            if len(segments) == 1 and method == "GET":
                return 200, self._list(query)
            if len(segments) >= 2:
                order = self._order(segments[1])
                if len(segments) == 2 and method == "GET":
                    return 200, self._detail(order)
                if len(segments) == 2 and method == "PATCH":
                    return self._patch(order, body)
                if segments[2:] == ["revocations"] and method == "POST":
                    return self._revoke(order, body)
        raise EcsError(404, f"No resource {method} {path}")

    # -- operations ------------------------------------------------------------------------------------

    def _create(self, body: Any) -> tuple[int, dict[str, Any]]:
        if not isinstance(body, dict):
            raise EcsError(400, "Request body must be a JSON object")
        cert_type = body.get("certType")
        if cert_type not in self.cert_types:
            raise EcsError(400, f"Invalid certType: {cert_type}")
        try:
            csr = x509.load_pem_x509_csr(str(body.get("csr", "")).encode())
        except ValueError:
            raise EcsError(400, "Invalid CSR") from None
        if not csr.is_signature_valid:
            raise EcsError(400, "Invalid CSR signature")
        try:
            expiry = dt.date.fromisoformat(str(body.get("certExpiryDate")))
        except ValueError:
            raise EcsError(400, "certExpiryDate must be a date (YYYY-MM-DD)") from None
        if expiry <= dt.datetime.now(dt.UTC).date():
            raise EcsError(400, "certExpiryDate must be in the future")
        client_id = body.get("clientId", 1)
        if client_id not in self.organizations:
            raise EcsError(400, f"Invalid clientId: {client_id}")
        if self.organizations[client_id][1] != "APPROVED":
            raise EcsError(400, f"Client {client_id} is not approved for certificate issuance")
        if not body.get("cn"):
            raise EcsError(400, "cn is required")
        tracking = body.get("tracking")
        if not isinstance(tracking, dict) or not tracking.get("requesterEmail"):
            raise EcsError(400, "tracking.requesterName, requesterEmail and requesterPhone are required")
        order = FakeOrder(
            tracking_id=next(self._ids),
            body=body,
            csr=csr,
            cert_type=cert_type,
            client_id=client_id,
            status="PENDING",
        )
        self.orders[order.tracking_id] = order
        if self.cert_types[cert_type] or body.get("queueForApproval"):
            return 202, {"trackingId": order.tracking_id}
        self._approve(order)
        return 201, self._issued_json(order)

    def _approve(self, order: FakeOrder) -> None:
        serial = int.from_bytes(bytes([0x80 | secrets.randbits(7)]) + secrets.token_bytes(15), "big")
        order.certificate = self.issuer.sign(order, serial, self.organizations[order.client_id][0])
        order.status = "ACTIVE"

    def _patch(self, order: FakeOrder, body: Any) -> tuple[int, dict[str, Any] | None]:
        operation = body.get("operation") if isinstance(body, dict) else None
        if order.status != "PENDING":
            raise EcsError(400, f"Certificate {order.tracking_id} is not pending approval")
        if operation == "APPROVE":
            self._approve(order)
            return 200, self._issued_json(order)
        if operation == "DECLINE":
            order.status = "DECLINED"
            order.decline_reason = str(body.get("declineReason") or "Declined by administrator")
            return 200, None
        raise EcsError(400, f"Invalid operation: {operation}")

    def _revoke(self, order: FakeOrder, body: Any) -> tuple[int, dict[str, Any] | None]:
        reason = body.get("crlReason") if isinstance(body, dict) else None
        if reason not in CRL_REASONS:
            raise EcsError(400, f"Invalid crlReason: {reason}")
        if order.status == "REVOKED":
            raise EcsError(400, f"Certificate {order.tracking_id} is already revoked")
        if order.status != "ACTIVE":
            raise EcsError(400, f"Certificate {order.tracking_id} cannot be revoked in status {order.status}")
        order.status = "REVOKED"
        order.revocation = (reason, str(body.get("revocationComment") or ""))
        return 200, None

    def _list(self, query: dict[str, list[str]]) -> dict[str, Any]:
        try:
            limit = int(query.get("limit", ["25"])[0])
            offset = int(query.get("offset", ["0"])[0])
        except ValueError:
            raise EcsError(400, "limit and offset must be integers") from None
        limit = max(1, min(limit, self.page_limit))
        orders = sorted(self.orders.values(), key=lambda o: o.tracking_id)
        serial = query.get("serialNumber", [None])[0]
        if serial is not None:
            orders = [
                o for o in orders if o.certificate and entrust_serial(o.certificate.serial_number) == serial
            ]
        page = orders[offset : offset + limit]
        return {
            "summary": {
                "timestamp": dt.datetime.now(dt.UTC).isoformat(),
                "elapsed": 1,
                "offset": offset,
                "limit": limit,
                "total": len(orders),
                "sort": "trackingId",
            },
            "certificates": [self._summary(o) for o in page],
        }

    # -- documents -------------------------------------------------------------------------------------

    def _order(self, segment: str) -> FakeOrder:
        try:
            return self.orders[int(segment)]
        except (ValueError, KeyError):
            raise EcsError(404, f"Certificate with tracking id {segment} not found") from None

    def _organizations_json(self) -> list[dict[str, Any]]:
        return [
            {"clientId": cid, "name": name, "verificationStatus": status}
            for cid, (name, status) in sorted(self.organizations.items())
        ]

    def _clients_json(self) -> list[dict[str, Any]]:
        expiry = (dt.datetime.now(dt.UTC) + dt.timedelta(days=300)).isoformat()
        return [
            {
                "clientId": cid,
                "clientName": name,
                "verificationStatus": status,
                **({"ovExpiryDate": expiry} if status == "APPROVED" else {}),
            }
            for cid, (name, status) in sorted(self.organizations.items())
        ]

    def _inventories_json(self) -> list[dict[str, Any]]:
        return [
            {"productType": t, "totalCount": 100, "remainingCount": 100, "usedCount": 0}
            for t in self.cert_types
        ]

    def _summary(self, order: FakeOrder) -> dict[str, Any]:
        document: dict[str, Any] = {
            "trackingId": order.tracking_id,
            "status": order.status,
            "uri": f"{self.url}/certificates/{order.tracking_id}",
            "certType": order.cert_type,
            "tracking": order.body.get("tracking"),
        }
        if order.certificate is not None:
            document.update(
                {
                    "dn": order.certificate.subject.rfc4514_string(),
                    "serialNumber": entrust_serial(order.certificate.serial_number),
                    "issueDateTime": order.certificate.not_valid_before_utc.isoformat(),
                    "expiresAfter": order.certificate.not_valid_after_utc.isoformat(),
                }
            )
        return document

    def _detail(self, order: FakeOrder) -> dict[str, Any]:
        document = self._summary(order)
        document["csr"] = order.body.get("csr")
        document["subjectAltName"] = order.body.get("subjectAltName")
        if order.certificate is not None:
            document.update(self._issued_json(order))
        if order.decline_reason is not None:
            document["declineReason"] = order.decline_reason
        return document

    def _issued_json(self, order: FakeOrder) -> dict[str, Any]:
        assert order.certificate is not None
        leaf = _pem(order.certificate)
        return {
            "trackingId": order.tracking_id,
            "endEntityCert": leaf,
            # As ECS answers it: the end-entity certificate first, then the chain, not in path order.
            "chainCerts": [leaf, _pem(self.issuer.root), _pem(self.issuer.certificate)],
            "serialNumber": entrust_serial(order.certificate.serial_number),
        }


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, document, headers = self.server.fake.handle(self.command, self.path, body, dict(self.headers))
        if status == DROP:
            self.close_connection = True
            return
        payload = json.dumps(document).encode() if document is not None else b""
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = do_DELETE = _serve  # noqa: N815  (http.server's naming)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the fake records requests in `FakeECS.requests` instead."""


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeECS, context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake
        self.context = context

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs in the connection's own thread: a slow or refused client must not hold
        # up the others.
        sock: socket.socket = request
        sock.settimeout(15)
        try:
            tls = self.context.wrap_socket(sock, server_side=True)
        except (ssl.SSLError, OSError):
            with self.fake._lock:
                self.fake.handshake_failures += 1
            return
        try:
            _Handler(tls, client_address, self)
        finally:
            tls.close()


_PEER: FakeECS | None = None
_LOCK = threading.Lock()


def entrust_peer() -> FakeECS:
    """The process's fake ECS, started on first use on a free loopback port and stopped at exit."""
    global _PEER  # noqa: PLW0603  (one server per test process, by design)
    with _LOCK:
        if _PEER is None:
            fake = FakeECS()
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            fake.server_cert.configure_cert(context)
            fake.client_ca.configure_trust(context)
            context.verify_mode = ssl.CERT_REQUIRED
            server = _Server(fake, context)
            fake.url = f"https://127.0.0.1:{server.server_address[1]}{BASE_PATH}"
            thread = threading.Thread(target=server.serve_forever, name="fake-ecs", daemon=True)
            thread.start()

            def stop() -> None:
                server.shutdown()
                server.server_close()

            atexit.register(stop)
            _PEER = fake
        return _PEER
