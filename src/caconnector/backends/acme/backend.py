"""The `acme` backend type: any RFC 8555 CA, through the `acme` package (certbot's library).

ACME quirks this module handles:

- There is no idempotency key: an order is a new certificate. The order URL is recorded as soon as the CA
  creates the order (before any challenge, and so before finalizing); a retry, a redelivered job or
  `collect` resumes that order from whatever state the CA has it in.
- An order goes pending -> ready -> processing -> valid. Validation is waited for (up to 90 s: the
  tokens must stay up while the CA looks), issuance up to -wait seconds; an order still processing then
  is reported as Pending and collected later.
- Revocation takes the certificate, not its serial: every certificate issued is kept by serial.
- ACME CAs send the chain without its root; -roots supplies the roots that complete it.
- There is no way to list issued certificates: scan says so.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import acme.challenges
import acme.crypto_util
import acme.messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import SecretStr

from caconnector.backends.acme.challenges import DnsHook, TxtRecord, serving_http01, txt_record_name
from caconnector.backends.acme.client import AcmeClient, AcmeProblem, describe_problem
from caconnector.backends.acme.config import AcmeConfig
from caconnector.backends.acme.store import AcmeStore, OrderRecord
from caconnector.backends.base import (
    BackendContext,
    CAInfo,
    CheckResult,
    EnrollRequest,
    Issued,
    Pending,
    RevokeRequest,
)
from caconnector.backends.errors import ConfigError, NotSupported, Rejected, Transient
from caconnector.pki.chain import load_certificates, order_chain
from caconnector.pki.errors import PKIError
from caconnector.pki.keys import PrivateKey, key_type_of, load_private_key
from caconnector.pki.names import common_name
from caconnector.pki.serial import canonical_serial

if TYPE_CHECKING:
    from caconnector.backends.base import Backend, Collector, Scanner

# How long to sleep between polls when the CA gives no Retry-After.
POLL_SECONDS = 1.0
# Validation is waited for regardless of -wait: the tokens and records must stay up until the CA has
# looked at them, and taking them down earlier would fail the validation. Bounded inside the manager's
# 120-second job lease.
VALIDATION_TIMEOUT_SECONDS = 90.0
CACERT_FILE = "cacert.pem"


def new_account_key() -> str:
    """A fresh account key: EC P-256 (ES256), which every RFC 8555 CA takes, as unencrypted PKCS#8 PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _account_key(config: AcmeConfig, name: str) -> PrivateKey:
    if config.accountkey is None:
        raise ConfigError(f"backend {name!r}: no -accountkey is stored; remove the backend and add it again")
    try:
        return load_private_key(config.accountkey.get_secret_value().encode())
    except PKIError as exc:
        raise ConfigError(f"backend {name!r}: -accountkey: {exc}") from None


@contextmanager
def _trust(config: AcmeConfig, directory: Path | None) -> Iterator[str | bool]:
    """What requests verifies the directory's TLS with: -cacert written to a file, or the system's."""
    if config.cacert is None:
        yield True
        return
    if directory is not None:
        path = directory / CACERT_FILE
        path.write_text(config.cacert)
        yield str(path)
        return
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / CACERT_FILE
        path.write_text(config.cacert)
        yield str(path)


def provision(config: AcmeConfig, context: BackendContext) -> AcmeConfig:
    """Make the account key (unless one was given) and register the account at the CA, so a wrong EAB key
    or a URL that is not an ACME directory fails at `backend add`. Returns the config to store."""
    name = context.name
    key_pem = config.accountkey.get_secret_value() if config.accountkey is not None else new_account_key()
    completed = config.model_copy(update={"accountkey": SecretStr(key_pem)})
    with _trust(config, None) as verify:
        client = AcmeClient.connect(
            backend=name,
            directory_url=config.directory,
            key=_account_key(completed, name),
            account_url=None,
            verify=verify,
        )
        if client.requires_eab and config.eabkid is None:
            raise ConfigError(
                f"backend {name!r}: the CA at {config.directory} requires External Account Binding; "
                "give the key id and HMAC key it issued with -eabkid and -eabhmac"
            )
        hmac = config.eabhmac.get_secret_value() if config.eabhmac is not None else None
        try:
            url = client.register(config.email, config.eabkid, hmac)
        except AcmeProblem as problem:
            fix = (
                "check -eabkid and -eabhmac (the External Account Binding the CA issued)"
                if config.eabkid is not None or problem.problem_code == "externalAccountRequired"
                else "check -email and the CA's terms"
            )
            raise ConfigError(f"{problem.message}; {fix}") from None
    return completed.model_copy(update={"accounturl": url})


class AcmeBackend:
    """One ACME account at one CA."""

    def __init__(
        self,
        *,
        connect: Callable[[], AcmeClient],
        config: AcmeConfig,
        name: str,
        store: AcmeStore,
        now: Callable[[], dt.datetime],
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connect = connect
        self._client_instance: AcmeClient | None = None
        self._config = config
        self._name = name
        self._store = store
        self._now = now
        self._sleep = sleep
        self._clock = clock
        self._roots = self._load_roots(config)

    @classmethod
    def from_config(cls, config: AcmeConfig, context: BackendContext) -> AcmeBackend:
        """The backend; the CA is first contacted by the first operation, not here."""
        store = AcmeStore(context.state_dir, context.name)
        key = _account_key(config, context.name)
        if config.accounturl is None:
            raise ConfigError(f"backend {context.name!r}: no ACME account is stored; add the backend again")

        def connect() -> AcmeClient:
            with _trust(config, context.state_dir) as verify:
                return AcmeClient.connect(
                    backend=context.name,
                    directory_url=config.directory,
                    key=key,
                    account_url=config.accounturl,
                    verify=verify,
                )

        return cls(connect=connect, config=config, name=context.name, store=store, now=context.now)

    def _load_roots(self, config: AcmeConfig) -> tuple[x509.Certificate, ...]:
        if config.roots is None:
            return ()
        try:
            return tuple(load_certificates(config.roots.encode()))
        except PKIError as exc:
            raise ConfigError(f"backend {self._name!r}: -roots: {exc}") from None

    @property
    def _client(self) -> AcmeClient:
        if self._client_instance is None:
            self._client_instance = self._connect()
        return self._client_instance

    # -- required -------------------------------------------------------------------------------------

    def check(self) -> CheckResult:
        self._client.check_account()
        if not self._roots:
            host = urlsplit(self._config.directory).hostname or self._config.directory
            return CheckResult(
                cas=(
                    CAInfo(
                        id=self._config.directory,
                        name=host,
                        subject="",
                        key_type="",
                        serial="",
                        not_after=None,
                    ),
                )
            )
        return CheckResult(cas=tuple(self._ca_info(root) for root in self._roots))

    def enroll(self, request: EnrollRequest) -> Issued | Pending:
        # A profile's CA names nothing here: one directory is one CA. Template, product, organization and
        # validity have no ACME equivalent (the CA decides the lifetime).
        record = self._store.order_for_request(request.request_id)
        if record is None:
            csr_pem = request.csr.public_bytes(serialization.Encoding.PEM)
            if not self._identifiers(request.csr):
                raise Rejected(
                    f"backend {self._name!r}: the CSR names no DNS name or IP address, which ACME orders need"
                )
            order_url, _ = self._client.new_order(csr_pem)
            # Recorded before anything else can fail: from here on, a retry resumes this order.
            record = self._store.record_order(
                OrderRecord(request.request_id, order_url, csr_pem.decode()), self._now()
            )
        return self._advance(record)

    def revoke(self, request: RevokeRequest) -> None:
        try:
            serial = canonical_serial(request.serial)
        except (TypeError, ValueError) as exc:
            raise Rejected(str(exc)) from None
        pem = self._store.certificate(serial)
        if pem is None:
            raise Rejected(
                f"backend {self._name!r}: no certificate with serial {serial} was issued through this "
                "backend (ACME revokes by the certificate itself, which only the issuing backend keeps)"
            )
        certificate = x509.load_pem_x509_certificate(pem.encode())
        try:
            self._client.revoke(certificate, request.reason.code)  # RFC 8555 7.6: the CRLReason code
        except AcmeProblem:
            return  # alreadyRevoked: revoking is idempotent, and the first date and reason stand

    # -- optional abilities ---------------------------------------------------------------------------

    def collect(self, order_ref: str) -> Issued | Pending:
        """The order placed as `order_ref` (its URL), resumed where the CA has it."""
        record = self._store.order(order_ref)
        if record is None:
            raise Rejected(
                f"backend {self._name!r}: the order {order_ref} was not placed through this backend"
            )
        return self._advance(record)

    def scan(self, since: dt.datetime | None = None) -> Iterator[Issued]:
        """Always refused, with ACME's reason (the connector's generic "cannot list" would not say it)."""
        raise NotSupported(
            f"backend {self._name!r}: scan is not supported by ACME: the protocol has no way to list the "
            "certificates a CA issued"
        )

    # -- the order's life ------------------------------------------------------------------------------

    def _advance(self, record: OrderRecord) -> Issued | Pending:
        """Take the order as far as it goes within -wait seconds: validated, finalized, downloaded."""
        deadline = self._clock() + self._config.wait
        client = self._client
        order = client.order(record.order_url)
        while True:
            status = order.status
            if status == acme.messages.STATUS_VALID and order.certificate:
                return self._issued(record.order_url, order.certificate)
            if status == acme.messages.STATUS_INVALID:
                raise Rejected(self._why_invalid(order))
            if status == acme.messages.STATUS_PENDING:
                waiting = self._validate(order, self._clock() + VALIDATION_TIMEOUT_SECONDS)
                if waiting is not None:
                    return Pending(order_ref=record.order_url, reason=waiting, retry_after=POLL_SECONDS)
                order = client.order(record.order_url)
                if order.status != acme.messages.STATUS_PENDING:
                    continue
                # Every authorization is valid but the CA has not caught up: poll, do not spin.
                if self._clock() >= deadline:
                    return Pending(
                        order_ref=record.order_url,
                        reason="the CA has not yet marked the validated order ready",
                        retry_after=POLL_SECONDS,
                    )
                self._sleep(min(POLL_SECONDS, max(0.0, deadline - self._clock())))
            elif status == acme.messages.STATUS_READY:
                try:
                    # The finalize answer is the order itself, usually `processing`: read on from it.
                    order = client.finalize(record.order_url, order, record.csr_pem.encode())
                    continue
                except AcmeProblem:
                    pass  # orderNotReady: another worker finalized it meanwhile; read it again
            elif self._clock() >= deadline:  # processing, or valid without its certificate URL yet
                return Pending(
                    order_ref=record.order_url,
                    reason="the CA is issuing the certificate",
                    retry_after=client.retry_after or POLL_SECONDS,
                )
            else:
                self._sleep(min(client.retry_after or POLL_SECONDS, max(0.0, deadline - self._clock())))
            order = client.order(record.order_url)

    def _validate(self, order: acme.messages.Order, deadline: float) -> str | None:
        """Answer the order's pending authorizations and wait for them; why it waits when -wait ran out."""
        pending = []
        for url in order.authorizations:
            authorization = self._client.authorization(url)
            if authorization.body.status == acme.messages.STATUS_PENDING:
                pending.append(authorization)
            elif authorization.body.status != acme.messages.STATUS_VALID:
                raise Rejected(self._why_failed(authorization))
        if not pending:
            return None
        answers = [(authorization, self._challenge(authorization)) for authorization in pending]
        with self._provisioned(answers):
            for _, challenge in answers:
                if challenge.status == acme.messages.STATUS_PENDING:
                    self._client.answer(challenge)
            for authorization, _ in answers:
                if not self._await_authorization(authorization.uri, deadline):
                    name = authorization.body.identifier.value
                    return f"the CA is validating {name} ({self._config.challenge})"
        return None

    def _await_authorization(self, url: str, deadline: float) -> bool:
        while True:
            authorization = self._client.authorization(url)
            status = authorization.body.status
            if status == acme.messages.STATUS_VALID:
                return True
            if status != acme.messages.STATUS_PENDING:
                raise Rejected(self._why_failed(authorization))
            if self._clock() >= deadline:
                return False
            self._sleep(min(self._client.retry_after or POLL_SECONDS, max(0.0, deadline - self._clock())))

    def _challenge(self, authorization: acme.messages.AuthorizationResource) -> acme.messages.ChallengeBody:
        offered = authorization.body.challenges
        name = authorization.body.identifier.value
        if self._config.challenge == "none":
            # Nothing is provisioned: the CA validates some other way (pre-validated domains, EAB) and
            # only wants a challenge triggered. A CA that really validates will fail it, and say why.
            for challenge in offered:
                if isinstance(challenge.chall, acme.challenges.KeyAuthorizationChallenge):
                    return challenge
            raise Rejected(f"backend {self._name!r}: the CA offers no challenge this client knows for {name}")
        for challenge in offered:
            if challenge.chall.typ == self._config.challenge:
                return challenge
        kinds = ", ".join(challenge.chall.typ for challenge in offered) or "none"
        raise Rejected(
            f"backend {self._name!r}: the CA offers no {self._config.challenge} challenge for {name} "
            f"(it offers: {kinds}); change -challenge"
        )

    @contextmanager
    def _provisioned(
        self, answers: list[tuple[acme.messages.AuthorizationResource, acme.messages.ChallengeBody]]
    ) -> Iterator[None]:
        key = self._client.key
        if self._config.challenge == "http-01":
            tokens = {}
            for _, challenge in answers:
                chall = challenge.chall
                if isinstance(chall, acme.challenges.HTTP01):  # `_challenge` picked only http-01
                    tokens[chall.encode("token")] = chall.key_authorization(key)
            with serving_http01(self._name, self._config.httpaddress, tokens):
                yield
        elif self._config.challenge == "dns-01":
            records = []
            for authorization, challenge in answers:
                chall = challenge.chall
                if isinstance(chall, acme.challenges.DNS01):  # `_challenge` picked only dns-01
                    name = txt_record_name(authorization.body.identifier.value)
                    records.append(TxtRecord(name, chall.validation(key)))
            # The config model requires -hook with dns-01.
            with DnsHook(self._name, self._config.hook or "").published(records):
                yield
        else:
            yield

    # -- results ---------------------------------------------------------------------------------------

    def _issued(self, order_url: str, certificate_url: str) -> Issued:
        downloaded = self._client.download(
            certificate_url, alternates=self._config.preferredchain is not None
        )
        chains = [downloaded.fullchain_pem, *downloaded.alternates]
        try:
            parsed = [load_certificates(pem.encode()) for pem in chains]
        except PKIError as exc:
            raise Transient(
                f"backend {self._name!r}: the CA sent a certificate we cannot read ({exc})"
            ) from None
        chosen = self._preferred(parsed)
        leaf = chosen[0]
        chain = order_chain(leaf, [*chosen[1:], *self._roots])
        self._store.record_certificate(
            canonical_serial(leaf.serial_number),
            order_url,
            leaf.public_bytes(serialization.Encoding.PEM).decode(),
        )
        window = self._client.renewal_window(leaf)
        return Issued(certificate=leaf, chain=tuple(chain), order_ref=order_url, renewal_window=window)

    def _preferred(self, chains: list[list[x509.Certificate]]) -> list[x509.Certificate]:
        """The chain whose top certificate was issued by -preferredchain (as certbot matches it), or the
        CA's default chain."""
        wanted = self._config.preferredchain
        if wanted is not None:
            for chain in chains:
                top = chain[-1]
                if wanted in (common_name(top.issuer), common_name(top.subject)):
                    return chain
        return chains[0]

    def _ca_info(self, root: x509.Certificate) -> CAInfo:
        return CAInfo(
            id=canonical_serial(root.serial_number),
            name=common_name(root.subject) or root.subject.rfc4514_string(),
            subject=root.subject.rfc4514_string(),
            key_type=key_type_of(root.public_key()),
            serial=canonical_serial(root.serial_number),
            not_after=root.not_valid_after_utc,
            certificate=root,
        )

    # -- problems --------------------------------------------------------------------------------------

    def _why_invalid(self, order: acme.messages.Order) -> str:
        if order.error is not None:
            return f"backend {self._name!r}: the CA refused the order: {describe_problem(order.error)}"
        for url in order.authorizations:
            authorization = self._client.authorization(url)
            if authorization.body.status not in (acme.messages.STATUS_VALID, acme.messages.STATUS_PENDING):
                return self._why_failed(authorization)
        return f"backend {self._name!r}: the CA marked the order invalid without saying why"

    def _why_failed(self, authorization: acme.messages.AuthorizationResource) -> str:
        name = authorization.body.identifier.value
        status = authorization.body.status.name
        problems = [describe_problem(c.error) for c in authorization.body.challenges if c.error is not None]
        detail = "; ".join(problems) or "no detail given"
        return f"backend {self._name!r}: the authorization of {name} is {status}: {detail}"

    @staticmethod
    def _identifiers(csr: x509.CertificateSigningRequest) -> list[str]:
        names, addresses = acme.crypto_util.get_identifiers_from_x509(csr.subject, csr.extensions)
        return [*names, *addresses]


if TYPE_CHECKING:
    # mypy proves here that the class satisfies the protocols it is used through.
    def _conforms(backend: AcmeBackend) -> tuple[Backend, Collector, Scanner]:
        return backend, backend, backend
