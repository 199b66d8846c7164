"""The `acmpca` backend type: AWS Private CA (ACM PCA) through boto3.

A CA is named by its ARN. AWS quirks this module handles:

- IssueCertificate only accepts the order and returns the certificate's ARN; the certificate appears a
  moment later, and GetCertificate answers RequestInProgressException until then. That is a Pending
  result (collected by the certificate ARN), not a failure.
- The idempotency token de-duplicates for about five minutes only, so every request id's certificate ARN
  is also recorded locally (see `store`) before the result goes back, and a repeated request id
  collects that certificate instead of ordering another.
- The signing algorithm must suit the CA's key, so it is chosen from the CA's KeyAlgorithm.
- RevokeCertificate takes the serial as colon-separated hex bytes, as `openssl x509 -text` prints it.
- There is no call that lists issued certificates: scan asks for an audit report (at most one per CA
  every 30 minutes) written to an S3 bucket the operator names with -auditbucket, and reads it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from caconnector.backends.acmpca.client import (
    AcmPcaClient,
    ExpectedAwsError,
    S3Client,
    aws_errors,
    connect,
)
from caconnector.backends.acmpca.config import AcmpcaConfig
from caconnector.backends.acmpca.store import AcmpcaStore, AuditReport
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
from caconnector.pki.chain import is_self_signed, load_certificates, order_chain
from caconnector.pki.errors import PKIError
from caconnector.pki.keys import key_type_of
from caconnector.pki.names import common_name
from caconnector.pki.revocation import RevocationReason
from caconnector.pki.serial import canonical_serial, serial_to_int

if TYPE_CHECKING:
    from caconnector.backends.base import Backend, Collector, Scanner

DEFAULT_VALIDITY_DAYS = 90
# AWS usually issues within a second or two of IssueCertificate.
PENDING_RETRY_SECONDS = 2.0
# AWS makes at most one audit report per CA in this time; a scan within it reads the previous report.
AUDIT_REPORT_INTERVAL = dt.timedelta(minutes=30)
# Reports take seconds to minutes. The wait is bounded well inside the manager's job lease (120 s by
# default); a report still being written is picked up by the next scan.
AUDIT_POLL_SECONDS = 2.0
AUDIT_POLLS = 30

# Our certificate types: the manager sends a profile's type (server, client) as the template when the
# profile names none and the backend offers a template of that name, so map them to AWS's own.
TYPE_TEMPLATES = {
    "server": "EndEntityServerAuthCertificate/V1",
    "client": "EndEntityClientAuthCertificate/V1",
}
# The end-entity templates AWS defines, by the short names `enroll` accepts (full ARNs work too).
# Without a template AWS uses EndEntityCertificate/V1.
TEMPLATES = (
    *TYPE_TEMPLATES,
    "EndEntityCertificate/V1",
    "EndEntityServerAuthCertificate/V1",
    "EndEntityClientAuthCertificate/V1",
    "CodeSigningCertificate/V1",
    "OCSPSigningCertificate/V1",
    "EndEntityCertificate_APIPassthrough/V1",
    "EndEntityServerAuthCertificate_APIPassthrough/V1",
    "EndEntityClientAuthCertificate_APIPassthrough/V1",
    "CodeSigningCertificate_APIPassthrough/V1",
    "OCSPSigningCertificate_APIPassthrough/V1",
)
_TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9_]+/V\d+$")

# KeyAlgorithm -> our key type names (caconnector.pki.keys) and the signing algorithm that suits it.
_KEY_TYPES = {
    "RSA_2048": "rsa-2048",
    "RSA_3072": "rsa-3072",
    "RSA_4096": "rsa-4096",
    "EC_prime256v1": "ec-p256",
    "EC_secp384r1": "ec-p384",
    "EC_secp521r1": "ec-p521",
    "ML_DSA_44": "mldsa44",
    "ML_DSA_65": "mldsa65",
    "ML_DSA_87": "mldsa87",
    "SM2": "sm2",
}
_SIGNING_ALGORITHMS = {
    "RSA_2048": "SHA256WITHRSA",
    "RSA_3072": "SHA256WITHRSA",
    "RSA_4096": "SHA256WITHRSA",
    # ECDSA pairs each curve with the hash of matching strength (as RFC 5480 recommends).
    "EC_prime256v1": "SHA256WITHECDSA",
    "EC_secp384r1": "SHA384WITHECDSA",
    "EC_secp521r1": "SHA512WITHECDSA",
    "ML_DSA_44": "ML_DSA_44",
    "ML_DSA_65": "ML_DSA_65",
    "ML_DSA_87": "ML_DSA_87",
    "SM2": "SM3WITHSM2",
}
# RFC 5280 names -> AWS RevocationReason. certificateHold is missing on purpose: AWS has no hold.
_REASONS = {
    RevocationReason.UNSPECIFIED: "UNSPECIFIED",
    RevocationReason.KEY_COMPROMISE: "KEY_COMPROMISE",
    RevocationReason.CA_COMPROMISE: "CERTIFICATE_AUTHORITY_COMPROMISE",
    RevocationReason.AFFILIATION_CHANGED: "AFFILIATION_CHANGED",
    RevocationReason.SUPERSEDED: "SUPERSEDED",
    RevocationReason.CESSATION_OF_OPERATION: "CESSATION_OF_OPERATION",
    RevocationReason.PRIVILEGE_WITHDRAWN: "PRIVILEGE_WITHDRAWN",
    RevocationReason.AA_COMPROMISE: "A_A_COMPROMISE",
}
# CreateCertificateAuthority's Subject fields, most significant first (the DER order).
_SUBJECT_FIELDS = (
    ("Country", NameOID.COUNTRY_NAME),
    ("State", NameOID.STATE_OR_PROVINCE_NAME),
    ("Locality", NameOID.LOCALITY_NAME),
    ("Organization", NameOID.ORGANIZATION_NAME),
    ("OrganizationalUnit", NameOID.ORGANIZATIONAL_UNIT_NAME),
    ("DistinguishedNameQualifier", NameOID.DN_QUALIFIER),
    ("SerialNumber", NameOID.SERIAL_NUMBER),
    ("Title", NameOID.TITLE),
    ("Surname", NameOID.SURNAME),
    ("GivenName", NameOID.GIVEN_NAME),
    ("Initials", NameOID.INITIALS),
    ("Pseudonym", NameOID.PSEUDONYM),
    ("GenerationQualifier", NameOID.GENERATION_QUALIFIER),
    ("CommonName", NameOID.COMMON_NAME),
)
# arn:PARTITION:acm-pca:REGION:ACCOUNT:certificate-authority/CA_ID[/certificate/CERT_ID]
_CA_ARN = re.compile(r"^arn:[\w-]+:acm-pca:[\w-]*:\d*:certificate-authority/[\w-]+$")
_CERTIFICATE_ARN = re.compile(
    r"^(arn:[\w-]+:acm-pca:[\w-]*:\d*:certificate-authority/[\w-]+)/certificate/\w+$"
)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def aws_serial(serial: str | int) -> str:
    """A serial as RevokeCertificate wants it: colon-separated lower-case hex bytes, as
    `openssl x509 -text` prints them (AWS documents that form), e.g. `0a:1b:2c`."""
    value = serial if isinstance(serial, int) else serial_to_int(serial)
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big").hex(":")


def idempotency_token(request_id: str) -> str:
    """IssueCertificate's token for a request id: stable across retries and connectors, and within
    AWS's limit (1-36 characters); 128 bits of SHA-256 keep distinct requests apart."""
    return hashlib.sha256(request_id.encode("utf-8")).hexdigest()[:32]


def template_arn(template: str, partition: str = "aws") -> str:
    """A template ARN from a full ARN or a short name (`EndEntityServerAuthCertificate/V1`, or without
    `/V1`). AWS's template ARNs carry no region or account, only the partition."""
    if template.startswith("arn:"):
        return template
    template = TYPE_TEMPLATES.get(template, template)
    name = template if "/" in template else f"{template}/V1"
    if not _TEMPLATE_NAME.match(name):
        raise Rejected(
            f"template {template!r} is not an AWS Private CA template; give a name such as "
            "EndEntityServerAuthCertificate/V1 or a template ARN"
        )
    return f"arn:{partition}:acm-pca:::template/{name}"


def _ca_arn_of(certificate_arn: str) -> str:
    """The CA ARN inside a certificate ARN (AWS builds one from the other)."""
    match = _CERTIFICATE_ARN.match(certificate_arn)
    if match is None:
        raise Rejected(f"{certificate_arn!r} is not an AWS Private CA certificate ARN")
    return match.group(1)


@dataclass(frozen=True)
class _Authority:
    """The parts of AWS's CertificateAuthority structure we use."""

    arn: str
    status: str
    key_algorithm: str
    subject: dict[str, Any]
    not_after: dt.datetime | None

    @classmethod
    def from_aws(cls, data: dict[str, Any]) -> _Authority:
        configuration: dict[str, Any] = data.get("CertificateAuthorityConfiguration") or {}
        not_after = data.get("NotAfter")
        return cls(
            arn=str(data.get("Arn", "")),
            status=str(data.get("Status", "")),
            key_algorithm=str(configuration.get("KeyAlgorithm", "")),
            subject=dict(configuration.get("Subject") or {}),
            not_after=not_after.astimezone(dt.UTC) if isinstance(not_after, dt.datetime) else None,
        )


def _subject_name(subject: dict[str, Any]) -> x509.Name:
    attributes = []
    for field, oid in _SUBJECT_FIELDS:
        value = subject.get(field)
        if isinstance(value, str) and value:
            try:
                attributes.append(x509.NameAttribute(oid, value))
            except ValueError:  # a value cryptography refuses (e.g. a Country not two letters): leave out
                continue
    return x509.Name(attributes)


def _is_ca_certificate(certificate: x509.Certificate) -> bool:
    try:
        return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except (x509.ExtensionNotFound, ValueError):
        return False


class AcmpcaBackend:
    """The CAs of one AWS account and region.

    Scan is a method of every instance, but works only with -auditbucket and otherwise raises
    NotSupported naming that option. A configuration, not the type, decides whether AWS can list what it
    issued; the `Scanner` check in the connector is structural and cannot see that, and its generic
    "cannot list" would hide the one option that fixes it.
    """

    def __init__(
        self,
        *,
        client: AcmPcaClient,
        name: str,
        store: AcmpcaStore,
        s3: S3Client | None = None,
        auditbucket: str | None = None,
        now: Callable[[], dt.datetime] = _utcnow,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._name = name
        self._store = store
        self._s3 = s3
        self._auditbucket = auditbucket
        self._now = now
        self._sleep = sleep

    @classmethod
    def from_config(cls, config: AcmpcaConfig, context: BackendContext) -> AcmpcaBackend:
        """The backend with real boto3 clients (built without any network traffic)."""
        clients = connect(config)
        return cls(
            client=clients.acmpca,
            name=context.name,
            store=AcmpcaStore(context.state_dir, context.name),
            s3=clients.s3,
            auditbucket=config.auditbucket,
            now=context.now,
        )

    # -- required -------------------------------------------------------------------------------------

    def check(self) -> CheckResult:
        # ListCertificateAuthorities returns the same CertificateAuthority structures as
        # DescribeCertificateAuthority, so no Describe per CA is needed here.
        cas = []
        for authority in self._authorities():
            if authority.status == "DELETED":  # restorable for a while, but it can do nothing
                continue
            certificate = self._ca_certificates(authority.arn)[0] if authority.status == "ACTIVE" else None
            cas.append(self._ca_info(authority, certificate))
        return CheckResult(cas=tuple(cas), templates=TEMPLATES)

    def enroll(self, request: EnrollRequest) -> Issued | Pending:
        # Exactly once: a request id already ordered is collected by its certificate ARN, however long
        # ago the first attempt was (AWS's own token forgets after about five minutes).
        recorded = self._store.certificate_arn(request.request_id)
        if recorded is not None:
            return self._fetch(recorded)

        authority = self._authority(request.ca, "issue certificates")
        signing = _SIGNING_ALGORITHMS.get(authority.key_algorithm)
        if signing is None:
            raise Rejected(
                f"backend {self._name!r}: CA {authority.arn} has key algorithm {authority.key_algorithm!r}, "
                "which this connector cannot pick a signing algorithm for"
            )
        days = DEFAULT_VALIDITY_DAYS if request.validity_days is None else request.validity_days
        params: dict[str, Any] = {
            "CertificateAuthorityArn": authority.arn,
            "Csr": request.csr.public_bytes(serialization.Encoding.PEM),
            "SigningAlgorithm": signing,
            "Validity": {"Value": days, "Type": "DAYS"},
            "IdempotencyToken": idempotency_token(request.request_id),
        }
        if request.template is not None:
            params["TemplateArn"] = template_arn(request.template, authority.arn.split(":")[1])
        with aws_errors(self._name, "IssueCertificate", not_found=self._no_ca(authority.arn)):
            issued = self._client.issue_certificate(**params)
        # Recorded before anything else can fail: from here on, a retry collects this certificate.
        certificate_arn = self._store.record_request(
            request.request_id, str(issued["CertificateArn"]), self._now()
        )
        return self._fetch(certificate_arn)

    def revoke(self, request: RevokeRequest) -> None:
        reason = _REASONS.get(request.reason)
        if reason is None:
            raise Rejected(
                f"backend {self._name!r}: AWS Private CA cannot put a certificate on hold "
                f"({request.reason.value}); revoke it with another reason"
            )
        try:
            serial = aws_serial(canonical_serial(request.serial))
        except (TypeError, ValueError) as exc:
            raise Rejected(str(exc)) from None
        # A named CA is not described first: RevokeCertificate itself refuses an unknown or inactive CA.
        ca_arn = self._check_ca_arn(request.ca) if request.ca else self._authority(None, "revoke").arn
        try:
            with aws_errors(
                self._name,
                "RevokeCertificate",
                expected={"RequestAlreadyProcessedException"},
                not_found=f"CA {ca_arn} has no certificate with serial {serial} (or no such CA)",
            ):
                self._client.revoke_certificate(
                    CertificateAuthorityArn=ca_arn, CertificateSerial=serial, RevocationReason=reason
                )
        except ExpectedAwsError:
            return  # already revoked: revoking is idempotent, and the first date and reason stand

    # -- optional abilities ---------------------------------------------------------------------------

    def collect(self, order_ref: str) -> Issued | Pending:
        """The certificate ordered as `order_ref` (its ARN), or Pending while AWS is still issuing it."""
        return self._fetch(order_ref)

    def scan(self, since: dt.datetime | None = None) -> Iterator[Issued]:
        """Every unrevoked end-entity certificate the ACTIVE CAs issued (at or after `since`), read
        from audit reports in -auditbucket."""
        if self._auditbucket is None or self._s3 is None:
            raise NotSupported(
                f"backend {self._name!r}: scan needs -auditbucket: AWS Private CA lists issued "
                "certificates only through audit reports"
            )
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=dt.UTC)
        return self._scan(self._auditbucket, self._s3, since)

    # -- helpers ---------------------------------------------------------------------------------------

    def _authorities(self) -> Iterator[_Authority]:
        token: str | None = None
        while True:
            params: dict[str, Any] = {"MaxResults": 100}
            if token:
                params["NextToken"] = token
            with aws_errors(self._name, "ListCertificateAuthorities"):
                page = self._client.list_certificate_authorities(**params)
            for data in page.get("CertificateAuthorities") or []:
                yield _Authority.from_aws(data)
            token = page.get("NextToken")
            if not token:
                return

    def _authority(self, ca: str | None, action: str) -> _Authority:
        """The named CA, which must be ACTIVE; or the only ACTIVE CA when none is named."""
        if ca is not None:
            arn = self._check_ca_arn(ca)
            with aws_errors(self._name, "DescribeCertificateAuthority", not_found=self._no_ca(arn)):
                data = self._client.describe_certificate_authority(CertificateAuthorityArn=arn)
            authority = _Authority.from_aws(data["CertificateAuthority"])
            if authority.status != "ACTIVE":
                raise Rejected(
                    f"backend {self._name!r}: CA {arn} is {authority.status}, so it cannot {action}; "
                    "activate it in AWS Private CA or use another CA"
                )
            return authority
        active = [a for a in self._authorities() if a.status == "ACTIVE"]
        if len(active) == 1:
            return active[0]
        if not active:
            raise Rejected(f"backend {self._name!r}: no CA in this account and region is ACTIVE")
        raise Rejected(
            f"backend {self._name!r}: {len(active)} CAs are ACTIVE, so name the one to use (the profile's "
            f"CA, or -ca): {', '.join(a.arn for a in active)}"
        )

    def _check_ca_arn(self, ca: str) -> str:
        if not _CA_ARN.match(ca):
            raise Rejected(
                f"backend {self._name!r}: {ca!r} is not a CA ARN; CAs are named by ARN "
                "(arn:aws:acm-pca:REGION:ACCOUNT:certificate-authority/ID), see backend cas"
            )
        return ca

    def _no_ca(self, arn: str) -> str:
        return f"AWS Private CA has no CA {arn} in this account and region; backend cas lists them"

    def _ca_certificates(self, ca_arn: str) -> list[x509.Certificate]:
        """The CA's certificate followed by its chain up to the root (AWS sends no chain for a root)."""
        with aws_errors(self._name, "GetCertificateAuthorityCertificate", not_found=self._no_ca(ca_arn)):
            response = self._client.get_certificate_authority_certificate(CertificateAuthorityArn=ca_arn)
        certificates = self._load(response["Certificate"], "the CA certificate")
        if response.get("CertificateChain"):
            certificates.extend(self._load(response["CertificateChain"], "the CA's chain"))
        return certificates

    def _ca_info(self, authority: _Authority, certificate: x509.Certificate | None) -> CAInfo:
        name = certificate.subject if certificate is not None else _subject_name(authority.subject)
        key_type = _KEY_TYPES.get(authority.key_algorithm)
        if key_type is None:
            key_type = (
                key_type_of(certificate.public_key())
                if certificate is not None
                else authority.key_algorithm.lower()
            )
        return CAInfo(
            id=authority.arn,
            name=common_name(name) or authority.arn,
            subject=name.rfc4514_string(),
            key_type=key_type,
            serial=canonical_serial(certificate.serial_number) if certificate is not None else "",
            not_after=certificate.not_valid_after_utc if certificate is not None else authority.not_after,
            state=authority.status.lower(),
            certificate=certificate,
        )

    def _fetch(self, certificate_arn: str) -> Issued | Pending:
        ca_arn = _ca_arn_of(certificate_arn)
        try:
            with aws_errors(
                self._name,
                "GetCertificate",
                expected={"RequestInProgressException"},
                not_found=f"AWS Private CA has no certificate {certificate_arn}",
            ):
                response = self._client.get_certificate(
                    CertificateAuthorityArn=ca_arn, CertificateArn=certificate_arn
                )
        except ExpectedAwsError:
            return Pending(
                order_ref=certificate_arn,
                reason="AWS Private CA is issuing the certificate",
                retry_after=PENDING_RETRY_SECONDS,
            )
        certificate = self._load(response["Certificate"], "the certificate")[0]
        # GetCertificate's chain runs from the issuing CA up to the root. When it stops short of a root
        # (or is missing), the CA's own certificate and chain fill the gap.
        candidates = (
            self._load(response["CertificateChain"], "the chain") if response.get("CertificateChain") else []
        )
        chain = order_chain(certificate, candidates)
        if not chain or not is_self_signed(chain[-1]):
            chain = order_chain(certificate, [*candidates, *self._ca_certificates(ca_arn)])
        return Issued(certificate=certificate, chain=tuple(chain), order_ref=certificate_arn)

    def _load(self, pem: object, what: str) -> list[x509.Certificate]:
        data = pem.encode() if isinstance(pem, str) else pem if isinstance(pem, bytes) else b""
        try:
            return load_certificates(data)
        except PKIError as exc:
            # The certificate exists at AWS; only this answer was unreadable. Ask again later.
            raise Transient(
                f"backend {self._name!r}: AWS returned {what} in a form we cannot read ({exc})"
            ) from None

    # -- scan --------------------------------------------------------------------------------------------

    def _scan(self, bucket: str, s3: S3Client, since: dt.datetime | None) -> Iterator[Issued]:
        seen: set[str] = set()
        # Only ACTIVE CAs: a CA that AWS will not audit in its current state must not stop the scan of
        # the others, and a disabled CA's certificates come in once it is active again.
        for authority in [a for a in self._authorities() if a.status == "ACTIVE"]:
            for entry in self._audit_entries(authority.arn, bucket, s3):
                certificate_arn = entry.get("certificateArn")
                if not isinstance(certificate_arn, str) or certificate_arn in seen:
                    continue
                seen.add(certificate_arn)
                # Issued carries no revocation state: importing a revoked certificate would show it as
                # valid, so revoked ones stay out.
                if entry.get("revokedAt"):
                    continue
                issued_at = _report_time(entry.get("issuedAt"))
                if since is not None and issued_at is not None and issued_at < since:
                    continue
                result = self._fetch(certificate_arn)
                # The CA's own certificate (a root signs itself with IssueCertificate) is reported by check.
                if isinstance(result, Issued) and not _is_ca_certificate(result.certificate):
                    yield result

    def _audit_entries(self, ca_arn: str, bucket: str, s3: S3Client) -> list[dict[str, Any]]:
        now = self._now()
        report = self._store.audit_report(ca_arn)
        if report is None or now - report.created_at >= AUDIT_REPORT_INTERVAL:
            with aws_errors(
                self._name, "CreateCertificateAuthorityAuditReport", not_found=self._no_ca(ca_arn)
            ):
                created = self._client.create_certificate_authority_audit_report(
                    CertificateAuthorityArn=ca_arn, S3BucketName=bucket, AuditReportResponseFormat="JSON"
                )
            report = AuditReport(ca_arn, str(created["AuditReportId"]), str(created["S3Key"]), now)
            self._store.record_audit_report(report)
        self._wait_for(report, bucket)
        with aws_errors(
            self._name, "GetObject", not_found=f"the audit report {report.s3_key} is not in bucket {bucket}"
        ):
            body = s3.get_object(Bucket=bucket, Key=report.s3_key)["Body"].read()
        try:
            entries = json.loads(body)
        except ValueError:
            entries = None
        if not isinstance(entries, list):
            raise Transient(f"backend {self._name!r}: the audit report {report.s3_key} is not a JSON list")
        return [e for e in entries if isinstance(e, dict)]

    def _wait_for(self, report: AuditReport, bucket: str) -> None:
        for attempt in range(AUDIT_POLLS):
            if attempt:
                self._sleep(AUDIT_POLL_SECONDS)
            with aws_errors(self._name, "DescribeCertificateAuthorityAuditReport"):
                described = self._client.describe_certificate_authority_audit_report(
                    CertificateAuthorityArn=report.ca_arn, AuditReportId=report.report_id
                )
            status = described.get("AuditReportStatus")
            if status == "SUCCESS":
                return
            if status == "FAILED":
                # Forgotten, so the scan after the fix asks for a new report.
                self._store.forget_audit_report(report.ca_arn)
                raise ConfigError(
                    f"backend {self._name!r}: AWS could not write the audit report of {report.ca_arn} to the "
                    f"S3 bucket {bucket!r}; the bucket policy must let acm-pca.amazonaws.com write to it"
                )
        raise Transient(
            f"backend {self._name!r}: AWS is still writing the audit report of {report.ca_arn}; scan again",
            retry_after=60,
        )


def _report_time(value: object) -> dt.datetime | None:
    """Audit reports write times as `2018-02-26T19:39:58+0000`."""
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        return None


if TYPE_CHECKING:
    # mypy proves here that the classes satisfy the protocols they are used through.
    def _conforms(backend: AcmpcaBackend) -> tuple[Backend, Collector, Scanner]:
        return backend, backend, backend
