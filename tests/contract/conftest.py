"""The peers the backend contract suite runs against: one fixture per backend type, each giving a
`ContractPeer` (a connector data directory with the backend configured against its peer, the real
`JobRunner` over it, and what the peer can do and show).

A new backend type joins the suite by adding its fixture here and naming it in `PEERS`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from tests.peers import adcs_web_fake, digicert_fake
from tests.peers.adcs_web_fake import FakeAdcs
from tests.peers.digicert_fake import FakeCertCentral
from tests.peers.gcpcas_fake import FakeCAS, service_account_info
from tests.peers.moto_server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, MotoCA, MotoPeer
from tests.peers.pebble import Pebble

from caconnector.backends.base import CRLPublisher, Scanner
from caconnector.backends.errors import (
    AuthError,
    BackendError,
    ConfigError,
    NotSupported,
    Rejected,
    Transient,
)
from caconnector.backends.local.store import DATABASE_NAME
from caconnector.backends.msca.backend import MscaBackend
from caconnector.connector import backend_admin
from caconnector.connector.jobs import JobRunner
from caconnector.connector.store import ConnectorStore
from caconnector.protocol.messages import JobKind, JobMessage
from caconnector.testing import make_csr_pem

# The fixture of each backend type, by type name.
PEERS = {
    "local": "local_peer",
    "acmpca": "acmpca_peer",
    "gcpcas": "gcpcas_peer",
    "entrust": "entrust_peer",
    "msca": "msca_peer",
    "acme": "acme_peer",
    "digicert": "digicert_peer",
}
BACKEND = "contract"

# Sets the peer up to fail the way the error class describes, and returns the job that meets the failure.
Provoke = Callable[[], JobMessage]


def job(kind: JobKind, payload: Mapping[str, object], job_id: str = "job-1") -> JobMessage:
    return JobMessage(
        id=job_id,
        kind=kind,
        backend=BACKEND,
        payload=dict(payload),
        lease_expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2),
    )


def enroll_job(
    ca: str | None,
    request_id: str,
    name: str = "app.example.test",
    job_id: str = "job-1",
    fields: Mapping[str, object] | None = None,
) -> JobMessage:
    """An enroll job; `fields` adds what the type's CA needs besides the CSR (a product, an organization)."""
    payload = {"csr_pem": make_csr_pem(name), "request_id": request_id, "ca": ca, **(fields or {})}
    return job(JobKind.ENROLL, payload, job_id)


@dataclass(frozen=True)
class Capabilities:
    """What the backend type and its peer can show. A `None` reason means the case applies; otherwise
    the reason it cannot be run against this peer."""

    pend: str | None
    scan: str | None
    revoke: str | None = None


@dataclass(frozen=True)
class PendingOrder:
    """How a peer whose CA can pend shows it: `make` sets the peer up so the next order waits (approval,
    DCV) and returns the enroll job that meets it; `finish` completes it at the CA (approves it)."""

    make: Callable[[], JobMessage]
    finish: Callable[[], None]


@dataclass(frozen=True)
class ContractPeer:
    type_name: str
    runner: JobRunner
    ca: str | None  # the CA reference an enroll job names
    can: Capabilities
    stored: Callable[[], int]  # how many certificates the CA holds, as the peer's own state says
    revoked: Callable[[], set[int]]  # serials the CA holds as revoked, as the peer's own state says
    provoke: dict[type[BackendError], Provoke] = field(default_factory=dict)
    # Why an error class cannot be provoked against this peer (every class is in `provoke` or here).
    cannot_provoke: dict[type[BackendError], str] = field(default_factory=dict)
    # What an enroll job carries besides the CSR and CA for this type (a product, an organization).
    enroll_fields: Mapping[str, object] = field(default_factory=dict)
    # Given when `can.pend` is None: how to make an order wait and then finish it at the CA.
    pending: PendingOrder | None = None

    def enroll_job(
        self, request_id: str, name: str = "app.example.test", job_id: str = "job-1"
    ) -> JobMessage:
        return enroll_job(self.ca, request_id, name, job_id, self.enroll_fields)


def _store(tmp_path: Path, type_name: str, values: dict[str, object]) -> ConnectorStore:
    store = ConnectorStore(tmp_path / "connector")
    backend_admin.add_backend(store, BACKEND, type_name, values)
    return store


@pytest.fixture
def local_peer(tmp_path: Path) -> ContractPeer:
    """A local CA, made in the data directory as `backend add -type local` makes one."""
    store = _store(tmp_path, "local", {})

    def backend() -> Scanner:
        opened = backend_admin.open_backend(store, BACKEND).backend
        assert isinstance(opened, Scanner)
        return opened

    def revoked() -> set[int]:
        opened = backend_admin.open_backend(store, BACKEND).backend
        assert isinstance(opened, CRLPublisher)
        return {entry.serial_number for entry in opened.crl()}

    def corrupt_state() -> JobMessage:
        # A foreign file where the CA's database should be does not heal by waiting.
        backend_admin.open_backend(store, BACKEND)  # the CA's state directory and database are made on open
        (store.backend_state_dir(BACKEND) / DATABASE_NAME).write_bytes(b"not a database " * 100)
        return enroll_job(None, "req-corrupt")

    return ContractPeer(
        type_name="local",
        runner=JobRunner(store, "host.example.test"),
        ca=None,
        can=Capabilities(pend="the local CA signs at once: it has no orders that wait", scan=None),
        stored=lambda: len(list(backend().scan())),
        revoked=revoked,
        provoke={
            ConfigError: corrupt_state,
            Rejected: lambda: enroll_job("no-such-ca", "req-unknown-ca"),
            NotSupported: lambda: job(JobKind.COLLECT, {"order_ref": "order-1", "request_id": "req-1"}),
        },
        cannot_provoke={
            AuthError: "the local CA has no credentials to refuse",
            Transient: "the local CA's storage cannot be made busy from a test without root tricks",
        },
    )


@pytest.fixture
def acmpca_peer(tmp_path: Path, moto: MotoPeer, root: MotoCA) -> ContractPeer:
    """AWS Private CA on moto's server, over real HTTP, with one ACTIVE root CA."""
    values: dict[str, object] = {
        "accesskeyid": ACCESS_KEY_ID,
        "secretaccesskey": SECRET_ACCESS_KEY,
        "region": "us-east-1",
        "endpoint": moto.url,
    }
    store = _store(tmp_path, "acmpca", values)

    def unreachable() -> JobMessage:
        # Nothing listens on the discard port: the CA is out of reach, which may pass.
        backend_admin.update_backend(store, BACKEND, {"endpoint": "http://127.0.0.1:9"})
        return enroll_job(root.arn, "req-unreachable")

    return ContractPeer(
        type_name="acmpca",
        runner=JobRunner(store, "host.example.test"),
        ca=root.arn,
        can=Capabilities(
            pend="moto issues synchronously; pending then collect is covered with botocore's Stubber in "
            "tests/unit/backends/test_acmpca.py",
            scan="scan reads S3 audit reports, which moto does not write",
        ),
        stored=lambda: len(moto.issued_arns(root.arn)),
        # moto keeps the serial as AWS spells it, colon-separated hex.
        revoked=lambda: {int(serial.replace(":", ""), 16) for serial in moto.revocations(root.arn)},
        provoke={
            Rejected: lambda: enroll_job("no-such-ca", "req-unknown-ca"),
            NotSupported: lambda: job(JobKind.SCAN, {}),
            Transient: unreachable,
        },
        cannot_provoke={
            AuthError: "moto accepts any credentials",
            ConfigError: "moto has no failure the acmpca backend reads as a configuration error",
        },
    )


GCP_PROJECT = "private-ca-342871"
GCP_LOCATION = "us-east1"
GCP_POOL = f"projects/{GCP_PROJECT}/locations/{GCP_LOCATION}/caPools/corp"


@pytest.fixture
def gcpcas_peer(tmp_path: Path, fake: FakeCAS) -> ContractPeer:
    """Google CA Service on its fake, over real HTTP, with one pool of one CA."""
    fake.add_pool(GCP_PROJECT, GCP_LOCATION, "corp", cas=("ca-1",))
    values: dict[str, object] = {
        "project": GCP_PROJECT,
        "location": GCP_LOCATION,
        "key": json.dumps(service_account_info(GCP_PROJECT)),
        "endpoint": fake.url,
    }
    store = _store(tmp_path, "gcpcas", values)

    def failing(operation: str, status: str, then: JobMessage) -> Provoke:
        def provoke() -> JobMessage:
            fake.fail_next(operation, status)
            return then

        return provoke

    def revoked() -> set[int]:
        held = fake.stored(GCP_POOL)
        return {r.certificate.serial_number for r in held if r.revocation is not None}

    return ContractPeer(
        type_name="gcpcas",
        runner=JobRunner(store, "host.example.test"),
        ca="corp/ca-1",
        can=Capabilities(pend="CA Service issues synchronously: it has no orders that wait", scan=None),
        stored=lambda: len(fake.stored(GCP_POOL)),
        revoked=revoked,
        provoke={
            ConfigError: failing("listCaPools", "NOT_FOUND", job(JobKind.SCAN, {})),
            AuthError: failing(
                "createCertificate", "PERMISSION_DENIED", enroll_job("corp/ca-1", "req-denied")
            ),
            Rejected: lambda: enroll_job("no-such-pool", "req-unknown-pool"),
            NotSupported: lambda: job(JobKind.COLLECT, {"order_ref": "order-1", "request_id": "req-1"}),
            Transient: failing(
                "createCertificate", "RESOURCE_EXHAUSTED", enroll_job("corp/ca-1", "req-busy")
            ),
        },
    )


@pytest.fixture
def digicert_peer(tmp_path: Path) -> ContractPeer:
    """DigiCert CertCentral on its fake, over real HTTP: a private SSL product with its CA, for the
    fake's validated organization."""
    fake: FakeCertCentral = digicert_fake.digicert_peer()
    fake.reset()
    values: dict[str, object] = {"apikey": digicert_fake.API_KEY, "endpoint": fake.url}
    store = _store(tmp_path, "digicert", values)
    fields = {"product": digicert_fake.PRIVATE_PRODUCT, "organization": str(digicert_fake.VALIDATED_ORG)}
    ca = digicert_fake.PRIVATE_CA_ID

    def waiting() -> JobMessage:
        # The key's user may not skip approval here: the order waits for an approver.
        fake.may_skip_approval = False
        return enroll_job(ca, "req-approval", fields=fields)

    def approve() -> None:
        # As an approver in CertCentral would, through the API: PUT /request/{id}/status.
        for pending in fake.pending_requests():
            answer = httpx.put(
                f"{fake.url}/request/{pending.id}/status",
                json={"status": "approved"},
                headers={"X-DC-DEVKEY": digicert_fake.API_KEY},
                trust_env=False,
            )
            assert answer.status_code == 204, answer.text

    def wrong_key() -> JobMessage:
        backend_admin.update_backend(store, BACKEND, {"apikey": "0f0f0f0f-0000-4000-8000-000000000000"})
        return enroll_job(ca, "req-denied", fields=fields)

    def storm() -> JobMessage:
        fake.throttle_every = 1
        return enroll_job(ca, "req-busy", fields=fields)

    def corrupt_state() -> JobMessage:
        backend_admin.open_backend(store, BACKEND)
        (store.backend_state_dir(BACKEND) / "digicert.sqlite").write_bytes(b"not a database " * 100)
        return enroll_job(ca, "req-corrupt", fields=fields)

    def revoke_on_hold() -> JobMessage:
        return job(JobKind.REVOKE, {"serial": "1f", "reason": "certificateHold", "ca": ca})

    return ContractPeer(
        type_name="digicert",
        runner=JobRunner(store, "host.example.test"),
        ca=ca,
        can=Capabilities(pend=None, scan=None),
        stored=lambda: len(fake.placed()),
        revoked=fake.revoked_serials,
        provoke={
            AuthError: wrong_key,
            ConfigError: corrupt_state,
            NotSupported: revoke_on_hold,
            Rejected: lambda: enroll_job(
                ca, "req-no-product", fields={**fields, "product": "no_such_product"}
            ),
            Transient: storm,
        },
        enroll_fields=fields,
        pending=PendingOrder(make=waiting, finish=approve),
    )


@pytest.fixture
def entrust_peer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ContractPeer:
    """Entrust Certificate Services on its fake, over real mutual TLS and Basic auth: an APPROVED and a
    PENDING organization, a certType issued at once and one that waits for an administrator's approval."""
    from tests.peers import entrust_fake  # noqa: PLC0415  (only the entrust peer needs it)

    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(variable, raising=False)
    ecs = entrust_fake.entrust_peer()
    ecs.reset()
    values: dict[str, object] = {
        "username": entrust_fake.USERNAME,
        "apikey": entrust_fake.APIKEY,
        "cert": ecs.client_cert_pem,
        "key": ecs.client_key_pem,
        "endpoint": ecs.url,
        "cacert": ecs.ca_pem,
    }
    store = _store(tmp_path, "entrust", values)
    fields = {"product": entrust_fake.STANDARD, "organization": entrust_fake.APPROVED_ORG}

    def approve() -> None:
        [tracking_id] = ecs.pending()
        ecs.approve(tracking_id)

    def with_settings(changes: dict[str, object], then: JobMessage) -> Provoke:
        def provoke() -> JobMessage:
            backend_admin.update_backend(store, BACKEND, changes)
            return then

        return provoke

    def throttled() -> JobMessage:
        ecs.throttle(every=1, retry_after=1)
        return enroll_job("ecs", "req-throttled", fields=fields)

    return ContractPeer(
        type_name="entrust",
        runner=JobRunner(store, "host.example.test"),
        ca="ecs",
        can=Capabilities(pend=None, scan=None),
        stored=lambda: sum(1 for order in ecs.orders.values() if order.certificate is not None),
        revoked=ecs.revoked_serials,
        enroll_fields=fields,
        pending=PendingOrder(
            make=lambda: enroll_job(
                "ecs", "req-approval", fields={**fields, "product": entrust_fake.APPROVAL_REQUIRED}
            ),
            finish=approve,
        ),
        provoke={
            AuthError: with_settings(
                {"apikey": "00000000-0000-0000-0000-000000000000"},
                enroll_job("ecs", "req-denied", fields=fields),
            ),
            ConfigError: with_settings({"cacert": ecs.client_cert_pem}, job(JobKind.SCAN, {})),
            Rejected: lambda: enroll_job(
                "ecs", "req-pending-org", fields={**fields, "organization": entrust_fake.PENDING_ORG}
            ),
            Transient: throttled,
        },
        cannot_provoke={
            NotSupported: "the entrust backend has every ability the jobs ask for (collect, scan, revoke)",
        },
    )


@pytest.fixture
def adcs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAdcs]:
    # requests lets these replace a session's trust; the backend passes -cacert itself, the tests prove it.
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(variable, raising=False)
    yield from adcs_web_fake.running(tmp_path / "adcs")


@pytest.fixture
def msca_peer(tmp_path: Path, adcs: FakeAdcs) -> ContractPeer:
    """AD CS Web Enrollment on its fake, over TLS with Basic auth, with an Enrollment Agent certificate
    enrolled as `backend msca enroll-agent-cert` enrolls one."""
    ca = adcs_web_fake.CA_NAME
    values: dict[str, object] = {
        "server": "127.0.0.1",
        "ca": ca,
        "transport": "web",
        "auth": "basic",
        "username": adcs.username,
        "password": adcs.password,
        "endpoint": adcs.url,
        "cacert": adcs.ca_pem,
    }
    store = _store(tmp_path, "msca", values)
    backend = backend_admin.open_backend(store, BACKEND).backend
    assert isinstance(backend, MscaBackend)
    certificate, key = backend.enroll_agent(ca)
    backend_admin.update_backend(store, BACKEND, {"eacert": certificate, "eakey": key})
    fields = {"template": adcs_web_fake.ISSUED_TEMPLATE}

    def changed(values: dict[str, object], then: JobMessage) -> Provoke:
        def provoke() -> JobMessage:
            backend_admin.update_backend(store, BACKEND, values)
            return then

        return provoke

    return ContractPeer(
        type_name="msca",
        runner=JobRunner(store, "host.example.test"),
        ca=ca,
        can=Capabilities(
            pend=None,
            scan="AD CS lists issued certificates only over MS-CSRA views, which this backend does not read",
            revoke="revoking goes over MS-CSRA (DCOM), which the Web Enrollment fake does not serve; the "
            "request structures are tested in tests/unit/backends/test_msca_rpc.py",
        ),
        # The agent's own certificate is not one the contract asked for.
        stored=lambda: sum(1 for r in adcs.issued() if r.template != adcs.templates.agent),
        revoked=set,
        enroll_fields=fields,
        pending=PendingOrder(
            make=lambda: enroll_job(ca, "req-pending", fields={"template": adcs_web_fake.PENDING_TEMPLATE}),
            finish=adcs.approve,
        ),
        provoke={
            ConfigError: changed(
                {"cacert": FakeAdcs().ca_pem}, enroll_job(ca, "req-untrusted", fields=fields)
            ),
            AuthError: changed({"password": "not-the-password"}, enroll_job(ca, "req-auth", fields=fields)),
            Rejected: lambda: enroll_job(
                ca, "req-denied", fields={"template": adcs_web_fake.DENIED_TEMPLATE}
            ),
            NotSupported: lambda: job(JobKind.SCAN, {}),
            Transient: changed(
                {"endpoint": "https://127.0.0.1:9/certsrv"}, enroll_job(ca, "req-unreachable", fields=fields)
            ),
        },
    )


@pytest.fixture
def acme_peer(tmp_path: Path, pebble: Pebble, monkeypatch: pytest.MonkeyPatch) -> ContractPeer:
    """pebble, validating http-01 for real against the tokens the backend serves on its -httpaddress."""
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(variable, raising=False)  # they would override -cacert
    values: dict[str, object] = {
        "directory": pebble.directory_url,
        "cacert": pebble.tls_ca_pem,
        "roots": pebble.root_pem(),
        "httpaddress": f"127.0.0.1:{pebble.http_port}",
    }
    store = _store(tmp_path, "acme", values)
    stored = backend_admin.get_backend(store, BACKEND)
    account = (stored.secrets["accountkey"], str(stored.options["accounturl"]))

    def revoked() -> set[int]:
        serials = pebble.serials(*account)
        return {s for s in serials if (pebble.cert_status(s) or {}).get("Status") == "Revoked"}

    def deactivated() -> JobMessage:
        pebble.deactivate(*account)
        return enroll_job(None, "req-deactivated")

    def port_taken() -> JobMessage:
        # pebble's own listener holds that port, so the connector cannot serve http-01 tokens there.
        taken = pebble.directory_url.split("/")[2]
        backend_admin.update_backend(store, BACKEND, {"httpaddress": taken})
        return enroll_job(None, "req-port-taken")

    def hook_fails() -> JobMessage:
        backend_admin.update_backend(store, BACKEND, {"challenge": "dns-01", "hook": "false"})
        return enroll_job(None, "req-hook-fails")

    return ContractPeer(
        type_name="acme",
        runner=JobRunner(store, "host.example.test"),
        ca=None,
        can=Capabilities(
            pend="pebble issues within milliseconds of finalize, so an order cannot be held waiting between "
            "two jobs; pending (finalize answered `processing`) then collect is covered with -wait 0 in "
            "tests/unit/backends/test_acme.py",
            scan="ACME has no way to list the certificates a CA issued",
        ),
        stored=lambda: len(pebble.serials(*account)),
        revoked=revoked,
        provoke={
            AuthError: deactivated,
            ConfigError: port_taken,
            Rejected: lambda: job(JobKind.REVOKE, {"serial": "0a0b0c", "reason": "unspecified", "ca": None}),
            NotSupported: lambda: job(JobKind.SCAN, {}),
            Transient: hook_fails,
        },
    )


@pytest.fixture(params=sorted(PEERS))
def peer(request: pytest.FixtureRequest) -> ContractPeer:
    """A backend of each type, configured in a fresh data directory against its peer."""
    found: ContractPeer = request.getfixturevalue(PEERS[request.param])
    return found
