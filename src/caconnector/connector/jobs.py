"""Running one job against a configured backend, and building inventory reports.

Everything that can go wrong becomes a wire result here, in one place: backend errors become an
ErrorBody with the backend's `code`, `message`, `retryable` and `retry_after`; a payload this version
cannot read becomes `invalid_job`; anything unexpected becomes `internal_error` naming only the
exception's type (the traceback goes to the log, whose formatter scrubs known secret values). A
traceback never travels to the manager.
"""

from __future__ import annotations

import base64
import logging

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pydantic import ValidationError

from caconnector import __version__
from caconnector.backends.base import (
    Backend,
    CAInfo,
    Collector,
    CRLPublisher,
    EnrollRequest,
    Issued,
    Pending,
    RevokeRequest,
    Scanner,
)
from caconnector.backends.errors import BackendError, NotSupported, Transient
from caconnector.connector.backend_cache import BackendCache
from caconnector.connector.store import ConnectorStore, StoreError
from caconnector.pki.csr import load_csr
from caconnector.pki.errors import PKIError
from caconnector.pki.revocation import RevocationReason
from caconnector.pki.serial import canonical_serial
from caconnector.protocol.errors import JobErrorCode
from caconnector.protocol.jobs import (
    Answer,
    CheckJob,
    CollectJob,
    EnrollJob,
    InventoryJob,
    RevokeJob,
    ScanJob,
    TypedJob,
    read_job,
)
from caconnector.protocol.messages import (
    BackendReport,
    CAReport,
    EnrollPayload,
    ErrorBody,
    InventoryReport,
    IssuedBody,
    JobMessage,
    JobOutcome,
    JobResult,
    OrganizationReport,
    PendingBody,
    ProductReport,
    RenewalWindowBody,
    RevokeBody,
    RevokePayload,
    ScanBody,
)

log = logging.getLogger("caconnector.connector.jobs")


class InvalidJob(Exception):
    """The job's payload or target cannot be used as sent; the manager should not retry it as is."""


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(Encoding.PEM).decode()


def issued_body(issued: Issued) -> IssuedBody:
    window = issued.renewal_window
    return IssuedBody(
        certificate_pem=_pem(issued.certificate),
        chain_pem=[_pem(c) for c in issued.chain],
        order_ref=issued.order_ref,
        renewal_window=(
            RenewalWindowBody(start=window.start, end=window.end, explanation_url=window.explanation_url)
            if window is not None
            else None
        ),
    )


def _issued_or_pending(result: Issued | Pending) -> IssuedBody | PendingBody:
    if isinstance(result, Pending):
        return PendingBody(order_ref=result.order_ref, reason=result.reason, retry_after=result.retry_after)
    return issued_body(result)


def _crl_b64(backend: object, ca_id: str | None) -> str | None:
    """The CA's current CRL for the manager to publish, where the backend makes one (the local CA)."""
    if not isinstance(backend, CRLPublisher):
        return None
    return base64.b64encode(backend.crl(ca_id).public_bytes(Encoding.DER)).decode()


def ca_report(ca: CAInfo, crl_der_b64: str | None = None) -> CAReport:
    return CAReport(
        id=ca.id,
        name=ca.name,
        subject=ca.subject,
        key_type=ca.key_type,
        serial=ca.serial,
        not_after=ca.not_after,
        state=ca.state,
        certificate_pem=_pem(ca.certificate) if ca.certificate is not None else None,
        crl_der_b64=crl_der_b64,
    )


def error_body(exc: BaseException) -> ErrorBody:
    """The wire form of a failure. Only our own messages travel; a foreign exception is named by type."""
    if isinstance(exc, BackendError):
        retry_after = exc.retry_after if isinstance(exc, Transient) else None
        return ErrorBody(code=exc.code, message=exc.message, retryable=exc.retryable, retry_after=retry_after)
    if isinstance(exc, InvalidJob):
        return ErrorBody(code=JobErrorCode.INVALID_JOB, message=str(exc))
    if isinstance(exc, PKIError):
        return ErrorBody(code=JobErrorCode.REJECTED, message=str(exc))
    if isinstance(exc, StoreError):
        return ErrorBody(code=JobErrorCode.CONFIG_ERROR, message=str(exc))
    return ErrorBody(
        code=JobErrorCode.INTERNAL_ERROR,
        message=f"the connector failed unexpectedly ({type(exc).__name__}); see the connector's log",
    )


class JobRunner:
    """Runs jobs against the backends configured in a data directory. Opened backends are kept while
    their stored configuration is unchanged (`BackendCache`), so a `backend update` in another process
    still applies to the next job."""

    def __init__(self, store: ConnectorStore, hostname: str) -> None:
        self.store = store
        self.hostname = hostname
        self.backends = BackendCache(store)

    # ---- inventory ----------------------------------------------------------------------------------

    def backend_report(self, name: str) -> BackendReport:
        """Check one backend. A backend that fails its check is reported Offline, with the reason."""
        type_name = "unknown"
        try:
            stored = self.backends.stored(name)
            type_name = stored.type
            backend = self.backends.open(name).backend
            check = backend.check()
            cas = [ca_report(ca, _crl_b64(backend, ca.id)) for ca in check.cas]
        except BackendError as exc:
            return BackendReport(name=name, type=type_name, status="Offline", error=exc.message)
        except Exception as exc:
            log.exception("backend %r: check failed unexpectedly", name)
            return BackendReport(name=name, type=type_name, status="Offline", error=error_body(exc).message)
        return BackendReport(
            name=name,
            type=type_name,
            status="Available",
            cas=cas,
            templates=list(check.templates),
            products=[
                ProductReport(id=p.id, name=p.name, type=p.type, ca_ids=list(p.ca_ids))
                for p in check.products
            ],
            organizations=[
                OrganizationReport(id=o.id, name=o.name, status=o.status, validated_until=o.validated_until)
                for o in check.organizations
            ],
        )

    def inventory(self) -> InventoryReport:
        names = list(self.backends.backends())
        return InventoryReport(
            hostname=self.hostname,
            version=__version__,
            backends=[self.backend_report(name) for name in names],
        )

    # ---- jobs ---------------------------------------------------------------------------------------

    def run(self, job: JobMessage) -> JobResult:
        """Run a job; never raises (every failure is a result)."""
        try:
            outcome = self._dispatch(_typed(job))
        except Exception as exc:
            if not isinstance(exc, BackendError | InvalidJob | PKIError | StoreError):
                # The type name goes to the manager; the traceback only to the log.
                log.exception("job %s (%s): unexpected %s", job.id, job.kind.value, type(exc).__name__)
            return JobResult(job_id=job.id, outcome=JobOutcome.ERROR, error=error_body(exc))
        outcome_kind = JobOutcome.PENDING if isinstance(outcome, PendingBody) else JobOutcome.OK
        # A revoke's answer leaves out what it does not have (no CRL where the backend makes none).
        result = outcome.model_dump(mode="json", exclude_none=isinstance(outcome, RevokeBody))
        return JobResult(job_id=job.id, outcome=outcome_kind, result=result)

    def _dispatch(self, job: TypedJob) -> Answer:
        # Each kind's handler returns its kind's result type (protocol.jobs ties them).
        if isinstance(job, InventoryJob):
            return self.inventory()
        if isinstance(job, CheckJob):
            return self.backend_report(job.backend)
        backend = self.backends.open(job.backend).backend
        if isinstance(job, EnrollJob):
            return self._enroll(backend, job.payload)
        if isinstance(job, CollectJob):
            return self._collect(backend, job)
        if isinstance(job, RevokeJob):
            return self._revoke(backend, job.payload)
        return self._scan(backend, job)

    @staticmethod
    def _enroll(backend: Backend, payload: EnrollPayload) -> IssuedBody | PendingBody:
        csr = load_csr(payload.csr_pem.encode())
        request = EnrollRequest(
            csr=csr,
            request_id=payload.request_id,
            ca=payload.ca,
            template=payload.template,
            product=payload.product,
            organization=payload.organization,
            validity_days=payload.validity_days,
        )
        return _issued_or_pending(backend.enroll(request))

    @staticmethod
    def _collect(backend: Backend, job: CollectJob) -> IssuedBody | PendingBody:
        if not isinstance(backend, Collector):
            raise NotSupported(f"backend {job.backend!r} has no orders that wait: nothing to collect")
        return _issued_or_pending(backend.collect(job.payload.order_ref))

    @staticmethod
    def _scan(backend: Backend, job: ScanJob) -> ScanBody:
        if not isinstance(backend, Scanner):
            raise NotSupported(f"backend {job.backend!r} cannot list what its CA issued")
        return ScanBody(certificates=[issued_body(i) for i in backend.scan(job.payload.since)])

    @staticmethod
    def _revoke(backend: Backend, payload: RevokePayload) -> RevokeBody:
        try:
            serial = canonical_serial(payload.serial)
            reason = RevocationReason.parse(payload.reason)
        except ValueError as exc:
            raise InvalidJob(str(exc)) from None
        requested = backend.revoke(RevokeRequest(serial=serial, reason=reason, ca=payload.ca))
        if requested is not None:
            return RevokeBody(requested=requested.reason)
        # Hand the manager the CRL that now lists the serial, so GET /cas/{id}/crl is current at once.
        return RevokeBody(crl_der_b64=_crl_b64(backend, payload.ca))


def _typed(job: JobMessage) -> TypedJob:
    try:
        return read_job(job)
    except ValidationError as exc:
        problems = "; ".join(_problem(job, e["loc"], e["msg"]) for e in exc.errors(include_input=False))
        raise InvalidJob(f"the {job.kind.value} job is not valid ({problems})") from None


def _problem(job: JobMessage, loc: tuple[int | str, ...], message: str) -> str:
    # The union's tag (the kind) leads each location; what follows is the field in the job.
    where = [str(part) for part in loc[1:]]
    if where == ["backend"]:
        return f"a {job.kind.value} job must name a backend"
    return f"{'.'.join(where) or 'job'}: {message}"
