"""A certificate lab for the manager's lifecycle tests: the real local CA (caconnector.backends.local)
behind a FakeConnector that answers jobs the way `ca-connector` does, plus CSRs and profiles.

The CA runs in-process on the real clock (its certificates must be valid now); the manager's clock is
the test's FakeClock, which only ever runs ahead of real time.
"""

from __future__ import annotations

import base64
import datetime as dt
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select
from tests.manager.conftest import Caller
from tests.manager.connector_support import FakeConnector, backend_report, registered

from caconnector.backends.base import BackendContext, EnrollRequest, Issued, RevokeRequest
from caconnector.backends.configs import LocalConfig
from caconnector.backends.errors import BackendError
from caconnector.backends.local import LocalBackendType
from caconnector.backends.local.backend import LocalCA
from caconnector.manager.db.models import Certificate, Job, ManagedBackend
from caconnector.manager.runtime import Runtime
from caconnector.pki.csr import load_csr
from caconnector.pki.keys import PrivateKey, generate_private_key, signature_hash_for
from caconnector.pki.revocation import RevocationReason
from caconnector.protocol import messages

API = "/api/v1"
BACKEND = "lab"

Responder = Callable[[dict[str, Any]], dict[str, Any]]


def local_ca(directory: Path) -> LocalCA:
    """A new local CA, made the way `ca-connector backend add -type local` makes one."""
    context = BackendContext(name=BACKEND, state_dir=directory / "state")
    factory = LocalBackendType()
    return factory.open(factory.provision(LocalConfig(), context), context)


def make_csr(
    key_type: str = "ec-p256", *, dns: Sequence[str] = ("app.example.test",), common_name: str | None = None
) -> tuple[str, PrivateKey]:
    key = generate_private_key(key_type)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else [])
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if dns:
        names = [x509.DNSName(name) for name in dns]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    csr = builder.sign(key, signature_hash_for(key))
    return csr.public_bytes(serialization.Encoding.PEM).decode(), key


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def issued_body(issued: Issued) -> dict[str, Any]:
    body = messages.IssuedBody(
        certificate_pem=_pem(issued.certificate),
        chain_pem=[_pem(c) for c in issued.chain],
        order_ref=issued.order_ref,
    )
    return body.model_dump(mode="json")


def ok(job_id: str, result: dict[str, Any]) -> dict[str, Any]:
    return {"job_id": job_id, "outcome": "ok", "result": result}


def pending(job_id: str, order_ref: str, reason: str, retry_after: float | None = None) -> dict[str, Any]:
    body = messages.PendingBody(order_ref=order_ref, reason=reason, retry_after=retry_after)
    return {"job_id": job_id, "outcome": "pending", "result": body.model_dump(mode="json")}


def error(job_id: str, code: str, message: str, *, retryable: bool = False, **extra: Any) -> dict[str, Any]:
    body = messages.ErrorBody(code=code, message=message, retryable=retryable, **extra)
    return {"job_id": job_id, "outcome": "error", "error": body.model_dump(mode="json")}


@dataclass
class Lab:
    """A registered connector offering backend `lab`: the local CA."""

    runtime: Runtime
    connector: FakeConnector
    ca: LocalCA
    backend_id: str
    ca_id: str

    # ---- what the connector reports -----------------------------------------------------------------

    def ca_report(self, **extra: Any) -> dict[str, Any]:
        certificate = self.ca.certificate
        return {
            "id": self.ca.id,
            "name": "Lab CA",
            "subject": certificate.subject.rfc4514_string(),
            "key_type": "ec-p256",
            "serial": self.ca.id,
            "not_after": certificate.not_valid_after_utc.isoformat(),
            "state": "active",
            "certificate_pem": _pem(certificate),
            **extra,
        }

    def report(self, client: httpx.Client, **extra: Any) -> None:
        backend = backend_report(BACKEND, cas=[self.ca_report()], templates=["server", "client"], **extra)
        response = self.connector.inventory(client, [backend])
        assert response.status_code == 204, response.text

    # ---- what the connector does with jobs ----------------------------------------------------------

    def answer(self, job: dict[str, Any]) -> dict[str, Any]:
        """Run a job against the local CA as the connector's job runner does."""
        payload = job["payload"]
        try:
            if job["kind"] == "enroll":
                enroll = messages.EnrollPayload.model_validate(payload)
                request = EnrollRequest(
                    csr=load_csr(enroll.csr_pem.encode()),
                    request_id=enroll.request_id,
                    ca=enroll.ca,
                    template=enroll.template,
                    validity_days=enroll.validity_days,
                )
                return ok(job["id"], issued_body(self.ca.enroll(request)))
            if job["kind"] == "revoke":
                revoke = messages.RevokePayload.model_validate(payload)
                reason = RevocationReason.parse(revoke.reason)
                self.ca.revoke(RevokeRequest(serial=revoke.serial, reason=reason, ca=revoke.ca))
                crl = self.ca.crl().public_bytes(serialization.Encoding.DER)
                return ok(job["id"], {"crl_der_b64": base64.b64encode(crl).decode()})
            if job["kind"] == "scan":
                found = [messages.IssuedBody.model_validate(issued_body(i)) for i in self.ca.scan()]
                return ok(job["id"], messages.ScanBody(certificates=found).model_dump(mode="json"))
        except BackendError as exc:
            return error(job["id"], exc.code, exc.message, retryable=exc.retryable)
        raise AssertionError(f"the lab does not answer {job['kind']} jobs")

    def take(self, client: httpx.Client, capacity: int = 8) -> list[dict[str, Any]]:
        """Poll once, without waiting: the jobs handed out."""
        response = self.connector.poll(client, capacity=capacity)
        assert response.status_code == 200, response.text
        jobs: list[dict[str, Any]] = response.json()["jobs"]
        return jobs

    def send(self, client: httpx.Client, *results: dict[str, Any]) -> None:
        response = self.connector.poll(client, capacity=0, results=list(results))
        assert response.status_code == 200, response.text
        assert response.json()["acknowledged"] == [r["job_id"] for r in results]

    def work(self, client: httpx.Client, responder: Responder | None = None) -> list[dict[str, Any]]:
        """Take the queued jobs and answer each (with the CA by default); return the jobs."""
        jobs = self.take(client)
        if jobs:
            self.send(client, *[(responder or self.answer)(job) for job in jobs])
        return jobs

    @contextmanager
    def serving(self, client: httpx.Client, wait: float = 0.5) -> Iterator[None]:
        """Poll and answer in a thread, as a running connector does, until the block ends."""
        stop = threading.Event()
        failures: list[BaseException] = []

        def run() -> None:
            try:
                while not stop.is_set():
                    response = self.connector.poll(client, wait=wait, capacity=4, timeout=wait + 10)
                    jobs = response.json()["jobs"]
                    if jobs:
                        self.send(client, *[self.answer(job) for job in jobs])
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread, which re-raises it
                failures.append(exc)

        thread = threading.Thread(target=run, name="lab-connector", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=wait + 15)
        if failures:
            raise failures[0]


def make_lab(runtime: Runtime, client: httpx.Client, directory: Path, **report: Any) -> Lab:
    connector = registered(runtime, client)
    lab = Lab(runtime, connector, local_ca(directory), "", "")
    lab.report(client, **report)
    with runtime.sessions.begin() as session:
        backend = session.scalars(select(ManagedBackend).where(ManagedBackend.local_name == BACKEND)).one()
        lab.backend_id, lab.ca_id = backend.id, backend.cas[0].id
    return lab


def create_profile(client: httpx.Client, caller: Caller, lab: Lab, **fields: Any) -> dict[str, Any]:
    body = {
        "name": "web",
        "backend": lab.backend_id,
        "ca": lab.ca_id,
        "cert_type": "server",
        "terms_days": [30, 90],
        "key_types": ["ec-p256", "rsa-2048"],
        **fields,
    }
    response = client.post(f"{API}/profiles", json=body, headers=caller.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def enroll(
    client: httpx.Client, caller: Caller, csr: str, profile: str = "web", **extra: Any
) -> httpx.Response:
    return client.post(
        f"{API}/certificates", json={"profile": profile, "csr": csr, **extra}, headers=caller.headers
    )


def certificate(client: httpx.Client, caller: Caller, certificate_id: str) -> dict[str, Any]:
    response = client.get(f"{API}/certificates/{certificate_id}", headers=caller.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def count(runtime: Runtime, model: type[Certificate] | type[Job], *where: Any) -> int:
    with runtime.sessions.begin() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def jobs_of(runtime: Runtime, certificate_id: str) -> list[Job]:
    with runtime.sessions.begin() as session:
        return list(
            session.scalars(select(Job).where(Job.certificate_id == certificate_id).order_by(Job.created_at))
        )


def after(runtime: Runtime, seconds: float) -> dt.datetime:
    return runtime.now() + dt.timedelta(seconds=seconds)
