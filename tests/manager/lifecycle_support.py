"""A certificate lab for the manager's lifecycle tests: the real local CA (caconnector.backends.local)
behind a FakeConnector that answers jobs the way `ca-connector` does, plus CSRs and profiles.

The CA runs in-process on the real clock (its certificates must be valid now); the manager's clock is
the test's FakeClock, which only ever runs ahead of real time.
"""

from __future__ import annotations

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

from caconnector.backends.base import Issued
from caconnector.backends.local.backend import LocalCA
from caconnector.connector import backend_admin, jobs
from caconnector.connector.jobs import JobRunner
from caconnector.connector.store import ConnectorStore
from caconnector.manager.db.models import Certificate, Job, ManagedBackend
from caconnector.manager.runtime import Runtime
from caconnector.pki.keys import PrivateKey, generate_private_key, signature_hash_for
from caconnector.protocol import messages

API = "/api/v1"
BACKEND = "lab"

Responder = Callable[[dict[str, Any]], dict[str, Any]]


def local_ca(store: ConnectorStore) -> LocalCA:
    """A new local CA in a connector data directory, made the way `ca-connector backend add -type local`
    makes one."""
    backend_admin.add_backend(store, BACKEND, "local", {})
    opened = backend_admin.open_backend(store, BACKEND).backend
    assert isinstance(opened, LocalCA)
    return opened


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
    """What the connector sends back for an issued certificate."""
    return jobs.issued_body(issued).model_dump(mode="json")


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
    runner: JobRunner  # the connector's job runner, over a data directory holding backend `lab`
    ca: LocalCA  # the same CA, for a test to act on directly (as another client of the CA would)
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
        """Run a job against the local CA with the connector's own job runner."""
        result = self.runner.run(messages.JobMessage.model_validate(job))
        answer: dict[str, Any] = result.model_dump(mode="json", exclude_none=True)
        return answer

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
    store = ConnectorStore(directory / "connector")
    lab = Lab(runtime, connector, JobRunner(store, "lab.example.test"), local_ca(store), "", "")
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
