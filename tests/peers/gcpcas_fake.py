"""A fake of Google Cloud Certificate Authority Service (v1 REST API), the peer of the gcpcas tests.

No emulator exists, so this is a real HTTP server on a loopback port, started once per test process, that
answers what the official client (`privateca_v1`, REST transport, service account credentials) sends.

It is also the service account's token endpoint: `service_account_info()` writes a key whose `token_uri`
is `POST /token` here, and registers the key's public half. The grant is the OAuth 2.0 JWT-bearer grant
(RFC 7523) as Google's token endpoint takes it: an RS256 JWT signed by the key (`kid` = private_key_id,
`iss` = client_email, `aud` = token_uri, `scope` with cloud-platform, at most an hour between `iat` and
`exp`), answered `{"access_token", "expires_in", "token_type": "Bearer"}` or `400 {"error":
"invalid_grant", "error_description"}`. Every CA Service call must carry `Authorization: Bearer` with a
token issued here and not expired, else 401 UNAUTHENTICATED in Google's error shape.

The CA Service requests below were captured from google-cloud-private-ca 1.20 and are matched exactly:

    GET  /v1/projects/P/locations/L/caPools?$alt=json;enum-encoding=int          (pageSize, pageToken)
    GET  /v1/projects/P/locations/L/caPools/POOL/certificateAuthorities?$alt=...
    GET  /v1/projects/P/locations/L/certificateTemplates?$alt=...
    POST /v1/projects/P/locations/L/caPools/POOL/certificates?certificateId=..&requestId=..
         [&issuingCertificateAuthorityId=..]&$alt=...
         {"pemCsr", "lifetime": "86400s", "certificateTemplate"}
    GET  /v1/projects/P/locations/L/caPools/POOL/certificates?filter=..&pageSize=..&pageToken=..&$alt=...
    GET  /v1/projects/P/locations/L/caPools/POOL/certificates/ID?$alt=...
    POST /v1/projects/P/locations/L/caPools/POOL/certificates/ID:revoke?$alt=...   {"reason": 1, "requestId"}
    POST /v1/projects/P/locations/L/caPools/POOL:fetchCaCerts?$alt=...            {"requestId"} (optional)

`$alt=json;enum-encoding=int` asks for enums as integers (the client also sends them so, e.g. the revoke
reason); without it they are answered as names. Errors are `{"error": {"code", "message", "status",
"details"}}` with the HTTP status google.rpc.Code maps to; RESOURCE_EXHAUSTED carries a RetryInfo detail
when a test asks for one.

Behaviour modelled on the documentation:
- `requestId` must be a non-zero UUID; a repeated one gets the first (successful) answer again and creates
  nothing (CAS keeps them at least 60 minutes; the fake for ever).
- Enterprise pools require `certificateId` ([a-zA-Z0-9_-]{1,63}); a taken one is 409 ALREADY_EXISTS.
- DevOps pools ignore `certificateId` and keep no certificates: "Support for listing, describing, and
  revoking certificates: No" (CAS tiers page). Getting or revoking one is NOT_FOUND (what users report
  after creating one), listing is FAILED_PRECONDITION.
- ListCertificates filters follow AIP-160 with CAS's limits: top-level AND only (OR, NOT and parentheses
  are INVALID_ARGUMENT); newest first by create_time.
- Each pool has its own root and one or more issuing CAs under it; a certificate's lifetime is truncated
  at its CA's expiry; the CSR subject and SANs are passed through (a pool without an issuance policy).
"""

from __future__ import annotations

import atexit
import base64
import datetime as dt
import http.server
import itertools
import json
import re
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}
_ENUMS: dict[str, dict[str, int]] = {
    "tier": {"TIER_UNSPECIFIED": 0, "ENTERPRISE": 1, "DEVOPS": 2},
    "state": {
        "STATE_UNSPECIFIED": 0,
        "ENABLED": 1,
        "DISABLED": 2,
        "STAGED": 3,
        "AWAITING_USER_ACTIVATION": 4,
        "DELETED": 5,
    },
    "type": {"TYPE_UNSPECIFIED": 0, "SELF_SIGNED": 1, "SUBORDINATE": 2},
    "algorithm": {
        "SIGN_HASH_ALGORITHM_UNSPECIFIED": 0,
        "RSA_PSS_2048_SHA256": 1,
        "RSA_PKCS1_2048_SHA256": 6,
        "EC_P256_SHA256": 4,
        "EC_P384_SHA384": 5,
    },
    "reason": {
        "REVOCATION_REASON_UNSPECIFIED": 0,
        "KEY_COMPROMISE": 1,
        "CERTIFICATE_AUTHORITY_COMPROMISE": 2,
        "AFFILIATION_CHANGED": 3,
        "SUPERSEDED": 4,
        "CESSATION_OF_OPERATION": 5,
        "CERTIFICATE_HOLD": 6,
        "PRIVILEGE_WITHDRAWN": 7,
        "ATTRIBUTE_AUTHORITY_COMPROMISE": 8,
    },
}
_KEY_TYPES = {"ec-p256": "EC_P256_SHA256", "ec-p384": "EC_P384_SHA384", "rsa-2048": "RSA_PKCS1_2048_SHA256"}
_ID = re.compile(r"^[a-zA-Z0-9_-]{1,63}$")
_LIFETIME = re.compile(r"^(\d+)(?:\.\d+)?s$")
_TERM = re.compile(r"^\s*([a-z_.]+)\s*(<=|>=|!=|=|<|>)\s*(\"[^\"]*\"|\S+)\s*$")
_FILTER_FIELDS = {
    "create_time": "time",
    "update_time": "time",
    "certificate_description.subject_description.hex_serial_number": "text",
    "certificate_description.subject_description.subject.common_name": "text",
    "certificate_template": "text",
}
_P = r"/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
_POOL = _P + r"/caPools/(?P<pool>[^/:]+)"
_ROUTES = [
    ("GET", re.compile(_P + r"/caPools$"), "listCaPools"),
    ("GET", re.compile(_POOL + r"$"), "getCaPool"),
    ("GET", re.compile(_POOL + r"/certificateAuthorities$"), "listCertificateAuthorities"),
    ("GET", re.compile(_POOL + r"/certificates$"), "listCertificates"),
    ("POST", re.compile(_POOL + r"/certificates$"), "createCertificate"),
    ("GET", re.compile(_POOL + r"/certificates/(?P<cert>[^/:]+)$"), "getCertificate"),
    ("POST", re.compile(_POOL + r"/certificates/(?P<cert>[^/:]+):revoke$"), "revokeCertificate"),
    ("POST", re.compile(_POOL + r":fetchCaCerts$"), "fetchCaCerts"),
    ("GET", re.compile(_P + r"/certificateTemplates$"), "listCertificateTemplates"),
]
CA_LIFETIME = dt.timedelta(days=3650)
TOKEN_PATH = "/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
# Google's texts, as its token endpoint and its APIs answer them.
BAD_SIGNATURE = "Invalid JWT Signature."
BAD_TIMES = (
    "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
    "Check your iat and exp values in the JWT claim."
)
UNAUTHENTICATED = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other "
    "valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."
)
# How far `iat` may lie in the future (clock skew) that the fake tolerates.
CLOCK_SKEW = dt.timedelta(minutes=5)


class CasError(Exception):
    def __init__(self, status: str, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details or []


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def _hex_serial(serial: int) -> str:
    # An even number of lower-case digits, like Go's hex.EncodeToString of the serial's bytes.
    text = format(serial, "x")
    return text if len(text) % 2 == 0 else f"0{text}"


def _key(key_type: str) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    if key_type == "ec-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if key_type == "rsa-2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def _hash_for(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> hashes.SHA256 | hashes.SHA384:
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1":
        return hashes.SHA384()
    return hashes.SHA256()


def _ca_certificate(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    path_length: int | None,
) -> x509.Certificate:
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
        .sign(issuer_key, _hash_for(issuer_key))
    )


@dataclass
class FakeCA:
    name: str
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    certificate: x509.Certificate
    algorithm: str
    state: str = "ENABLED"


@dataclass
class FakeCertificate:
    name: str
    certificate: x509.Certificate
    chain: list[x509.Certificate]
    pem_csr: str
    lifetime_seconds: int
    issuer: str
    create_time: dt.datetime
    order: int
    template: str | None = None
    revocation: tuple[str, dt.datetime] | None = None


@dataclass
class FakePool:
    name: str
    tier: str
    root_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate
    cas: dict[str, FakeCA] = field(default_factory=dict)
    certificates: dict[str, FakeCertificate] = field(default_factory=dict)
    # False: pemCertificateChain stops at the issuing CA, as for a CA whose root CAS does not hold.
    chain_includes_root: bool = True


@dataclass(frozen=True)
class FakeRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    body: dict[str, Any] | None
    headers: dict[str, str]

    def header(self, name: str) -> str | None:
        """A header by its name in any case (google-auth sends `authorization` in lower case)."""
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


@dataclass(frozen=True)
class FakeGrant:
    """One request to the token endpoint: who asked (from the JWT, before it was checked) and the answer."""

    client_email: str | None
    key_id: str | None
    claims: dict[str, Any]
    assertion: str  # the signed JWT as sent
    access_token: str | None  # None: refused
    error: str | None  # "invalid_grant: Invalid JWT Signature." when refused


@dataclass
class FakeToken:
    client_email: str
    expires_at: dt.datetime


class _OAuthError(Exception):
    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


@dataclass
class _Failure:
    operation: str
    status: str
    message: str
    retry_delay: float | None
    remaining: int


class FakeCAS:
    """The fake service's state, shared by every project and location. Test hooks are the public
    methods and attributes; `handle` is what the HTTP server calls."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.url = ""
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.pools: dict[str, FakePool] = {}
            self.templates: dict[str, tuple[x509.ObjectIdentifier, ...]] = {}
            self.requests: list[FakeRequest] = []
            self.certificates_created = 0
            self.page_size = 100
            self._responses: dict[tuple[str, str], FakeCertificate] = {}
            self._failures: list[_Failure] = []
            self._order = itertools.count()
            # client_email -> key id -> public key: the service accounts' keys, as IAM holds them.
            self.accounts: dict[str, dict[str, rsa.RSAPublicKey]] = {}
            self.revoked_keys: set[str] = set()
            self.grants: list[FakeGrant] = []
            self.tokens: dict[str, FakeToken] = {}
            self.token_lifetime = 3600  # seconds, what Google issues (it says expires_in 3599)
            self.unauthenticated: list[FakeRequest] = []  # CA Service calls refused with 401

    # -- test hooks ------------------------------------------------------------------------------------

    def add_pool(
        self,
        project: str,
        location: str,
        pool: str,
        *,
        tier: str = "ENTERPRISE",
        cas: tuple[str, ...] = ("ca-1",),
        key_type: str = "ec-p256",
        chain_includes_root: bool = True,
    ) -> FakePool:
        """A pool with its own root and issuing CAs `cas` (all ENABLED) under it."""
        name = f"projects/{project}/locations/{location}/caPools/{pool}"
        root_key = ec.generate_private_key(ec.SECP256R1())
        root_name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Fake CAS"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{pool} Root CA"),
            ]
        )
        root = _ca_certificate(root_name, root_key, root_name, root_key, None)
        created = FakePool(
            name=name, tier=tier, root_key=root_key, root=root, chain_includes_root=chain_includes_root
        )
        for ca_id in cas:
            key = _key(key_type)
            subject = x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Fake CAS"),
                    x509.NameAttribute(NameOID.COMMON_NAME, f"{ca_id} Issuing CA"),
                ]
            )
            certificate = _ca_certificate(subject, key, root_name, root_key, 0)
            created.cas[ca_id] = FakeCA(
                name=f"{name}/certificateAuthorities/{ca_id}",
                key=key,
                certificate=certificate,
                algorithm=_KEY_TYPES[key_type],
            )
        with self.lock:
            self.pools[name] = created
        return created

    def add_template(
        self,
        project: str,
        location: str,
        template: str,
        eku: tuple[x509.ObjectIdentifier, ...] = (ExtendedKeyUsageOID.SERVER_AUTH,),
    ) -> str:
        name = f"projects/{project}/locations/{location}/certificateTemplates/{template}"
        with self.lock:
            self.templates[name] = eku
        return name

    def fail_next(
        self,
        operation: str,
        status: str = "RESOURCE_EXHAUSTED",
        *,
        times: int = 1,
        retry_delay: float | None = None,
        message: str | None = None,
    ) -> None:
        """Answer the next `times` calls of `operation` (e.g. "createCertificate", or "*") with an error."""
        text = message or {
            "RESOURCE_EXHAUSTED": "Quota exceeded for quota metric 'Certificate creation requests'",
            "PERMISSION_DENIED": "Permission 'privateca.caPools.list' denied on resource",
            "UNAUTHENTICATED": "Request had invalid authentication credentials.",
        }.get(status, f"injected {status}")
        with self.lock:
            self._failures.append(_Failure(operation, status, text, retry_delay, times))

    @property
    def token_uri(self) -> str:
        return f"{self.url}{TOKEN_PATH}"

    def add_service_account(self, client_email: str, key_id: str, public_key: rsa.RSAPublicKey) -> None:
        with self.lock:
            self.accounts.setdefault(client_email, {})[key_id] = public_key

    def revoke_key(self, key_id: str) -> None:
        """The key was deleted (or disabled) in IAM: grants signed with it are refused from now on. Tokens
        already issued for it stay valid until they expire, as Google's do."""
        with self.lock:
            self.revoked_keys.add(key_id)

    def expire_tokens(self) -> None:
        """Every token issued so far is past its lifetime now (as if `token_lifetime` had elapsed)."""
        with self.lock:
            past = _now() - dt.timedelta(seconds=1)
            for token in self.tokens.values():
                token.expires_at = past

    def issued(self) -> list[FakeGrant]:
        """The grants that were answered with an access token, oldest first."""
        with self.lock:
            return [g for g in self.grants if g.access_token is not None]

    def forget_request_ids(self) -> None:
        """What CAS does after its 60 minutes: a repeated requestId is a new request again."""
        with self.lock:
            self._responses.clear()

    def stored(self, pool: str) -> list[FakeCertificate]:
        """What the pool keeps, oldest first (the service's state, not what a client was told)."""
        with self.lock:
            return sorted(self._pool(pool).certificates.values(), key=lambda c: c.order)

    def calls(self, operation_path_suffix: str, method: str | None = None) -> list[FakeRequest]:
        with self.lock:
            return [
                r
                for r in self.requests
                if r.path.endswith(operation_path_suffix) and (method is None or r.method == method)
            ]

    # -- the API ---------------------------------------------------------------------------------------

    def handle(
        self, method: str, target: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        parts = urlsplit(target)
        path = unquote(parts.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        if path == TOKEN_PATH:
            return self._token_endpoint(method, body, headers)
        try:
            document = json.loads(body) if body else None
        except ValueError:
            document = None
        with self.lock:
            request = FakeRequest(method, path, query, document, headers)
            self.requests.append(request)
            ints = "enum-encoding=int" in query.get("$alt", [""])[0]
            try:
                self._authenticate(request)
                operation, params = _route(method, path)
                self._maybe_fail(operation)
                handler = getattr(self, f"_op_{operation}")
                return 200, handler(params, query, document or {}, ints)
            except CasError as exc:
                error: dict[str, Any] = {
                    "code": HTTP_STATUS[exc.status],
                    "message": exc.message,
                    "status": exc.status,
                }
                if exc.details:
                    error["details"] = exc.details
                return HTTP_STATUS[exc.status], {"error": error}

    def _authenticate(self, request: FakeRequest) -> None:
        """Google checks the credentials before anything else, even before the URL is looked up."""
        scheme, _, token = (request.header("Authorization") or "").partition(" ")
        record = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if record is None or record.expires_at <= _now():
            self.unauthenticated.append(request)
            raise CasError("UNAUTHENTICATED", UNAUTHENTICATED)

    # -- the token endpoint ----------------------------------------------------------------------------

    def _token_endpoint(
        self, method: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
        if method != "POST" or not content_type.startswith("application/x-www-form-urlencoded"):
            return 400, {"error": "invalid_request", "error_description": "Expected a form-encoded POST."}
        form = {k: v[0] for k, v in parse_qs(body.decode(errors="replace")).items()}
        with self.lock:
            try:
                header, claims = self._verify_grant(form)
            except _OAuthError as exc:
                header, claims = _peek(form.get("assertion", ""))
                self.grants.append(
                    FakeGrant(
                        client_email=claims.get("iss"),
                        key_id=header.get("kid"),
                        claims=claims,
                        assertion=form.get("assertion", ""),
                        access_token=None,
                        error=f"{exc.error}: {exc.description}",
                    )
                )
                return 400, {"error": exc.error, "error_description": exc.description}
            token = f"ya29.fake-{secrets.token_urlsafe(32)}"
            self.tokens[token] = FakeToken(claims["iss"], _now() + dt.timedelta(seconds=self.token_lifetime))
            self.grants.append(
                FakeGrant(claims["iss"], header["kid"], claims, form["assertion"], token, None)
            )
            return 200, {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"}

    def _verify_grant(self, form: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The JWT's header and claims once its signature, issuer, audience, scope and times check out."""
        if form.get("grant_type") != JWT_BEARER:
            raise _OAuthError("unsupported_grant_type", f"Invalid grant_type: {form.get('grant_type')}")
        assertion = form.get("assertion", "")
        header, claims = _peek(assertion)
        if not header or not claims:
            raise _OAuthError("invalid_grant", "Invalid JWT: the assertion is not a signed JWT.")
        encoded_header, encoded_claims, encoded_signature = assertion.split(".")
        signature = _b64decode(encoded_signature)
        keys = self.accounts.get(str(claims.get("iss")))
        if keys is None:
            raise _OAuthError("invalid_grant", "Invalid grant: account not found")
        key = keys.get(str(header.get("kid")))
        if header.get("alg") != "RS256" or key is None or header.get("kid") in self.revoked_keys:
            raise _OAuthError("invalid_grant", BAD_SIGNATURE)
        signed = f"{encoded_header}.{encoded_claims}".encode()
        try:
            key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise _OAuthError("invalid_grant", BAD_SIGNATURE) from None
        if claims.get("aud") != self.token_uri:
            raise _OAuthError("invalid_grant", "Invalid JWT: Failed audience check.")
        if CLOUD_PLATFORM not in str(claims.get("scope", "")).split():
            raise _OAuthError("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
        issued_at, expires = claims.get("iat"), claims.get("exp")
        if not isinstance(issued_at, int) or not isinstance(expires, int):
            raise _OAuthError("invalid_grant", BAD_TIMES)
        now = _now()
        earliest, latest = now - dt.timedelta(hours=1), now + CLOCK_SKEW
        starts, ends = (
            dt.datetime.fromtimestamp(issued_at, dt.UTC),
            dt.datetime.fromtimestamp(expires, dt.UTC),
        )
        if not (earliest <= starts <= latest) or not (now < ends <= starts + dt.timedelta(hours=1)):
            raise _OAuthError("invalid_grant", BAD_TIMES)
        return header, claims

    def _maybe_fail(self, operation: str) -> None:
        for failure in self._failures:
            if failure.remaining > 0 and failure.operation in (operation, "*"):
                failure.remaining -= 1
                details = []
                if failure.retry_delay is not None:
                    details.append(
                        {
                            "@type": "type.googleapis.com/google.rpc.RetryInfo",
                            "retryDelay": f"{failure.retry_delay:g}s",
                        }
                    )
                raise CasError(failure.status, failure.message, details)

    # -- operations ------------------------------------------------------------------------------------

    def _op_listCaPools(  # noqa: N802  (named after the RPC)
        self, path: dict[str, str], query: dict[str, list[str]], _body: dict[str, Any], ints: bool
    ) -> dict[str, Any]:
        parent = f"projects/{path['project']}/locations/{path['location']}"
        pools = [p for n, p in sorted(self.pools.items()) if n.startswith(parent + "/")]
        page, token = self._page(pools, query)
        return self._listing("caPools", [self._pool_json(p, ints) for p in page], token)

    def _op_getCaPool(  # noqa: N802
        self, path: dict[str, str], _query: dict[str, list[str]], _body: dict[str, Any], ints: bool
    ) -> dict[str, Any]:
        return self._pool_json(self._pool(self._pool_name(path)), ints)

    def _op_listCertificateAuthorities(  # noqa: N802
        self, path: dict[str, str], query: dict[str, list[str]], _body: dict[str, Any], ints: bool
    ) -> dict[str, Any]:
        pool = self._pool(self._pool_name(path))
        page, token = self._page(list(pool.cas.values()), query)
        return self._listing("certificateAuthorities", [self._ca_json(pool, ca, ints) for ca in page], token)

    def _op_listCertificateTemplates(  # noqa: N802
        self, path: dict[str, str], query: dict[str, list[str]], _body: dict[str, Any], _ints: bool
    ) -> dict[str, Any]:
        parent = f"projects/{path['project']}/locations/{path['location']}"
        names = sorted(n for n in self.templates if n.startswith(parent + "/"))
        page, token = self._page(names, query)
        return self._listing("certificateTemplates", [{"name": n} for n in page], token)

    def _op_createCertificate(  # noqa: N802
        self, path: dict[str, str], query: dict[str, list[str]], body: dict[str, Any], ints: bool
    ) -> dict[str, Any]:
        pool = self._pool(self._pool_name(path))
        request_id = _first(query, "requestId")
        if request_id is not None:
            _check_request_id(request_id)
            earlier = self._responses.get((pool.name, request_id))
            if earlier is not None:
                return self._certificate_json(earlier, ints)
        certificate_id = _first(query, "certificateId")
        if pool.tier == "ENTERPRISE":
            if not certificate_id:
                raise CasError("INVALID_ARGUMENT", "certificate_id is required for Enterprise tier CA pools.")
            if not _ID.match(certificate_id):
                raise CasError("INVALID_ARGUMENT", f"certificate_id {certificate_id!r} is invalid.")
            if certificate_id in pool.certificates:
                raise CasError(
                    "ALREADY_EXISTS", f"Resource '{pool.name}/certificates/{certificate_id}' already exists"
                )
        else:
            certificate_id = uuid.uuid4().hex[:20]  # DevOps pools ignore the id asked for
        issuer = self._issuer(pool, _first(query, "issuingCertificateAuthorityId"))
        template = body.get("certificateTemplate") or None
        if template is not None and template not in self.templates:
            raise CasError("NOT_FOUND", f"Resource '{template}' was not found")
        csr = _csr(body)
        lifetime = _lifetime(body)
        record = self._sign(
            pool=pool,
            issuer=issuer,
            certificate_id=certificate_id,
            csr=csr,
            pem_csr=body["pemCsr"],
            lifetime=lifetime,
            template=template,
        )
        self.certificates_created += 1
        if pool.tier == "ENTERPRISE":
            pool.certificates[certificate_id] = record
        if request_id is not None:
            self._responses[(pool.name, request_id)] = record
        return self._certificate_json(record, ints)

    def _op_getCertificate(  # noqa: N802
        self, path: dict[str, str], _query: dict[str, list[str]], _body: dict[str, Any], ints: bool
    ) -> dict[str, Any]:
        return self._certificate_json(self._certificate(path), ints)

    def _op_listCertificates(  # noqa: N802
        self, path: dict[str, str], query: dict[str, list[str]], _body: dict[str, Any], ints: bool
    ) -> dict[str, Any]:
        pool = self._pool(self._pool_name(path))
        if pool.tier != "ENTERPRISE":
            raise CasError(
                "FAILED_PRECONDITION",
                f"CaPool {pool.name} is in the DevOps tier, which does not store certificates.",
            )
        matches = _filter(_first(query, "filter") or "")
        found = [c for c in pool.certificates.values() if matches(c)]
        found.sort(key=lambda c: (c.create_time, c.order), reverse=True)  # newest first
        page, token = self._page(found, query)
        return self._listing("certificates", [self._certificate_json(c, ints) for c in page], token)

    def _op_revokeCertificate(  # noqa: N802
        self, path: dict[str, str], _query: dict[str, list[str]], body: dict[str, Any], ints: bool
    ) -> dict[str, Any]:
        record = self._certificate(path)
        request_id = body.get("requestId")
        if request_id:
            _check_request_id(request_id)
            if (record.name, request_id) in self._responses:
                return self._certificate_json(record, ints)
        reason = body.get("reason", 0)
        names = {v: k for k, v in _ENUMS["reason"].items()}
        name = names.get(reason) if isinstance(reason, int) else reason
        if name not in _ENUMS["reason"]:
            raise CasError("INVALID_ARGUMENT", f"Invalid value for reason: {reason!r}")
        if record.revocation is not None:
            raise CasError("FAILED_PRECONDITION", "Certificate is already revoked.")
        record.revocation = (name, _now())
        if request_id:
            self._responses[(record.name, request_id)] = record
        return self._certificate_json(record, ints)

    def _op_fetchCaCerts(  # noqa: N802
        self, path: dict[str, str], _query: dict[str, list[str]], _body: dict[str, Any], _ints: bool
    ) -> dict[str, Any]:
        pool = self._pool(self._pool_name(path))
        return {
            "caCerts": [
                {"certificates": [_pem(ca.certificate), _pem(pool.root)]}
                for ca in pool.cas.values()
                if ca.state == "ENABLED"
            ]
        }

    # -- helpers ---------------------------------------------------------------------------------------

    @staticmethod
    def _pool_name(path: dict[str, str]) -> str:
        return f"projects/{path['project']}/locations/{path['location']}/caPools/{path['pool']}"

    def _pool(self, name: str) -> FakePool:
        pool = self.pools.get(name)
        if pool is None:
            raise CasError("NOT_FOUND", f"Resource '{name}' was not found")
        return pool

    def _certificate(self, path: dict[str, str]) -> FakeCertificate:
        pool = self._pool(self._pool_name(path))
        record = pool.certificates.get(path["cert"])
        if record is None:
            # Also what DevOps pools answer: they never stored the certificate.
            raise CasError("NOT_FOUND", f"Resource '{pool.name}/certificates/{path['cert']}' was not found")
        return record

    def _issuer(self, pool: FakePool, ca_id: str | None) -> FakeCA:
        if ca_id:
            ca = pool.cas.get(ca_id)
            if ca is None:
                raise CasError(
                    "NOT_FOUND", f"Resource '{pool.name}/certificateAuthorities/{ca_id}' was not found"
                )
            if ca.state != "ENABLED":
                raise CasError("FAILED_PRECONDITION", f"CertificateAuthority {ca.name} is not enabled.")
            return ca
        enabled = [ca for ca in pool.cas.values() if ca.state == "ENABLED"]
        if not enabled:
            raise CasError("FAILED_PRECONDITION", f"CaPool {pool.name} has no enabled CertificateAuthority.")
        return enabled[0]

    def _sign(
        self,
        *,
        pool: FakePool,
        issuer: FakeCA,
        certificate_id: str,
        csr: x509.CertificateSigningRequest,
        pem_csr: str,
        lifetime: int,
        template: str | None,
    ) -> FakeCertificate:
        now = _now()
        public_key = csr.public_key()
        not_after = min(now + dt.timedelta(seconds=lifetime), issuer.certificate.not_valid_after_utc)
        eku = self.templates.get(template, ()) if template else ()
        if not eku:
            eku = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = (
            x509.CertificateBuilder()
            .subject_name(csr.subject)
            .issuer_name(issuer.certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(public_key),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
            )
        )
        try:
            san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            builder = builder.add_extension(san, critical=len(csr.subject) == 0)
        except x509.ExtensionNotFound:
            pass
        certificate = builder.sign(issuer.key, _hash_for(issuer.key))
        chain = [issuer.certificate, pool.root] if pool.chain_includes_root else [issuer.certificate]
        return FakeCertificate(
            name=f"{pool.name}/certificates/{certificate_id}",
            certificate=certificate,
            chain=chain,
            pem_csr=pem_csr,
            lifetime_seconds=lifetime,
            issuer=issuer.name,
            create_time=now,
            order=next(self._order),
            template=template,
        )

    def _page(self, items: list[Any], query: dict[str, list[str]]) -> tuple[list[Any], str | None]:
        size_text = _first(query, "pageSize")
        size = int(size_text) if size_text else self.page_size
        size = max(1, min(size if size > 0 else self.page_size, 1000))
        token = _first(query, "pageToken")
        start = 0
        if token:
            try:
                start = int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("offset:"))
            except ValueError:
                raise CasError("INVALID_ARGUMENT", "Invalid page token.") from None
        end = start + size
        following = base64.urlsafe_b64encode(f"offset:{end}".encode()).decode() if end < len(items) else None
        return items[start:end], following

    @staticmethod
    def _listing(key: str, items: list[dict[str, Any]], token: str | None) -> dict[str, Any]:
        document: dict[str, Any] = {key: items} if items else {}
        if token:
            document["nextPageToken"] = token
        return document

    @staticmethod
    def _enum(kind: str, value: str, ints: bool) -> int | str:
        return _ENUMS[kind][value] if ints else value

    def _pool_json(self, pool: FakePool, ints: bool) -> dict[str, Any]:
        return {"name": pool.name, "tier": self._enum("tier", pool.tier, ints)}

    def _ca_json(self, pool: FakePool, ca: FakeCA, ints: bool) -> dict[str, Any]:
        common_name = ca.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        return {
            "name": ca.name,
            "type": self._enum("type", "SUBORDINATE", ints),
            "tier": self._enum("tier", pool.tier, ints),
            "state": self._enum("state", ca.state, ints),
            "pemCaCertificates": [_pem(ca.certificate), _pem(pool.root)],
            "keySpec": {"algorithm": self._enum("algorithm", ca.algorithm, ints)},
            "config": {"subjectConfig": {"subject": {"commonName": common_name, "organization": "Fake CAS"}}},
            "lifetime": f"{int(CA_LIFETIME.total_seconds())}s",
            "createTime": _stamp(ca.certificate.not_valid_before_utc),
        }

    def _certificate_json(self, record: FakeCertificate, ints: bool) -> dict[str, Any]:
        certificate = record.certificate
        common_names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        subject = {"commonName": common_names[0].value} if common_names else {}
        document: dict[str, Any] = {
            "name": record.name,
            "pemCsr": record.pem_csr,
            "lifetime": f"{record.lifetime_seconds}s",
            "issuerCertificateAuthority": record.issuer,
            "pemCertificate": _pem(certificate),
            "pemCertificateChain": [_pem(c) for c in record.chain],
            "createTime": _stamp(record.create_time),
            "updateTime": _stamp(record.revocation[1] if record.revocation else record.create_time),
            "certificateDescription": {
                "subjectDescription": {
                    "subject": subject,
                    "hexSerialNumber": _hex_serial(certificate.serial_number),
                    "notBeforeTime": _stamp(certificate.not_valid_before_utc),
                    "notAfterTime": _stamp(certificate.not_valid_after_utc),
                },
            },
        }
        if record.template:
            document["certificateTemplate"] = record.template
        if record.revocation is not None:
            reason, moment = record.revocation
            document["revocationDetails"] = {
                "revocationState": self._enum("reason", reason, ints),
                "revocationTime": _stamp(moment),
            }
        return document


def _route(method: str, path: str) -> tuple[str, dict[str, str]]:
    for verb, pattern, operation in _ROUTES:
        match = pattern.match(path)
        if match and verb == method:
            return operation, match.groupdict()
    raise CasError("NOT_FOUND", f"The requested URL {path} was not found on this server.")


def _peek(assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A JWT's header and claims, unverified; ({}, {}) when it is not header.claims.signature."""
    try:
        encoded_header, encoded_claims, encoded_signature = assertion.split(".")
        header = json.loads(_b64decode(encoded_header))
        claims = json.loads(_b64decode(encoded_claims))
        _b64decode(encoded_signature)
    except ValueError:
        return {}, {}
    if not isinstance(header, dict) or not isinstance(claims, dict):
        return {}, {}
    return header, claims


def _b64decode(text: str) -> bytes:
    """base64url without padding, as in a JWS (RFC 7515); ValueError when it is not."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError("not base64url") from exc


def _first(query: dict[str, list[str]], key: str) -> str | None:
    values = query.get(key)
    return values[0] if values else None


def _check_request_id(value: str) -> None:
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        raise CasError("INVALID_ARGUMENT", f"request_id {value!r} is not a valid UUID.") from None
    if parsed.int == 0:
        raise CasError("INVALID_ARGUMENT", "request_id must not be the zero UUID.")


def _csr(body: dict[str, Any]) -> x509.CertificateSigningRequest:
    pem = body.get("pemCsr")
    if not pem:
        raise CasError("INVALID_ARGUMENT", "Only CSR-based issuance (pem_csr) is supported by this fake.")
    try:
        csr = x509.load_pem_x509_csr(pem.encode())
    except ValueError:
        raise CasError("INVALID_ARGUMENT", "pem_csr could not be parsed.") from None
    if not csr.is_signature_valid:
        raise CasError("INVALID_ARGUMENT", "pem_csr has an invalid signature.")
    return csr


def _lifetime(body: dict[str, Any]) -> int:
    match = _LIFETIME.match(str(body.get("lifetime", "")))
    if not match or int(match.group(1)) <= 0:
        raise CasError("INVALID_ARGUMENT", "lifetime is required and must be a positive duration.")
    return int(match.group(1))


def _filter(text: str) -> Any:
    """A predicate on FakeCertificate for an AIP-160 filter within CAS's limits (top-level AND only)."""
    if not text.strip():
        return lambda _record: True
    if re.search(r"\bOR\b|\bNOT\b|[()]|^\s*-", text):
        raise CasError("INVALID_ARGUMENT", "Only top level AND operators are supported in filter.")
    tests = []
    for term in re.split(r"\s+AND\s+", text.strip()):
        match = _TERM.match(term)
        if not match or match.group(1) not in _FILTER_FIELDS:
            raise CasError("INVALID_ARGUMENT", f"Invalid filter term: {term!r}")
        tests.append((match.group(1), match.group(2), match.group(3).strip('"')))

    def value_of(record: FakeCertificate, name: str) -> Any:
        if name == "create_time":
            return record.create_time
        if name == "update_time":
            return record.revocation[1] if record.revocation else record.create_time
        if name.endswith("hex_serial_number"):
            return _hex_serial(record.certificate.serial_number)
        if name.endswith("common_name"):
            names = record.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            return names[0].value if names else ""
        return record.template or ""

    def compare(left: Any, op: str, right: Any) -> bool:
        outcomes: dict[str, bool] = {
            "=": left == right,
            "!=": left != right,
            "<": left < right,
            "<=": left <= right,
            ">": left > right,
            ">=": left >= right,
        }
        return outcomes[op]

    def matches(record: FakeCertificate) -> bool:
        for name, op, raw in tests:
            if _FILTER_FIELDS[name] == "time":
                try:
                    right: Any = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
                except ValueError:
                    raise CasError("INVALID_ARGUMENT", f"Invalid timestamp in filter: {raw!r}") from None
            elif op in ("=", "!="):
                right = raw
            else:
                raise CasError("INVALID_ARGUMENT", f"Operator {op} is not supported for {name}.")
            if not compare(value_of(record, name), op, right):
                return False
        return True

    return matches


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the client's requests session reuses connections
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, document = self.server.fake.handle(self.command, self.path, body, dict(self.headers))
        payload = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = do_DELETE = _serve  # noqa: N815  (http.server's naming)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the fake records requests in `FakeCAS.requests` instead."""


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeCAS) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake


_PEER: FakeCAS | None = None
_LOCK = threading.Lock()


def gcpcas_peer() -> FakeCAS:
    """The process's fake CA Service, started on first use on a free loopback port and stopped at exit
    (test modules share it and reset its state)."""
    global _PEER  # noqa: PLW0603  (one server per test process, by design)
    with _LOCK:
        if _PEER is None:
            fake = FakeCAS()
            server = _Server(fake)
            fake.url = f"http://127.0.0.1:{server.server_address[1]}"
            thread = threading.Thread(target=server.serve_forever, name="fake-cas", daemon=True)
            thread.start()

            def stop() -> None:
                server.shutdown()
                server.server_close()

            atexit.register(stop)
            _PEER = fake
        return _PEER


SERVICE_ACCOUNT_KEY_ID = "0123456789abcdef0123456789abcdef01234567"
_SERVICE_ACCOUNT_KEY: rsa.RSAPrivateKey | None = None


def service_account_info(project: str = "private-ca-342871") -> dict[str, str]:
    """A service account key document as Google Cloud hands it out, with a real (test) RSA key, whose
    `token_uri` is the fake's token endpoint; the fake learns the key's public half (again after a
    `reset()`, so call this after resetting the fake)."""
    global _SERVICE_ACCOUNT_KEY  # noqa: PLW0603  (an RSA key takes a while; one per process is enough)
    if _SERVICE_ACCOUNT_KEY is None:
        _SERVICE_ACCOUNT_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    client_email = f"ca-connector@{project}.iam.gserviceaccount.com"
    peer = gcpcas_peer()
    peer.add_service_account(client_email, SERVICE_ACCOUNT_KEY_ID, _SERVICE_ACCOUNT_KEY.public_key())
    private_key = _SERVICE_ACCOUNT_KEY.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "project_id": project,
        "private_key_id": SERVICE_ACCOUNT_KEY_ID,
        "private_key": private_key,
        "client_email": client_email,
        "client_id": "123456789012345678901",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": peer.token_uri,
    }
