"""The `msca` backend type: Microsoft AD CS, with the connector acting as an Enrollment Agent.

Every enrollment is an on-behalf-of request (`cms`): the PKCS#10 signed by the Enrollment Agent key,
naming -requester. AD CS quirks this module handles:

- AD CS has no idempotency key, so the request id it assigns is recorded (`store`) before anything else,
  and a job that comes again collects by that id instead of submitting again.
- A template that needs a CA manager's approval answers "Taken Under Submission": that is Pending,
  collected later by the request id (the order reference).
- A denied request is Rejected with the CA's disposition message verbatim; when the Enrollment Agent
  certificate lacks the Certificate Request Agent EKU (the usual reason AD CS refuses an agent), the
  message says so.
- Web Enrollment has no revocation page: revoke goes over MS-CSRA (DCOM) whatever the transport.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from caconnector.backends.base import (
    BackendContext,
    CAInfo,
    CheckResult,
    EnrollRequest,
    Issued,
    Pending,
    RevokeRequest,
)
from caconnector.backends.errors import ConfigError, NotSupported, Rejected
from caconnector.backends.msca.cms import has_agent_eku, on_behalf_of
from caconnector.backends.msca.config import MscaConfig
from caconnector.backends.msca.store import MscaStore
from caconnector.backends.msca.transport import Disposition, Outcome, Revoker, Transport
from caconnector.pki.chain import order_chain
from caconnector.pki.keys import key_type_of, load_private_key, private_key_pem
from caconnector.pki.names import common_name
from caconnector.pki.serial import canonical_serial

if TYPE_CHECKING:
    from caconnector.backends.base import Backend, Collector

DEFAULT_AGENT_TEMPLATE = "MachineEnrollmentAgent"
AGENT_KEY_BITS = 2048  # v1 templates such as MachineEnrollmentAgent take RSA keys only


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def open_transport(config: MscaConfig, context: BackendContext, store: MscaStore) -> Transport:
    """The configured transport, built without network traffic."""
    if config.transport == "web":
        from caconnector.backends.msca.web import WebEnrollment  # noqa: PLC0415  (certsrv only when used)

        return WebEnrollment(config, context.name, store.write_trust(config.cacert))
    from caconnector.backends.msca.rpc import IcprTransport  # noqa: PLC0415  (impacket only when used)

    return IcprTransport(config, context.name)


class MscaBackend:
    """One AD CS certification authority (-ca) on one server (-server)."""

    def __init__(
        self,
        *,
        config: MscaConfig,
        name: str,
        store: MscaStore,
        transport: Transport,
        revoker: Callable[[], Revoker] | None = None,
        now: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        self._config = config
        self._name = name
        self._store = store
        self._transport = transport
        self._revoker = revoker
        self._now = now

    @classmethod
    def from_config(cls, config: MscaConfig, context: BackendContext) -> MscaBackend:
        store = MscaStore(context.state_dir, context.name)

        def revoker() -> Revoker:
            from caconnector.backends.msca.csra import DcomRevoker  # noqa: PLC0415  (impacket only when used)

            return DcomRevoker(config, context.name)

        return cls(
            config=config,
            name=context.name,
            store=store,
            transport=open_transport(config, context, store),
            revoker=revoker,
            now=context.now,
        )

    # -- required -------------------------------------------------------------------------------------

    def check(self) -> CheckResult:
        certificates = self._transport.ca_certificates()
        ca = certificates[0]
        found = common_name(ca.subject) or ca.subject.rfc4514_string()
        if found.casefold() != self._config.ca.casefold():
            raise ConfigError(
                f"backend {self._name!r}: -ca is {self._config.ca!r}, but the CA on {self._config.server} is "
                f"{found!r}; fix -ca with backend update"
            )
        info = CAInfo(
            id=self._config.ca,
            name=found,
            subject=ca.subject.rfc4514_string(),
            key_type=key_type_of(ca.public_key()),
            serial=canonical_serial(ca.serial_number),
            not_after=ca.not_valid_after_utc,
            state="active" if ca.not_valid_after_utc > self._now() else "expired",
            certificate=ca,
        )
        return CheckResult(cas=(info,))

    def enroll(self, request: EnrollRequest) -> Issued | Pending:
        recorded = self._store.ca_request_id(request.request_id)
        if recorded is not None:
            return self._result(self._transport.retrieve(recorded))
        self._check_ca(request.ca)
        if not request.template:
            raise Rejected(
                f"backend {self._name!r}: AD CS issues by certificate template, and this request names none; "
                "give the profile a template"
            )
        certificate, key = self._agent()
        requester = self._config.requester_name
        if requester is None:
            raise ConfigError(
                f"backend {self._name!r}: on-behalf-of requests name a requester: set -requester "
                "DOMAIN\\user with backend update"
            )
        wrapped = on_behalf_of(request.csr, requester, certificate, key)
        disposition = self._transport.submit(wrapped, request.template)
        if disposition.request_id is not None:
            # Recorded before anything else can fail: from here on, a retry collects this request.
            self._store.record(request.request_id, disposition.request_id, self._now())
        return self._result(disposition, certificate)

    def revoke(self, request: RevokeRequest) -> None:
        self._check_ca(request.ca)
        if self._revoker is None:
            raise NotSupported(f"backend {self._name!r}: revocation is not available")
        self._revoker().revoke(canonical_serial(request.serial), request.reason)

    # -- optional abilities ---------------------------------------------------------------------------

    def collect(self, order_ref: str) -> Issued | Pending:
        try:
            request_id = int(order_ref)
        except ValueError:
            raise Rejected(f"backend {self._name!r}: {order_ref!r} is not an AD CS request id") from None
        return self._result(self._transport.retrieve(request_id))

    def scan(self, since: dt.datetime | None = None) -> Iterator[Issued]:
        raise NotSupported(
            f"backend {self._name!r}: listing issued certificates is not supported by AD CS "
            "through this backend"
        )

    def describe(self) -> dict[str, Any]:
        """What `backend show` adds for this type: whether an Enrollment Agent certificate is stored."""
        certificate = self._config.agent_certificate()
        if certificate is None:
            return {
                "enrollment_agent": {
                    "present": False,
                    "hint": f"run: ca-connector backend msca enroll-agent-cert -name {self._name} "
                    f"-ca {self._config.ca}",
                }
            }
        return {
            "enrollment_agent": {
                "present": True,
                "subject": certificate.subject.rfc4514_string(),
                "not_after": certificate.not_valid_after_utc.isoformat(),
                "expired": certificate.not_valid_after_utc <= self._now(),
                "certificate_request_agent_eku": has_agent_eku(certificate),
            }
        }

    # -- the Enrollment Agent certificate -------------------------------------------------------------

    def enroll_agent(self, ca: str, template: str = DEFAULT_AGENT_TEMPLATE) -> tuple[str, str]:
        """Make the Enrollment Agent key pair and enroll its certificate (a plain PKCS#10: the agent
        signs for others, nobody signs for it). Returns the certificate and key as PEM, for the caller to
        store sealed."""
        self._check_ca(ca)
        key = rsa.generate_private_key(public_exponent=65537, key_size=AGENT_KEY_BITS)
        subject = x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, f"ca-connector {self._name} enrollment agent")]
        )
        csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
        disposition = self._transport.submit(csr.public_bytes(serialization.Encoding.DER), template)
        if (
            disposition.outcome is Outcome.ISSUED
            and disposition.certificate is None
            and disposition.request_id
        ):
            disposition = self._transport.retrieve(disposition.request_id)
        if disposition.outcome is Outcome.PENDING:
            raise ConfigError(
                f"backend {self._name!r}: AD CS holds the Enrollment Agent request "
                f"{disposition.request_id} (template {template!r}) for a CA manager's approval; approve "
                "it at the CA and enroll again, or use a template that issues at once"
            )
        if disposition.outcome is Outcome.DENIED or disposition.certificate is None:
            raise Rejected(
                f"backend {self._name!r}: AD CS denied the Enrollment Agent request "
                f"{disposition.request_id or ''} for template {template!r}: {disposition.message}"
            )
        certificate = disposition.certificate
        if not has_agent_eku(certificate):
            raise ConfigError(
                f"backend {self._name!r}: template {template!r} issued a certificate without the Certificate "
                "Request Agent EKU (1.3.6.1.4.1.311.20.2.1), so it cannot sign on-behalf-of requests; "
                "give an Enrollment Agent template with -template"
            )
        return (certificate.public_bytes(serialization.Encoding.PEM).decode(), private_key_pem(key).decode())

    # -- helpers ---------------------------------------------------------------------------------------

    def _check_ca(self, ca: str | None) -> None:
        if ca is not None and ca.casefold() != self._config.ca.casefold():
            raise Rejected(
                f"backend {self._name!r} reaches the CA {self._config.ca!r} only, not {ca!r} "
                "(see backend cas)"
            )

    def _agent(self) -> tuple[x509.Certificate, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey]:
        certificate = self._config.agent_certificate()
        if certificate is None or self._config.eakey is None:
            raise ConfigError(
                f"backend {self._name!r} has no Enrollment Agent certificate; run: ca-connector backend msca "
                f"enroll-agent-cert -name {self._name} -ca {self._config.ca}"
            )
        if certificate.not_valid_after_utc <= self._now():
            raise ConfigError(
                f"backend {self._name!r}: the Enrollment Agent certificate expired on "
                f"{certificate.not_valid_after_utc:%Y-%m-%d}; enroll a new one with: ca-connector backend "
                f"msca enroll-agent-cert -name {self._name} -ca {self._config.ca}"
            )
        key = load_private_key(self._config.eakey.get_secret_value().encode())
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise ConfigError(f"backend {self._name!r}: the Enrollment Agent key must be RSA or EC (-eakey)")
        return certificate, key

    def _result(self, disposition: Disposition, agent: x509.Certificate | None = None) -> Issued | Pending:
        request_id = disposition.request_id
        if (
            disposition.outcome is Outcome.ISSUED
            and disposition.certificate is None
            and request_id is not None
        ):
            disposition = self._transport.retrieve(request_id)
        if disposition.outcome is Outcome.PENDING:
            return Pending(
                order_ref=str(request_id),
                reason=f"AD CS request {request_id} awaits a CA manager's approval ({disposition.message})",
                # No wait of our own: a person approves, whenever; the manager's backoff spaces the asks.
                retry_after=None,
            )
        if disposition.outcome is Outcome.DENIED or disposition.certificate is None:
            why = ""
            if agent is not None and not has_agent_eku(agent):
                why = (
                    "; the Enrollment Agent certificate lacks the Certificate Request Agent EKU "
                    "(1.3.6.1.4.1.311.20.2.1), so AD CS does not accept it as an agent: enroll one with "
                    f"ca-connector backend msca enroll-agent-cert -name {self._name} -ca {self._config.ca}"
                )
            number = f" {request_id}" if request_id is not None else ""
            raise Rejected(
                f"backend {self._name!r}: AD CS denied request{number}: {disposition.message}{why}"
            )
        certificate = disposition.certificate
        chain = order_chain(certificate, disposition.chain or self._transport.ca_certificates())
        return Issued(certificate=certificate, chain=tuple(chain), order_ref=str(request_id))


if TYPE_CHECKING:
    # mypy proves here that the class satisfies the protocols it is used through.
    def _conforms(backend: MscaBackend) -> tuple[Backend, Collector]:
        return backend, backend
