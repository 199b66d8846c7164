"""The `gcpcas` backend type: Google Cloud Certificate Authority Service through `privateca_v1`.

What CAS calls things, and how our contract maps onto them:

- A **CA pool** (`projects/P/locations/L/caPools/POOL`) is what certificates are requested from; CAS picks
  one of its enabled CAs unless the request names one. Every CA is reported by `check()` with the id
  `POOL/CA` (the short form: the backend's -project and -location complete it), and `-ca` (or a profile)
  may name either `POOL/CA` (that CA issues), or just `POOL` (CAS picks), or a full resource name.
- A pool has a **tier**. Enterprise pools keep every certificate (list, get, revoke); DevOps pools keep
  none, so revoke and scan are refused there (NotSupported), and the tier is shown in each CA's name.
- Issuance is synchronous: `create_certificate` returns the signed certificate, so there is no `collect`.

Exactly once: the certificate id and the request id sent to CAS both derive from our request id. CAS
de-duplicates the request id for at least 60 minutes; after that, an Enterprise pool answers a redelivered
request with ALREADY_EXISTS for the certificate id, and we fetch the certificate issued the first time.
(DevOps pools ignore the certificate id; beyond the 60 minutes the connector's journal is what prevents a
second certificate.)

CAS ignores the CSR subject (and SANs) unless the pool's issuance policy or the template allows
pass-through; the certificate we return is what CAS signed, which may differ from the CSR.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from caconnector.backends.base import (
    BackendContext,
    CAInfo,
    CheckResult,
    EnrollRequest,
    Issued,
    RevokeRequest,
)
from caconnector.backends.errors import AuthError, ConfigError, NotSupported, Rejected
from caconnector.backends.gcpcas.client import (
    CALL_TIMEOUT_SECONDS,
    CasClient,
    CertificateExists,
    cas_errors,
    connect,
)
from caconnector.backends.gcpcas.config import GcpcasConfig
from caconnector.pki.chain import is_self_signed, order_chain
from caconnector.pki.keys import key_type_of, public_keys_equal
from caconnector.pki.names import common_name
from caconnector.pki.revocation import RevocationReason
from caconnector.pki.serial import canonical_serial

if TYPE_CHECKING:
    from google.cloud.security.privateca_v1 import Certificate, CertificateAuthority

    from caconnector.backends.base import Backend, Scanner

DEFAULT_LIFETIME_DAYS = 90
ENTERPRISE = "ENTERPRISE"
DEVOPS = "DEVOPS"
TIER_NAMES = {ENTERPRISE: "Enterprise", DEVOPS: "DevOps"}
DEVOPS_REFUSAL = "not supported by this pool tier (DevOps pools keep no certificates)"

# uuid5 namespace of the request ids we send: CAS wants a UUID (not the zero UUID), and the same request
# of ours must always give the same one.
_REQUEST_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:caconnector:backends:gcpcas")
# CAS certificate ids: [a-zA-Z0-9_-]{1,63}, unique in the location. Ours: a readable slug of the request
# id plus 16 hex digits of its SHA-256, at most 57 characters, lower case.
_SLUG_LENGTH = 40
_SEGMENT = re.compile(r"^[A-Za-z0-9_-]{1,63}$")
_RESOURCE = re.compile(
    r"^projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/caPools/(?P<pool>[^/]+)"
    r"(?:/certificateAuthorities/(?P<ca>[^/]+))?$"
)
# keySpec.algorithm -> our key type names (caconnector.pki.keys); RSA PSS and PKCS#1 keys are both "rsa".
_ALGORITHM_KEY_TYPES = {
    "RSA_PSS_2048_SHA256": "rsa-2048",
    "RSA_PSS_3072_SHA256": "rsa-3072",
    "RSA_PSS_4096_SHA256": "rsa-4096",
    "RSA_PKCS1_2048_SHA256": "rsa-2048",
    "RSA_PKCS1_3072_SHA256": "rsa-3072",
    "RSA_PKCS1_4096_SHA256": "rsa-4096",
    "EC_P256_SHA256": "ec-p256",
    "EC_P384_SHA384": "ec-p384",
}
_STATES = {
    "ENABLED": "active",
    "DISABLED": "disabled",
    "STAGED": "staged",
    "AWAITING_USER_ACTIVATION": "awaiting-activation",
    "DELETED": "deleted",
}
# RFC 5280 reason -> privateca_v1.RevocationReason member name.
_REASONS = {
    RevocationReason.UNSPECIFIED: "REVOCATION_REASON_UNSPECIFIED",
    RevocationReason.KEY_COMPROMISE: "KEY_COMPROMISE",
    RevocationReason.CA_COMPROMISE: "CERTIFICATE_AUTHORITY_COMPROMISE",
    RevocationReason.AFFILIATION_CHANGED: "AFFILIATION_CHANGED",
    RevocationReason.SUPERSEDED: "SUPERSEDED",
    RevocationReason.CESSATION_OF_OPERATION: "CESSATION_OF_OPERATION",
    RevocationReason.CERTIFICATE_HOLD: "CERTIFICATE_HOLD",
    RevocationReason.PRIVILEGE_WITHDRAWN: "PRIVILEGE_WITHDRAWN",
    RevocationReason.AA_COMPROMISE: "ATTRIBUTE_AUTHORITY_COMPROMISE",
}
_SUBJECT_FIELDS = (
    ("country_code", "C"),
    ("province", "ST"),
    ("locality", "L"),
    ("organization", "O"),
    ("organizational_unit", "OU"),
    ("common_name", "CN"),
)


def certificate_id(request_id: str) -> str:
    """The CAS certificate id for one of our requests: deterministic, [a-z0-9-], at most 57 characters."""
    digest = hashlib.sha256(request_id.encode()).hexdigest()[:16]
    slug = re.sub(r"[^a-z0-9]+", "-", request_id.lower()).strip("-")[:_SLUG_LENGTH].strip("-")
    return f"{slug}-{digest}" if slug else f"req-{digest}"


def cas_request_id(*parts: str) -> str:
    """A CAS request id (a UUID) derived from what identifies the operation, so a retry repeats it."""
    return str(uuid.uuid5(_REQUEST_NAMESPACE, "\x1f".join(parts)))


@dataclass(frozen=True)
class _Target:
    """Where a request goes: a pool, and the CA in it when one is named."""

    pool: str  # full resource name
    ca: str | None  # the CA's id inside the pool


def _short(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def _enum_name(value: Any) -> str:
    # proto-plus enums are IntEnums; a value the SDK does not know yet arrives as a plain int.
    return str(getattr(value, "name", value))


def _load_pems(pems: Iterable[str]) -> list[x509.Certificate]:
    certificates: list[x509.Certificate] = []
    for pem in pems:
        certificates.extend(x509.load_pem_x509_certificates(pem.encode()))
    return certificates


def open_cas(config: GcpcasConfig, context: BackendContext) -> GoogleCAS:
    """The backend with the real SDK client (built without any network traffic)."""
    return GoogleCAS(
        connect(config, context.name),
        project=config.project,
        location=config.location,
        name=context.name,
        now=context.now,
    )


class GoogleCAS:
    """One project and location of CA Service: its pools and their CAs."""

    def __init__(
        self,
        client: CasClient,
        *,
        project: str,
        location: str,
        name: str,
        now: Callable[[], dt.datetime],
    ) -> None:
        self._client = client
        self._parent = f"projects/{project}/locations/{location}"
        self._name = name
        self._now = now
        self._tiers: dict[str, str] | None = None
        self._ca_certificates: dict[str, list[x509.Certificate]] = {}

    # -- required -------------------------------------------------------------------------------------

    def check(self) -> CheckResult:
        cas: list[CAInfo] = []
        for pool, tier in self._pool_tiers().items():
            with cas_errors(self._name, f"listing the CAs of pool {_short(pool)}"):
                authorities = list(
                    self._client.list_certificate_authorities({"parent": pool}, timeout=CALL_TIMEOUT_SECONDS)
                )
            cas.extend(self._ca_info(pool, tier, authority) for authority in authorities)
        return CheckResult(cas=tuple(cas), templates=self._templates())

    def enroll(self, request: EnrollRequest) -> Issued:
        target = self._target(request.ca)
        days = DEFAULT_LIFETIME_DAYS if request.validity_days is None else request.validity_days
        if days < 1:
            raise Rejected(f"validity of {days} days is out of range; ask for at least 1 day")
        certificate: dict[str, Any] = {
            "pem_csr": request.csr.public_bytes(serialization.Encoding.PEM).decode("ascii"),
            # CAS truncates the lifetime where it would outlive the issuing CA.
            "lifetime": dt.timedelta(days=days),
        }
        if request.template:
            certificate["certificate_template"] = self._template_name(request.template)
        cert_id = certificate_id(request.request_id)
        call: dict[str, Any] = {
            "parent": target.pool,
            # Required on Enterprise pools, ignored on DevOps pools.
            "certificate_id": cert_id,
            "certificate": certificate,
            "request_id": cas_request_id("create-certificate", request.request_id),
        }
        if target.ca:
            call["issuing_certificate_authority_id"] = target.ca
        try:
            with cas_errors(self._name, f"issuing in pool {_short(target.pool)}", not_found=Rejected):
                created = self._client.create_certificate(call, timeout=CALL_TIMEOUT_SECONDS)
        except CertificateExists:
            # Our id is taken, so this request was issued before (a redelivery after CAS forgot the
            # request id): hand back that certificate rather than ordering a second one.
            created = self._existing(f"{target.pool}/certificates/{cert_id}", request)
        return self._issued(created, target.pool)

    def revoke(self, request: RevokeRequest) -> None:
        """Revoke by serial: CAS revokes by certificate name, so the serial is looked up first."""
        try:
            serial = canonical_serial(request.serial)
        except (TypeError, ValueError) as exc:
            raise Rejected(str(exc)) from None
        found = self._find_by_serial(serial, request.ca)
        if "revocation_details" in found:
            return  # already revoked: revoking is idempotent, the first date and reason stand
        call = {
            "name": found.name,
            "reason": self._revocation_reason(request.reason),
            "request_id": cas_request_id("revoke-certificate", found.name, request.reason.value),
        }
        try:
            with cas_errors(self._name, f"revoking serial {serial}", not_found=Rejected):
                self._client.revoke_certificate(call, timeout=CALL_TIMEOUT_SECONDS)
        except Rejected:
            # FAILED_PRECONDITION when someone revoked it between our lookup and our call: fine.
            with cas_errors(self._name, f"reading certificate {_short(found.name)}", not_found=Rejected):
                again = self._client.get_certificate({"name": found.name}, timeout=CALL_TIMEOUT_SECONDS)
            if "revocation_details" not in again:
                raise

    # -- optional abilities ---------------------------------------------------------------------------

    def scan(self, since: dt.datetime | None = None) -> Iterator[Issued]:
        """Every certificate the Enterprise pools hold (created at or after `since`), newest first as
        CAS lists them. DevOps pools keep no certificates and are skipped."""
        pools = [pool for pool, tier in self._pool_tiers().items() if tier != DEVOPS]
        if not pools:
            raise NotSupported(f"backend {self._name!r}: scan is {DEVOPS_REFUSAL}")
        request: dict[str, Any] = {}
        if since is not None:
            # Filters follow AIP-160, but CAS accepts only top-level AND; timestamps are RFC 3339 strings.
            stamp = since.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            request["filter"] = f'create_time>="{stamp}"'
        for pool in pools:
            with cas_errors(self._name, f"listing the certificates of pool {_short(pool)}"):
                for certificate in self._client.list_certificates(
                    {**request, "parent": pool}, timeout=CALL_TIMEOUT_SECONDS
                ):
                    if certificate.pem_certificate:
                        yield self._issued(certificate, pool)

    # -- helpers ---------------------------------------------------------------------------------------

    def _pool_tiers(self) -> dict[str, str]:
        """Pool resource name -> tier name, listed once per backend instance (one job)."""
        if self._tiers is None:
            with cas_errors(self._name, f"listing the CA pools of {self._parent}"):
                pools = list(
                    self._client.list_ca_pools({"parent": self._parent}, timeout=CALL_TIMEOUT_SECONDS)
                )
            if not pools:
                raise ConfigError(
                    f"backend {self._name!r}: {self._parent} has no CA pools; check -project and -location "
                    "(a CA Service location such as us-east1), or create a pool"
                )
            self._tiers = {pool.name: _enum_name(pool.tier) for pool in pools}
        return self._tiers

    def _templates(self) -> tuple[str, ...]:
        # Templates are optional: a service account allowed to issue may lack
        # privateca.certificateTemplates.list, which must not make the whole backend Offline.
        try:
            with cas_errors(self._name, "listing certificate templates"):
                templates = self._client.list_certificate_templates(
                    {"parent": self._parent}, timeout=CALL_TIMEOUT_SECONDS
                )
                return tuple(sorted(_short(t.name) for t in templates))
        except AuthError:
            return ()

    def _template_name(self, template: str) -> str:
        if template.startswith("projects/"):
            return template
        if not _SEGMENT.match(template):
            raise Rejected(f"template {template!r} is not a CA Service certificate template id")
        return f"{self._parent}/certificateTemplates/{template}"

    def _ca_info(self, pool: str, tier: str, authority: CertificateAuthority) -> CAInfo:
        ca_id = f"{_short(pool)}/{_short(authority.name)}"
        certificates = _load_pems(authority.pem_ca_certificates)
        # pemCaCertificates: the CA's own certificate first, then its issuers.
        certificate = certificates[0] if certificates else None
        key_type = _ALGORITHM_KEY_TYPES.get(_enum_name(authority.key_spec.algorithm))
        if key_type is None:
            # A Cloud KMS key (keySpec.cloudKmsKeyVersion) names no algorithm: read the certificate.
            key_type = key_type_of(certificate.public_key()) if certificate is not None else "unknown"
        state = _STATES.get(_enum_name(authority.state), _enum_name(authority.state).lower())
        not_after = certificate.not_valid_after_utc if certificate is not None else None
        if not_after is not None and not_after <= self._now() and state == "active":
            state = "expired"
        if certificate is not None:
            subject = certificate.subject.rfc4514_string()
            label = common_name(certificate.subject) or subject
        else:
            # Not activated yet: only the configured subject exists.
            configured = authority.config.subject_config.subject
            subject = ",".join(
                f"{short}={getattr(configured, field)}"
                for field, short in reversed(_SUBJECT_FIELDS)
                if getattr(configured, field)
            )
            label = configured.common_name or _short(authority.name)
        tier_name = TIER_NAMES.get(tier, tier.title())
        note = "" if tier != DEVOPS else ": issue only, no revoke or scan"
        return CAInfo(
            id=ca_id,
            name=f"{label} (pool {_short(pool)}, {tier_name} tier{note})",
            subject=subject,
            key_type=key_type,
            serial=canonical_serial(certificate.serial_number) if certificate is not None else "",
            not_after=not_after,
            state=state,
            certificate=certificate,
        )

    def _target(self, ca: str | None) -> _Target:
        """The pool (and CA) a request names: `POOL/CA`, `POOL`, a full resource name, or nothing when
        the location has exactly one pool."""
        if ca is None:
            pools = list(self._pool_tiers())
            if len(pools) != 1:
                raise Rejected(
                    f"backend {self._name!r} has {len(pools)} CA pools ({', '.join(map(_short, pools))}); "
                    "name one with -ca POOL or POOL/CA"
                )
            return _Target(pool=pools[0], ca=None)
        match = _RESOURCE.match(ca)
        if match:
            parent = f"projects/{match['project']}/locations/{match['location']}"
            if parent != self._parent:
                raise Rejected(f"CA {ca!r} is not in {self._parent}, where backend {self._name!r} works")
            return _Target(pool=f"{parent}/caPools/{match['pool']}", ca=match["ca"])
        parts = ca.split("/")
        if len(parts) > 2 or not all(_SEGMENT.match(part) for part in parts):
            raise Rejected(f"CA {ca!r} is not a CA Service pool; give POOL or POOL/CA (see backend cas)")
        return _Target(pool=f"{self._parent}/caPools/{parts[0]}", ca=parts[1] if len(parts) == 2 else None)

    def _existing(self, name: str, request: EnrollRequest) -> Certificate:
        with cas_errors(self._name, f"reading certificate {_short(name)}", not_found=Rejected):
            existing = self._client.get_certificate({"name": name}, timeout=CALL_TIMEOUT_SECONDS)
        issued = x509.load_pem_x509_certificate(existing.pem_certificate.encode())
        if not public_keys_equal(issued.public_key(), request.csr.public_key()):
            # Same id, another key: not our earlier delivery. Never hand out someone else's certificate.
            raise Rejected(
                f"certificate id {_short(name)} already exists in CA Service for another key; "
                "the request id was reused for a different CSR"
            )
        return existing

    def _issued(self, certificate: Certificate, pool: str) -> Issued:
        leaf = x509.load_pem_x509_certificate(certificate.pem_certificate.encode())
        candidates = _load_pems(certificate.pem_certificate_chain)
        chain = order_chain(leaf, candidates)
        if not chain or not is_self_signed(chain[-1]):
            # pemCertificateChain may stop below the root (a CA subordinate to an external root, or an
            # older chain): the pool's CA certificates complete it.
            chain = order_chain(leaf, [*candidates, *self._pool_ca_certificates(pool)])
        # A chain that still ends below a root is returned as it is: the certificate exists at the CA,
        # and failing here would only make the manager ask again for the same answer.
        return Issued(certificate=leaf, chain=tuple(chain), order_ref=certificate.name or None)

    def _pool_ca_certificates(self, pool: str) -> list[x509.Certificate]:
        if pool not in self._ca_certificates:
            with cas_errors(self._name, f"fetching the CA certificates of pool {_short(pool)}"):
                response = self._client.fetch_ca_certs({"ca_pool": pool}, timeout=CALL_TIMEOUT_SECONDS)
            self._ca_certificates[pool] = [
                certificate for chain in response.ca_certs for certificate in _load_pems(chain.certificates)
            ]
        return self._ca_certificates[pool]

    def _find_by_serial(self, serial: str, ca: str | None) -> Certificate:
        """The certificate with this serial in the pool `ca` names, or in every Enterprise pool."""
        tiers = self._pool_tiers()
        if ca is not None:
            pool = self._target(ca).pool
            if tiers.get(pool) == DEVOPS:
                raise NotSupported(f"backend {self._name!r}: revoke is {DEVOPS_REFUSAL}")
            pools = [pool]
        else:
            pools = [pool for pool, tier in tiers.items() if tier != DEVOPS]
            if not pools:
                raise NotSupported(f"backend {self._name!r}: revoke is {DEVOPS_REFUSAL}")
        for pool in pools:
            found = self._serial_in_pool(serial, pool)
            if found is not None:
                return found
        raise Rejected(
            f"no certificate with serial {serial} in CA pool(s) {', '.join(map(_short, pools))} of "
            f"backend {self._name!r}"
        )

    def _serial_in_pool(self, serial: str, pool: str) -> Certificate | None:
        # The filter compares text, and CAS's spelling of hex_serial_number is not documented: try our
        # canonical form, then with an even number of digits, then both in upper case. Every hit is
        # checked against the certificate itself.
        padded = serial if len(serial) % 2 == 0 else f"0{serial}"
        spellings = dict.fromkeys((serial, padded, serial.upper(), padded.upper()))
        for spelling in spellings:
            filter_ = f'certificate_description.subject_description.hex_serial_number="{spelling}"'
            with cas_errors(self._name, f"looking up serial {serial}", not_found=Rejected):
                for certificate in self._client.list_certificates(
                    {"parent": pool, "filter": filter_}, timeout=CALL_TIMEOUT_SECONDS
                ):
                    parsed = x509.load_pem_x509_certificate(certificate.pem_certificate.encode())
                    if canonical_serial(parsed.serial_number) == serial:
                        return certificate
        return None

    @staticmethod
    def _revocation_reason(reason: RevocationReason) -> Any:
        from google.cloud.security.privateca_v1 import RevocationReason as CasReason  # noqa: PLC0415

        return getattr(CasReason, _REASONS[reason])


if TYPE_CHECKING:
    # mypy proves here that the classes satisfy the protocols they are used through, and that the real
    # SDK client fits the narrow seam.
    from google.cloud.security.privateca_v1 import CertificateAuthorityServiceClient

    def _conforms(
        backend: GoogleCAS, sdk: CertificateAuthorityServiceClient
    ) -> tuple[Backend, Scanner, CasClient]:
        return backend, backend, sdk
