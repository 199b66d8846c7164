"""The `local` backend type: a real CA, embedded in the connector, on `cryptography`.

`backend add -type local` either creates a CA (key and self-signed certificate) or imports an existing
one (`-cacert`, `-cakey`); both end up in the backend's encrypted config, so `provision` stores nothing.
What the CA does afterwards (certificates issued, revocations, the CRL number) lives in an SQLite file in
the backend's state directory, see `store`. The CA never makes a request wait, so it has no
`collect`; it can list what it issued (`scan`) and publishes its own CRL (`crl`).
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import SecretStr

from caconnector.backends.base import (
    BackendContext,
    CAInfo,
    CheckResult,
    EnrollRequest,
    Issued,
    RevokeRequest,
)
from caconnector.backends.errors import ConfigError, Rejected, Transient
from caconnector.backends.local.config import LocalConfig
from caconnector.backends.local.store import CertificateRow, DuplicateRequest, LocalStore
from caconnector.pki.chain import ensure_complete, load_certificates, order_chain
from caconnector.pki.errors import PKIError
from caconnector.pki.keys import (
    PrivateKey,
    PublicKey,
    check_key_allowed,
    generate_private_key,
    key_type_of,
    load_private_key,
    private_key_pem,
    public_keys_equal,
    signature_hash_for,
)
from caconnector.pki.names import common_name, is_email, is_host_name, is_uri
from caconnector.pki.revocation import RevocationReason
from caconnector.pki.serial import canonical_serial, serial_to_int
from caconnector.pki.subject import checked_subject

if TYPE_CHECKING:
    from caconnector.backends.base import Backend, CRLPublisher, Scanner

DEFAULT_KEY_TYPE = "ec-p256"
DEFAULT_CA_DAYS = 3650
DEFAULT_LEAF_DAYS = 90
# CA/Browser Forum's old ceiling for TLS certificates; longer private certificates are refused by some
# clients (Apple platforms cap at 825 days) and hide forgotten renewals.
MAX_LEAF_DAYS = 825
# Backdating not_before covers relying parties whose clocks run a few minutes behind ours: without it a
# freshly issued certificate is "not yet valid" there until their clock catches up.
CLOCK_SKEW = dt.timedelta(minutes=5)
# Relying parties refetch the CRL before next_update; a week keeps it fresh without a daily job.
CRL_LIFETIME = dt.timedelta(days=7)
TEMPLATES = ("server", "client")
CRL_FILE = "crl.der"

_EXAMPLE_DN = "'CN=Corp Local CA,O=Corp' (or the OpenSSL form '/CN=Corp Local CA/O=Corp')"
# An attribute name in the OpenSSL DN form: a short name (CN, O, emailAddress) or a dotted OID.
_ATTRIBUTE_NAME = re.compile(r"^(?:[A-Za-z][A-Za-z0-9-]*|\d+(?:\.\d+)+)$")
# The SAN types we copy from a CSR; others (otherName, directoryName, ...) need policy we do not have.
_SAN_TYPES = (x509.DNSName, x509.IPAddress, x509.RFC822Name, x509.UniformResourceIdentifier)


def parse_subject(text: str) -> x509.Name:
    """Parse a DN given as RFC 4514 (`CN=x,O=y`) or in OpenSSL's slash form (`/O=y/CN=x`).

    Raises ValueError with a message for the operator (without the option name: the caller adds it).
    """
    stripped = text.strip()
    try:
        name = (
            _parse_openssl_dn(stripped)
            if stripped.startswith("/")
            else x509.Name.from_rfc4514_string(stripped)
        )
    except ValueError as exc:
        # cryptography's syntax errors have no message; its length errors do and are worth passing on.
        detail = f" ({exc})" if str(exc) else ""
        raise ValueError(
            f"{text!r} is not a distinguished name{detail}; give one such as {_EXAMPLE_DN}"
        ) from None
    if len(name) == 0:
        raise ValueError(f"the distinguished name is empty; give one such as {_EXAMPLE_DN}")
    return name


def _parse_openssl_dn(text: str) -> x509.Name:
    # `openssl req -subj` writes the most significant attribute first, which is also DER order (RFC 4514
    # strings run the other way). As in OpenSSL, a backslash makes the next character literal (`\/`).
    rdns: list[x509.RelativeDistinguishedName] = []
    for part in re.split(r"(?<!\\)/", text)[1:]:
        key, sep, value = part.partition("=")
        if not sep or not _ATTRIBUTE_NAME.match(key.strip()) or not value:
            raise ValueError(f"bad component {part!r}")
        # Each component goes through cryptography's RFC 4514 parser on its own, so it maps the short
        # name (or dotted OID) and checks the value (e.g. C is two letters) exactly as for the other form.
        literal = re.sub(r"\\(.)", r"\1", value)
        single = x509.Name.from_rfc4514_string(f"{key.strip()}={_escape_rfc4514(literal)}")
        rdns.extend(single.rdns)
    return x509.Name(rdns)


def _escape_rfc4514(value: str) -> str:
    """Escape an attribute value for an RFC 4514 string (section 2.4)."""
    escaped = re.sub(r'([\\,+"<>;=])', r"\\\1", value)
    if escaped.startswith(("#", " ")):
        escaped = "\\" + escaped
    if escaped.endswith(" "):
        escaped = escaped[:-1] + "\\ "
    return escaped


@dataclass(frozen=True)
class _CAMaterial:
    certificate: x509.Certificate
    key: PrivateKey
    chain: tuple[x509.Certificate, ...]  # issuer of `certificate` up to the root; empty for a root


def _config_error(context: BackendContext, message: str) -> ConfigError:
    return ConfigError(f"backend {context.name!r}: {message}")


def _load_ca(config: LocalConfig, context: BackendContext) -> _CAMaterial:
    """Find the CA certificate matching -cakey in -cacert, check it can act as our CA, order its chain."""
    if config.cacert is None or config.cakey is None:
        raise _config_error(
            context, "-cacert and -cakey are missing; run `backend add` again to create the CA"
        )
    try:
        certificates = load_certificates(config.cacert.encode())
    except PKIError as exc:
        raise _config_error(context, f"-cacert: {exc}") from None
    try:
        key = load_private_key(config.cakey.get_secret_value().encode())
    except PKIError as exc:
        raise _config_error(context, f"-cakey: {exc}") from None
    public = key.public_key()
    matching = [cert for cert in certificates if public_keys_equal(cert.public_key(), public)]
    if not matching:
        raise _config_error(context, "-cakey does not belong to any certificate in -cacert")
    certificate = matching[0]
    _check_ca_profile(certificate, context)
    chain = order_chain(certificate, certificates)
    try:
        # Every Issued result carries the chain up to the root; an imported intermediate without its
        # issuers would hand out chains that relying parties cannot build.
        ensure_complete(certificate, chain)
    except PKIError as exc:
        raise _config_error(context, f"-cacert: {exc}") from None
    return _CAMaterial(certificate=certificate, key=key, chain=tuple(chain))


def _check_ca_profile(certificate: x509.Certificate, context: BackendContext) -> None:
    subject = certificate.subject.rfc4514_string()
    try:
        extensions = certificate.extensions
    except ValueError as exc:
        raise _config_error(
            context, f"-cacert: certificate {subject!r} has a malformed extension ({exc})"
        ) from None
    try:
        basic = extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        basic = None
    if basic is None or not basic.ca:
        raise _config_error(
            context,
            f"-cacert: certificate {subject!r} is not a CA certificate (basicConstraints lacks cA=TRUE)",
        )
    try:
        usage = extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is None or not usage.key_cert_sign:
        raise _config_error(
            context,
            f"-cacert: certificate {subject!r} may not sign certificates (keyUsage lacks keyCertSign)",
        )
    if not usage.crl_sign:
        # The local CA publishes its own CRL; with a key that may not sign CRLs every CRL would be invalid.
        raise _config_error(
            context, f"-cacert: certificate {subject!r} may not sign CRLs (keyUsage lacks cRLSign)"
        )


def _authority_key_identifier(certificate: x509.Certificate, key: PrivateKey) -> x509.AuthorityKeyIdentifier:
    # Reuse the CA's own SKI when it has one: an imported CA's SKI may not be the SHA-1 of its key (RFC
    # 7093 allows other methods), and AKI must match the SKI exactly for path building to find the issuer.
    try:
        ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _new_ca(config: LocalConfig, context: BackendContext) -> LocalConfig:
    if config.subject is not None:
        try:
            subject = parse_subject(config.subject)
        except ValueError as exc:
            raise _config_error(context, f"-subject: {exc}") from None
    else:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{context.name} Local CA")])
    key_type = config.keytype or DEFAULT_KEY_TYPE
    days = config.days or DEFAULT_CA_DAYS
    key = generate_private_key(key_type)
    public = key.public_key()
    ski = x509.SubjectKeyIdentifier.from_public_key(public)
    now = context.now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        # Backdated like the leaves, so a leaf issued right away still nests inside the CA's validity
        # (some validators check nesting, not just "valid now").
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=days))
        # path_length=0: this CA issues end-entity certificates only, never another CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        # digitalSignature lets the CA key also sign OCSP responses directly (RFC 6960 section 4.2.2.2).
        .add_extension(_key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, signature_hash_for(key))
    )
    return LocalConfig.model_validate(
        {
            "subject": subject.rfc4514_string(),
            "keytype": key_type,
            "days": days,
            "cacert": certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"),
            "cakey": SecretStr(private_key_pem(key).decode("ascii")),
        }
    )


def _import_ca(config: LocalConfig, context: BackendContext) -> LocalConfig:
    material = _load_ca(config, context)
    certificate = material.certificate
    conflicts = _new_ca_options_that_differ(config, certificate)
    if conflicts:
        raise _config_error(
            context,
            f"{', '.join(conflicts)} describe a new CA and cannot be combined with -cacert "
            "(the imported certificate fixes its subject, key type and lifetime); drop them",
        )
    if certificate.not_valid_after_utc <= context.now():
        raise _config_error(
            context,
            f"-cacert: the CA certificate {certificate.subject.rfc4514_string()!r} expired on "
            f"{certificate.not_valid_after_utc:%Y-%m-%d}; import a valid CA certificate",
        )
    # Store a normalised form: the CA certificate first, then its chain in order, and the key as PKCS#8.
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (certificate, *material.chain))
    return config.model_copy(
        update={
            "cacert": pem.decode("ascii"),
            "cakey": SecretStr(private_key_pem(material.key).decode("ascii")),
        }
    )


def _new_ca_options_that_differ(config: LocalConfig, certificate: x509.Certificate) -> list[str]:
    """The new-CA options set in `config` that disagree with `certificate`.

    Options that agree are accepted, so that provisioning its own output (a created CA's config holds
    both -subject and -cacert) gives the same config again.
    """
    differ: list[str] = []
    if config.subject is not None:
        try:
            same = parse_subject(config.subject) == certificate.subject
        except ValueError:
            same = False
        if not same:
            differ.append("-subject")
    if config.keytype is not None and config.keytype != key_type_of(certificate.public_key()):
        differ.append("-keytype")
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    if config.days is not None and lifetime.days != config.days:
        differ.append("-days")
    return differ


def provision(config: LocalConfig, context: BackendContext) -> LocalConfig:
    """Create the CA (no -cacert) or check the imported one; return the config to store."""
    if config.cacert is None:
        return _new_ca(config, context)
    return _import_ca(config, context)


def open_ca(config: LocalConfig, context: BackendContext) -> LocalCA:
    material = _load_ca(config, context)
    state_dir = context.state_dir
    ca_id = canonical_serial(material.certificate.serial_number)
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkdir's mode is filtered by the umask and ignored for an existing directory; the records
        # name every certificate holder, so keep them private to the connector's user.
        state_dir.chmod(0o700)
        store = LocalStore(state_dir, ca_id)
    except (OSError, sqlite3.Error) as exc:
        raise _config_error(context, f"cannot use the state directory {state_dir}: {exc}") from None
    except ConfigError as exc:  # the store's own findings (another CA's records, a newer schema)
        raise _config_error(context, exc.message) from None
    return LocalCA(
        certificate=material.certificate,
        key=material.key,
        chain=material.chain,
        store=store,
        state_dir=state_dir,
        name=context.name,
        now=context.now,
    )


@contextmanager
def _storage_errors(name: str) -> Iterator[None]:
    """The one place the local CA's storage exceptions become backend errors."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        # Locked or busy database, full disk, I/O error: the next attempt may well succeed.
        raise Transient(f"backend {name!r}: local CA state is unavailable ({exc})") from None
    except sqlite3.DatabaseError as exc:
        # A corrupt or foreign file will not heal by waiting.
        raise ConfigError(f"backend {name!r}: local CA state is unusable ({exc})") from None
    except OSError as exc:
        raise Transient(f"backend {name!r}: cannot write the local CA's files ({exc})") from None


class LocalCA:
    """One local CA: signs CSRs, revokes, publishes its CRL and lists what it issued."""

    def __init__(
        self,
        *,
        certificate: x509.Certificate,
        key: PrivateKey,
        chain: tuple[x509.Certificate, ...],
        store: LocalStore,
        state_dir: Path,
        name: str,
        now: Callable[[], dt.datetime],
    ) -> None:
        self.certificate = certificate
        self.chain = chain
        self.id = canonical_serial(certificate.serial_number)
        self._key = key
        self._hash = signature_hash_for(key)
        self._aki = _authority_key_identifier(certificate, key)
        self._store = store
        self._state_dir = state_dir
        self._name = name
        self._now = now

    # -- required -------------------------------------------------------------------------------------

    def check(self) -> CheckResult:
        with _storage_errors(self._name):
            self._store.crl_number()  # proves the state file is readable
        certificate = self.certificate
        subject = certificate.subject.rfc4514_string()
        not_after = certificate.not_valid_after_utc
        info = CAInfo(
            id=self.id,
            name=common_name(certificate.subject) or subject,
            subject=subject,
            key_type=key_type_of(certificate.public_key()),
            serial=self.id,
            not_after=not_after,
            state="expired" if not_after <= self._now() else "active",
            certificate=certificate,
        )
        return CheckResult(cas=(info,), templates=TEMPLATES)

    def enroll(self, request: EnrollRequest) -> Issued:
        self._check_ca(request.ca)
        # Exactly once: a request the journal replays after a crash gets the certificate already signed,
        # even if the CA has since expired or the request would now be refused.
        with _storage_errors(self._name):
            existing = self._store.by_request_id(request.request_id)
        if existing is not None:
            return self._issued_from(existing)

        template = "server" if request.template is None else request.template
        if template not in TEMPLATES:
            raise Rejected(
                f"unknown template {request.template!r}; the local CA offers: {', '.join(TEMPLATES)}"
            )
        days = DEFAULT_LEAF_DAYS if request.validity_days is None else request.validity_days
        if not 1 <= days <= MAX_LEAF_DAYS:
            raise Rejected(f"validity of {days} days is out of range; ask for 1 to {MAX_LEAF_DAYS} days")
        now = self._now()
        ca_not_after = self.certificate.not_valid_after_utc
        if ca_not_after <= now:
            raise ConfigError(
                f"backend {self._name!r}: the local CA certificate expired on {ca_not_after:%Y-%m-%d}; "
                "add a backend with a new CA"
            )

        csr = request.csr
        public_key = self._check_csr(csr)
        subject = self._subject(csr)
        names = self._subject_alt_names(csr)
        has_host = any(isinstance(n, x509.DNSName | x509.IPAddress) for n in names)
        if template == "server" and not has_host and common_name(subject) is None:
            raise Rejected("the CSR names no host: add a subjectAltName DNS or IP entry")
        if len(subject) == 0 and not names:
            raise Rejected("the CSR has neither a subject nor a subjectAltName; add a subjectAltName entry")

        serial = x509.random_serial_number()
        builder = (
            x509.CertificateBuilder()
            # Built from the checked attributes, never copied: see pki.subject for what a CSR may ask.
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(serial)
            .not_valid_before(now - CLOCK_SKEW)
            # A certificate may not outlive its issuer: relying parties reject the whole path otherwise.
            .not_valid_after(min(now + dt.timedelta(days=days), ca_not_after))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                # keyEncipherment only where it can happen: RSA key transport in TLS 1.2 and earlier, on
                # the server side. EC and Ed25519 keys only ever sign.
                _key_usage(
                    digital_signature=True,
                    key_encipherment=template == "server" and isinstance(public_key, rsa.RSAPublicKey),
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [
                        ExtendedKeyUsageOID.SERVER_AUTH
                        if template == "server"
                        else ExtendedKeyUsageOID.CLIENT_AUTH
                    ]
                ),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(self._aki, critical=False)
        )
        if names:
            # RFC 5280 4.2.1.6: with an empty subject the SAN carries the identity and must be critical.
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=len(subject) == 0)
        certificate = builder.sign(self._key, self._hash)

        with _storage_errors(self._name):
            try:
                self._store.add(
                    serial=canonical_serial(serial),
                    der=certificate.public_bytes(serialization.Encoding.DER),
                    not_before=certificate.not_valid_before_utc,
                    not_after=certificate.not_valid_after_utc,
                    subject=certificate.subject.rfc4514_string(),
                    issued_at=now,
                    request_id=request.request_id,
                )
            except DuplicateRequest:
                # Another thread or process signed the same request first; theirs is the one on record.
                stored = self._store.by_request_id(request.request_id)
                if stored is None:  # pragma: no cover - rows are never deleted
                    raise
                return self._issued_from(stored)
        return self._issued(certificate)

    def revoke(self, request: RevokeRequest) -> None:
        self._check_ca(request.ca)
        try:
            serial = canonical_serial(request.serial)
        except (TypeError, ValueError) as exc:
            raise Rejected(str(exc)) from None
        with _storage_errors(self._name):
            outcome = self._store.revoke(serial, self._now(), request.reason.value)
        if outcome == "unknown":
            raise Rejected(f"the local CA {self.id} issued no certificate with serial {serial}")
        if outcome == "revoked":
            # Publish at once: the revocation only protects anyone once it is in the CRL they fetch.
            self.crl()
        # "already-revoked": revoking is idempotent; the first date and reason stand.

    # -- optional abilities ---------------------------------------------------------------------------

    def scan(self, since: dt.datetime | None = None) -> Iterator[Issued]:
        """Every certificate this CA issued (at or after `since` when given), oldest first."""
        with _storage_errors(self._name):
            for row in self._store.scan(since):
                yield self._issued_from(row)

    def crl(self, ca: str | None = None) -> x509.CertificateRevocationList:
        """Make a new CRL (with the next CRL number) and publish it to `<state_dir>/crl.der`.

        Every CRL made is also published, so the file is always the newest one handed out.
        """
        self._check_ca(ca)
        now = self._now()

        def build(number: int, revoked: list[CertificateRow]) -> x509.CertificateRevocationList:
            builder = (
                x509.CertificateRevocationListBuilder()
                .issuer_name(self.certificate.subject)
                .last_update(now)
                .next_update(now + CRL_LIFETIME)
                .add_extension(x509.CRLNumber(number), critical=False)
                .add_extension(self._aki, critical=False)
            )
            for row in revoked:
                revoked_at = row.revoked_at or now
                entry = x509.RevokedCertificateBuilder().serial_number(serial_to_int(row.serial))
                entry = entry.revocation_date(revoked_at)
                reason = RevocationReason(row.reason or RevocationReason.UNSPECIFIED)
                # RFC 5280 5.3.1: the reason code "unspecified" SHOULD be absent rather than present.
                if reason is not RevocationReason.UNSPECIFIED:
                    entry = entry.add_extension(x509.CRLReason(reason.to_x509()), critical=False)
                builder = builder.add_revoked_certificate(entry.build())
            crl = builder.sign(self._key, self._hash)
            self._publish(crl)
            return crl

        with _storage_errors(self._name):
            return self._store.with_next_crl_number(build)

    # -- helpers ---------------------------------------------------------------------------------------

    def _check_ca(self, ca: str | None) -> None:
        if ca is None:
            return
        try:
            same = canonical_serial(ca) == self.id
        except (TypeError, ValueError):
            same = False
        if not same:
            raise Rejected(f"unknown CA {ca!r}; this local backend has one CA, {self.id}")

    def _check_csr(self, csr: x509.CertificateSigningRequest) -> PublicKey:
        # The caller checked the CSR with load_csr; these checks are cheap and keep the CA from signing a
        # key nobody proved to hold, should a request reach it some other way.
        try:
            signature_ok = csr.is_signature_valid
            public_key = csr.public_key()
            check_key_allowed(public_key)
        except PKIError as exc:
            raise Rejected(str(exc)) from None
        except (UnsupportedAlgorithm, ValueError, TypeError):
            raise Rejected("the CSR uses an unsupported key or signature algorithm") from None
        if not signature_ok:
            raise Rejected("the CSR signature does not verify (altered, or signed with another key)")
        if not isinstance(public_key, PublicKey):  # pragma: no cover - policy above
            raise Rejected("the CSR key type is not allowed")
        return public_key

    @staticmethod
    def _subject(csr: x509.CertificateSigningRequest) -> x509.Name:
        try:
            return checked_subject(csr)
        except PKIError as exc:
            raise Rejected(str(exc)) from None

    @staticmethod
    def _subject_alt_names(csr: x509.CertificateSigningRequest) -> list[x509.GeneralName]:
        # Only the CSR's own SAN request is copied: names are never derived from the CN or elsewhere, and
        # other requested extensions (basicConstraints, key usages) are ignored; the profile sets those.
        try:
            san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return []
        except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
            raise Rejected("the CSR has a malformed extension request") from None
        names = list(san)
        bad_hosts = [n.value for n in names if isinstance(n, x509.DNSName) and not is_host_name(n.value)]
        if bad_hosts:
            raise Rejected(
                f"the CSR asks for invalid DNS names {', '.join(map(repr, bad_hosts))}; use host names of "
                "letters, digits and hyphens (internationalised names in their xn-- form)"
            )
        bad_emails = [n.value for n in names if isinstance(n, x509.RFC822Name) and not is_email(n.value)]
        if bad_emails:
            raise Rejected(
                f"the CSR asks for invalid email addresses {', '.join(map(repr, bad_emails))}; use "
                "addresses of the form local-part@host.name, in ASCII"
            )
        bad_uris = [
            n.value for n in names if isinstance(n, x509.UniformResourceIdentifier) and not is_uri(n.value)
        ]
        if bad_uris:
            raise Rejected(
                f"the CSR asks for invalid URIs {', '.join(map(repr, bad_uris))}; use absolute URIs "
                "(RFC 3986: a scheme, then only URI characters, others %-encoded)"
            )
        unsupported = sorted({type(n).__name__ for n in names if not isinstance(n, _SAN_TYPES)})
        if unsupported:
            raise Rejected(
                f"the CSR asks for subjectAltName entries of type {', '.join(unsupported)}; the local CA "
                "issues DNS, IP, email and URI names only"
            )
        return names

    def _issued(self, certificate: x509.Certificate) -> Issued:
        return Issued(
            certificate=certificate,
            chain=(self.certificate, *self.chain),
            order_ref=canonical_serial(certificate.serial_number),
        )

    def _issued_from(self, row: CertificateRow) -> Issued:
        return self._issued(x509.load_der_x509_certificate(row.der))

    def _publish(self, crl: x509.CertificateRevocationList) -> None:
        # Write then rename, so a reader never sees half a CRL. This runs inside the CRL-number
        # transaction, which also serialises writers of the temporary file.
        target = self._state_dir / CRL_FILE
        temporary = target.with_name(CRL_FILE + ".tmp")
        temporary.write_bytes(crl.public_bytes(serialization.Encoding.DER))
        temporary.replace(target)


def _key_usage(
    *,
    digital_signature: bool = False,
    key_encipherment: bool = False,
    key_cert_sign: bool = False,
    crl_sign: bool = False,
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


if TYPE_CHECKING:
    # mypy proves here that the classes satisfy the protocols they are used through.
    def _conforms(ca: LocalCA) -> tuple[Backend, Scanner, CRLPublisher]:
        return ca, ca, ca
