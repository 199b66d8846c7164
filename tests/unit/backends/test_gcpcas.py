"""The gcpcas backend with the official client (REST transport) against the fake CA Service over real HTTP:
results and the fake's stored state are asserted, not which SDK methods were called."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from google.oauth2 import service_account
from pydantic import SecretStr
from tests.peers.gcpcas_fake import SERVICE_ACCOUNT_KEY_ID, FakeCAS, service_account_info
from tests.ports import free_port

from caconnector import testing
from caconnector.backends import registry
from caconnector.backends.base import BackendContext, EnrollRequest, RevokeRequest, Scanner
from caconnector.backends.configs import GcpcasConfig
from caconnector.backends.errors import AuthError, ConfigError, NotSupported, Rejected, Transient
from caconnector.backends.gcpcas import GcpcasBackendType
from caconnector.backends.gcpcas.backend import GoogleCAS, cas_request_id, certificate_id
from caconnector.backends.gcpcas.client import connect
from caconnector.backends.registry import BackendTypeUnavailable
from caconnector.pki.revocation import RevocationReason
from caconnector.pki.serial import canonical_serial

PROJECT = "private-ca-342871"
LOCATION = "us-east1"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
CORP = f"{PARENT}/caPools/corp"
MESH = f"{PARENT}/caPools/mesh"

MakeCSR = Callable[..., x509.CertificateSigningRequest]
Open = Callable[..., GoogleCAS]


@pytest.fixture
def make_csr() -> MakeCSR:
    return testing.make_csr


def _config(endpoint: str, **changes: str) -> GcpcasConfig:
    values = {"project": PROJECT, "location": LOCATION, "key": json.dumps(service_account_info())}
    values["endpoint"] = endpoint
    values.update(changes)
    return GcpcasConfig.model_validate(values)


@pytest.fixture
def open_backend(fake: FakeCAS, tmp_path: Path) -> Open:
    def build(**changes: str) -> GoogleCAS:
        config = _config(**{"endpoint": fake.url, **changes})
        return GcpcasBackendType().open(config, BackendContext(name="corp-gcp", state_dir=tmp_path))

    return build


@pytest.fixture
def corp(fake: FakeCAS) -> None:
    """An Enterprise pool with two CAs and a DevOps pool, as a project often has both."""
    fake.add_pool(PROJECT, LOCATION, "corp", cas=("ca-1", "ca-2"))
    fake.add_pool(PROJECT, LOCATION, "mesh", tier="DEVOPS", cas=("mesh-ca",))


def _request(csr: x509.CertificateSigningRequest, request_id: str = "req-1", **options: Any) -> EnrollRequest:
    return EnrollRequest(csr=csr, request_id=request_id, **options)


def _openssl_verify(tmp_path: Path, leaf: x509.Certificate, chain: tuple[x509.Certificate, ...]) -> str:
    """openssl verify of the leaf, trusting only the chain's last certificate (the root)."""
    root, untrusted, target = tmp_path / "root.pem", tmp_path / "untrusted.pem", tmp_path / "leaf.pem"
    root.write_bytes(chain[-1].public_bytes(serialization.Encoding.PEM))
    untrusted.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain[:-1]))
    target.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    done = subprocess.run(
        ["openssl", "verify", "-CAfile", str(root), "-untrusted", str(untrusted), str(target)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


# ---- the type and its seam -------------------------------------------------------------------------------


def test_registered_by_entry_point() -> None:
    factory = registry.load_type("gcpcas")
    assert isinstance(factory, GcpcasBackendType)
    assert factory.config_model is GcpcasConfig


def test_sdk_imported_lazily_and_a_missing_one_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    probe = (
        "import sys, caconnector.backends.gcpcas.backend; "
        "print(sorted(m for m in sys.modules if m.startswith('google')))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
    monkeypatch.setitem(sys.modules, "google.oauth2", None)  # as if google-auth were not installed
    with pytest.raises(BackendTypeUnavailable, match=r"pip install 'caconnector\[gcpcas\]'"):
        GcpcasBackendType().open(_config("https://privateca.googleapis.com"), BackendContext("g", tmp_path))


def test_provision_returns_the_config_and_refuses_an_unreadable_key(tmp_path: Path) -> None:
    context = BackendContext(name="corp-gcp", state_dir=tmp_path)
    config = _config("https://privateca.googleapis.com")
    assert GcpcasBackendType().provision(config, context) == config

    broken_body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC-not-really-a-key"
    info = {
        **service_account_info(),
        "private_key": f"-----BEGIN PRIVATE KEY-----\n{broken_body}\n-----END PRIVATE KEY-----\n",
    }
    broken = config.model_copy(update={"key": SecretStr(json.dumps(info))})
    for attempt in (GcpcasBackendType().provision, GcpcasBackendType().open):
        with pytest.raises(ConfigError, match="-key: the service account key cannot be used") as caught:
            attempt(broken, context)
        assert broken_body not in str(caught.value)
        assert "corp-gcp" in str(caught.value)


def test_credentials_are_the_service_account_key_whatever_the_endpoint() -> None:
    for endpoint, host in (
        (None, "https://privateca.googleapis.com"),
        ("https://privateca.example.internal", "https://privateca.example.internal"),
        ("http://127.0.0.1:9", "http://127.0.0.1:9"),  # a local stand-in authenticates the same way
    ):
        client = connect(_config("https://unused.example").model_copy(update={"endpoint": endpoint}), "b")
        credentials = client.transport._credentials  # type: ignore[attr-defined]
        assert isinstance(credentials, service_account.Credentials)
        assert credentials.scopes == ["https://www.googleapis.com/auth/cloud-platform"]
        assert credentials.service_account_email == service_account_info()["client_email"]
        # The JWT-bearer grant to token_uri, not a self-signed JWT per call.
        assert credentials._always_use_jwt_access is False
        assert client.transport.host == host  # type: ignore[attr-defined]


def test_a_key_whose_token_uri_is_plain_http_off_loopback_is_refused() -> None:
    info = {**service_account_info(), "token_uri": "http://oauth2.example.com/token"}
    with pytest.raises(ValueError, match="token_uri must use https://") as caught:
        _config("https://privateca.googleapis.com", key=json.dumps(info))
    assert info["private_key"][40:80] not in str(caught.value)


def test_ids_derived_from_the_request_id() -> None:
    samples = [
        "req-1",
        "cli-3f1c2d5e-0b8a-4c7e-9a51-2f0e4d6c8b1a",
        "",
        "Ünïcode/ids and spaces",
        "x" * 500,
        "--",
    ]
    ids = [certificate_id(s) for s in samples]
    for value in ids:
        assert re.fullmatch(r"[a-z0-9-]{1,63}", value), value
    assert len(set(ids)) == len(ids)
    assert ids == [certificate_id(s) for s in samples]  # deterministic
    assert certificate_id("cli-3f1c2d5e-0b8a-4c7e-9a51-2f0e4d6c8b1a").startswith("cli-3f1c2d5e-0b8a")
    first = uuid.UUID(cas_request_id("create-certificate", "req-1"))
    assert first.version == 5
    assert str(first) == cas_request_id("create-certificate", "req-1")
    assert first != uuid.UUID(cas_request_id("create-certificate", "req-2"))


# ---- check ----------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("corp")
def test_check_lists_pools_with_their_tier_and_cas(fake: FakeCAS, open_backend: Open) -> None:
    fake.add_pool(PROJECT, LOCATION, "rsa", cas=("legacy",), key_type="rsa-2048")
    fake.pools[CORP].cas["ca-2"].state = "DISABLED"
    fake.add_template(PROJECT, LOCATION, "server")
    fake.add_template(PROJECT, LOCATION, "client", eku=(ExtendedKeyUsageOID.CLIENT_AUTH,))

    result = open_backend().check()

    by_id = {ca.id: ca for ca in result.cas}
    assert set(by_id) == {"corp/ca-1", "corp/ca-2", "mesh/mesh-ca", "rsa/legacy"}
    ca1 = by_id["corp/ca-1"]
    expected = fake.pools[CORP].cas["ca-1"].certificate
    assert ca1.certificate == expected
    assert ca1.serial == canonical_serial(expected.serial_number)
    assert ca1.not_after == expected.not_valid_after_utc
    assert ca1.subject == "CN=ca-1 Issuing CA,O=Fake CAS"
    assert ca1.name == "ca-1 Issuing CA (pool corp, Enterprise tier)"
    assert (ca1.key_type, ca1.state) == ("ec-p256", "active")
    assert by_id["corp/ca-2"].state == "disabled"
    assert by_id["rsa/legacy"].key_type == "rsa-2048"
    assert "DevOps tier" in by_id["mesh/mesh-ca"].name
    assert "no revoke or scan" in by_id["mesh/mesh-ca"].name
    assert result.templates == ("client", "server")


def test_check_without_pools_names_project_and_location(fake: FakeCAS, open_backend: Open) -> None:
    fake.add_pool(PROJECT, "europe-west1", "elsewhere")
    with pytest.raises(ConfigError, match=f"{PARENT} has no CA pools; check -project and -location"):
        open_backend().check()


@pytest.mark.usefixtures("corp")
def test_templates_are_optional_when_not_listable(fake: FakeCAS, open_backend: Open) -> None:
    fake.fail_next("listCertificateTemplates", "PERMISSION_DENIED")
    result = open_backend().check()
    assert result.templates == ()
    assert len(result.cas) == 3


# ---- enroll ---------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("corp")
def test_enroll_issues_a_certificate_openssl_verifies(
    fake: FakeCAS, open_backend: Open, make_csr: MakeCSR, tmp_path: Path
) -> None:
    csr = make_csr("web.example.test")
    issued = open_backend().enroll(_request(csr, ca="corp/ca-2", validity_days=10))

    ca2 = fake.pools[CORP].cas["ca-2"]
    assert issued.certificate.issuer == ca2.certificate.subject
    assert issued.chain == (ca2.certificate, fake.pools[CORP].root)
    assert "OK" in _openssl_verify(tmp_path, issued.certificate, issued.chain)
    lifetime = issued.certificate.not_valid_after_utc - issued.certificate.not_valid_before_utc
    assert lifetime == dt.timedelta(days=10)
    assert issued.certificate.public_key() == csr.public_key()
    [stored] = fake.stored(CORP)
    assert stored.certificate == issued.certificate
    assert issued.order_ref == stored.name == f"{CORP}/certificates/{certificate_id('req-1')}"

    # What went over the wire, as the real service would see it.
    [create] = fake.calls("/caPools/corp/certificates", "POST")
    assert create.query["$alt"] == ["json;enum-encoding=int"]
    assert create.query["certificateId"] == [certificate_id("req-1")]
    assert create.query["requestId"] == [cas_request_id("create-certificate", "req-1")]
    assert create.query["issuingCertificateAuthorityId"] == ["ca-2"]
    assert create.body == {
        "pemCsr": csr.public_bytes(serialization.Encoding.PEM).decode(),
        "lifetime": "864000s",
    }


@pytest.mark.usefixtures("corp")
def test_template_by_id_and_default_lifetime(fake: FakeCAS, open_backend: Open, make_csr: MakeCSR) -> None:
    template = fake.add_template(PROJECT, LOCATION, "server")
    issued = open_backend().enroll(_request(make_csr(), ca="corp", template="server"))

    eku = issued.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    lifetime = issued.certificate.not_valid_after_utc - issued.certificate.not_valid_before_utc
    assert lifetime == dt.timedelta(days=90)
    [create] = fake.calls("/caPools/corp/certificates", "POST")
    assert create.body is not None
    assert create.body["certificateTemplate"] == template
    assert "issuingCertificateAuthorityId" not in create.query  # the pool picks its CA

    with pytest.raises(Rejected, match="NOT_FOUND"):
        open_backend().enroll(_request(make_csr(), "req-2", ca="corp", template="nosuch"))


@pytest.mark.usefixtures("corp")
def test_the_same_request_twice_creates_one_certificate(
    fake: FakeCAS, open_backend: Open, make_csr: MakeCSR
) -> None:
    csr = make_csr()
    first = open_backend().enroll(_request(csr, ca="corp/ca-1"))
    again = open_backend().enroll(_request(csr, ca="corp/ca-1"))  # a redelivery, in a new job
    assert again == first
    assert fake.certificates_created == 1
    assert len(fake.stored(CORP)) == 1


@pytest.mark.usefixtures("corp")
def test_redelivery_after_cas_forgot_the_request_id_returns_the_first_certificate(
    fake: FakeCAS, open_backend: Open, make_csr: MakeCSR
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    first = open_backend().enroll(_request(make_csr(key=key), ca="corp/ca-1"))
    fake.forget_request_ids()  # more than 60 minutes later: CAS answers ALREADY_EXISTS for our id
    again = open_backend().enroll(_request(make_csr(key=key), ca="corp/ca-1"))
    assert again.certificate == first.certificate
    assert again.chain == first.chain
    assert fake.certificates_created == 1

    # The same request id with another key is not a redelivery: never hand out that certificate.
    with pytest.raises(Rejected, match="already exists in CA Service for another key"):
        open_backend().enroll(_request(make_csr(), ca="corp/ca-1"))
    assert fake.certificates_created == 1


@pytest.mark.usefixtures("corp")
def test_chain_completed_from_the_pool_when_cas_stops_below_the_root(
    fake: FakeCAS, open_backend: Open, make_csr: MakeCSR, tmp_path: Path
) -> None:
    pool = fake.add_pool(PROJECT, LOCATION, "short", chain_includes_root=False)
    issued = open_backend().enroll(_request(make_csr(), ca="short/ca-1"))
    assert issued.chain == (pool.cas["ca-1"].certificate, pool.root)
    _openssl_verify(tmp_path, issued.certificate, issued.chain)
    assert len(fake.calls("/caPools/short:fetchCaCerts", "POST")) == 1


@pytest.mark.usefixtures("corp")
@pytest.mark.parametrize(
    ("ca", "expected"),
    [
        (None, "has 2 CA pools (corp, mesh); name one with -ca POOL or POOL/CA"),
        ("nosuch", "NOT_FOUND"),
        ("corp/nosuch", "NOT_FOUND"),
        ("corp/ca-1/extra", "is not a CA Service pool; give POOL or POOL/CA"),
        ("projects/other-project/locations/us-east1/caPools/corp", "is not in projects/private-ca-342871"),
    ],
)
def test_requests_naming_no_usable_pool_are_rejected(
    fake: FakeCAS, open_backend: Open, make_csr: MakeCSR, ca: str | None, expected: str
) -> None:
    with pytest.raises(Rejected, match=re.escape(expected)):
        open_backend().enroll(_request(make_csr(), ca=ca))
    assert fake.certificates_created == 0


@pytest.mark.usefixtures("corp")
def test_full_resource_names_are_accepted(fake: FakeCAS, open_backend: Open, make_csr: MakeCSR) -> None:
    issued = open_backend().enroll(_request(make_csr(), ca=f"{CORP}/certificateAuthorities/ca-2"))
    assert issued.certificate.issuer == fake.pools[CORP].cas["ca-2"].certificate.subject


def test_a_single_pool_needs_no_ca(fake: FakeCAS, open_backend: Open, make_csr: MakeCSR) -> None:
    fake.add_pool(PROJECT, LOCATION, "only")
    assert open_backend().enroll(_request(make_csr())).order_ref is not None


# ---- revoke and scan ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("corp")
def test_revoke_by_serial_is_idempotent(fake: FakeCAS, open_backend: Open, make_csr: MakeCSR) -> None:
    backend = open_backend()
    issued = backend.enroll(_request(make_csr(), ca="corp/ca-1"))
    other = backend.enroll(_request(make_csr(), "req-2", ca="corp/ca-2"))
    serial = canonical_serial(issued.certificate.serial_number)

    open_backend().revoke(
        RevokeRequest(serial=serial, reason=RevocationReason.KEY_COMPROMISE, ca="corp/ca-1")
    )
    revoked = {c.certificate: c.revocation for c in fake.stored(CORP)}
    reason, when = revoked[issued.certificate] or ("", None)
    assert reason == "KEY_COMPROMISE"
    assert revoked[other.certificate] is None
    [call] = fake.calls(f"/certificates/{certificate_id('req-1')}:revoke", "POST")
    assert call.body is not None
    assert call.body["reason"] == 1  # enums travel as integers
    uuid.UUID(call.body["requestId"])

    # Again, with another reason and no CA named: nothing changes, no error.
    open_backend().revoke(RevokeRequest(serial=serial, reason=RevocationReason.SUPERSEDED))
    assert {c.certificate: c.revocation for c in fake.stored(CORP)}[issued.certificate] == (reason, when)

    with pytest.raises(Rejected, match="no certificate with serial abcdef in CA pool"):
        open_backend().revoke(RevokeRequest(serial="abcdef", ca="corp"))


@pytest.mark.usefixtures("corp")
def test_revoke_refusals_are_rejected(fake: FakeCAS, open_backend: Open, make_csr: MakeCSR) -> None:
    issued = open_backend().enroll(_request(make_csr(), ca="corp"))
    serial = canonical_serial(issued.certificate.serial_number)
    fake.fail_next("revokeCertificate", "FAILED_PRECONDITION", message="CRL publication is disabled")
    with pytest.raises(Rejected, match="FAILED_PRECONDITION: CRL publication is disabled"):
        open_backend().revoke(RevokeRequest(serial=serial, ca="corp"))
    assert fake.stored(CORP)[0].revocation is None
    with pytest.raises(Rejected, match="not hexadecimal"):
        open_backend().revoke(RevokeRequest(serial="not-a-serial", ca="corp"))


@pytest.mark.usefixtures("corp")
def test_every_reason_maps_to_the_cas_enum(fake: FakeCAS, open_backend: Open, make_csr: MakeCSR) -> None:
    backend = open_backend()
    for index, reason in enumerate(RevocationReason):
        issued = backend.enroll(_request(make_csr(), f"req-{index}", ca="corp"))
        backend.revoke(
            RevokeRequest(serial=canonical_serial(issued.certificate.serial_number), reason=reason)
        )
    reasons = [c.revocation[0] for c in fake.stored(CORP) if c.revocation]
    assert reasons == [
        "REVOCATION_REASON_UNSPECIFIED",
        "KEY_COMPROMISE",
        "CERTIFICATE_AUTHORITY_COMPROMISE",
        "AFFILIATION_CHANGED",
        "SUPERSEDED",
        "CESSATION_OF_OPERATION",
        "CERTIFICATE_HOLD",
        "PRIVILEGE_WITHDRAWN",
        "ATTRIBUTE_AUTHORITY_COMPROMISE",
    ]


@pytest.mark.usefixtures("corp")
def test_scan_pages_through_enterprise_pools_and_honours_since(
    fake: FakeCAS, open_backend: Open, make_csr: MakeCSR
) -> None:
    fake.page_size = 2  # the client must follow nextPageToken
    backend = open_backend()
    assert isinstance(backend, Scanner)
    issued = [
        backend.enroll(_request(make_csr(f"h{i}.example.test"), f"req-{i}", ca="corp")) for i in range(5)
    ]
    backend.enroll(_request(make_csr("mesh.example.test"), "req-mesh", ca="mesh"))  # DevOps: not kept

    scanned = list(open_backend().scan())
    assert [s.certificate for s in scanned] == [i.certificate for i in reversed(issued)]  # newest first
    assert all(s.chain == issued[0].chain for s in scanned)
    assert {s.order_ref for s in scanned} == {i.order_ref for i in issued}
    assert len(fake.calls("/caPools/corp/certificates", "GET")) == 3

    since = fake.stored(CORP)[3].create_time
    recent = list(open_backend().scan(since))
    assert [s.certificate for s in recent] == [issued[4].certificate, issued[3].certificate]
    assert fake.calls("/caPools/corp/certificates", "GET")[-1].query["filter"] == [
        f'create_time>="{since.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}"'
    ]


def test_devops_pools_issue_but_neither_revoke_nor_scan(
    fake: FakeCAS, open_backend: Open, make_csr: MakeCSR, tmp_path: Path
) -> None:
    pool = fake.add_pool(PROJECT, LOCATION, "mesh", tier="DEVOPS", cas=("mesh-ca",))
    backend = open_backend()
    issued = backend.enroll(_request(make_csr(), ca="mesh"))
    assert issued.chain == (pool.cas["mesh-ca"].certificate, pool.root)
    _openssl_verify(tmp_path, issued.certificate, issued.chain)
    assert fake.certificates_created == 1
    assert fake.stored(MESH) == []

    with pytest.raises(
        NotSupported, match=r"not supported by this pool tier \(DevOps pools keep no certificates\)"
    ):
        list(open_backend().scan())
    serial = canonical_serial(issued.certificate.serial_number)
    for ca in ("mesh", "mesh/mesh-ca", None):
        with pytest.raises(NotSupported, match="revoke is not supported by this pool tier"):
            open_backend().revoke(RevokeRequest(serial=serial, ca=ca))


# ---- errors ---------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("corp")
def test_resource_exhausted_is_transient_with_the_retry_delay(
    fake: FakeCAS, open_backend: Open, make_csr: MakeCSR
) -> None:
    csr = make_csr()
    fake.fail_next("createCertificate", "RESOURCE_EXHAUSTED", retry_delay=7)
    with pytest.raises(Transient) as caught:
        open_backend().enroll(_request(csr, ca="corp"))
    assert caught.value.retry_after == 7
    assert caught.value.retryable
    assert "corp-gcp" in caught.value.message
    assert "RESOURCE_EXHAUSTED" in caught.value.message

    fake.fail_next("createCertificate", "RESOURCE_EXHAUSTED")
    with pytest.raises(Transient) as without_delay:
        open_backend().enroll(_request(csr, ca="corp"))
    assert without_delay.value.retry_after is None

    # The manager's retry of the same request then issues exactly one certificate.
    open_backend().enroll(_request(csr, ca="corp"))
    assert fake.certificates_created == 1


@pytest.mark.usefixtures("corp")
@pytest.mark.parametrize(
    ("operation", "status", "error"),
    [
        ("listCaPools", "PERMISSION_DENIED", AuthError),
        ("listCaPools", "NOT_FOUND", ConfigError),
        ("listCaPools", "UNAVAILABLE", Transient),
        ("listCertificateAuthorities", "INTERNAL", Transient),
        ("listCertificateAuthorities", "DEADLINE_EXCEEDED", Transient),
        ("createCertificate", "INVALID_ARGUMENT", Rejected),
        ("createCertificate", "FAILED_PRECONDITION", Rejected),
        ("createCertificate", "ABORTED", Transient),
        ("createCertificate", "PERMISSION_DENIED", AuthError),
    ],
)
def test_service_errors_map_to_what_happens_next(
    fake: FakeCAS,
    open_backend: Open,
    make_csr: MakeCSR,
    *,
    operation: str,
    status: str,
    error: type[Exception],
) -> None:
    fake.fail_next(operation, status, message="the service says why")
    backend = open_backend()
    with pytest.raises(error) as caught:
        if operation == "createCertificate":
            backend.enroll(_request(make_csr(), ca="corp"))
        else:
            backend.check()
    assert type(caught.value) is error
    message = str(caught.value)
    assert message.startswith("backend 'corp-gcp': CA Service")
    assert f"{status}: the service says why" in message
    assert service_account_info()["private_key"][40:80] not in message


def test_an_unreachable_endpoint_is_transient(open_backend: Open) -> None:
    with pytest.raises(Transient, match="cannot reach the API"):
        open_backend(endpoint=f"http://127.0.0.1:{free_port()}").check()


# ---- authentication: the JWT-bearer grant at token_uri, the bearer token on every call -----------------


def _bearers(fake: FakeCAS) -> list[str]:
    """The Authorization header of every CA Service call the fake received, in order."""
    return [r.header("Authorization") or "" for r in fake.requests]


@pytest.mark.usefixtures("corp")
def test_every_call_carries_the_token_granted_for_the_key(
    fake: FakeCAS, open_backend: Open, make_csr: MakeCSR
) -> None:
    backend = open_backend()
    assert {ca.id for ca in backend.check().cas} >= {"corp/ca-1", "corp/ca-2", "mesh/mesh-ca"}
    issued = backend.enroll(_request(make_csr(), ca="corp/ca-1"))
    backend.revoke(RevokeRequest(serial=canonical_serial(issued.certificate.serial_number), ca="corp"))
    assert fake.stored(CORP)[0].revocation is not None

    [grant] = fake.grants  # one token serves every call until it expires
    info = service_account_info()
    assert grant.access_token is not None
    assert (grant.client_email, grant.key_id) == (info["client_email"], SERVICE_ACCOUNT_KEY_ID)
    assert grant.claims["aud"] == info["token_uri"] == fake.token_uri
    assert "https://www.googleapis.com/auth/cloud-platform" in grant.claims["scope"].split()
    assert set(_bearers(fake)) == {f"Bearer {grant.access_token}"}
    assert fake.unauthenticated == []


@pytest.mark.usefixtures("corp")
def test_the_fake_refuses_calls_without_a_token_it_issued(fake: FakeCAS, open_backend: Open) -> None:
    open_backend().check()
    [grant] = fake.issued()
    url = f"{fake.url}/v1/{PARENT}/caPools"
    for headers in (
        {},
        {"Authorization": "Bearer ya29.made-up"},
        {"Authorization": f"Basic {grant.access_token}"},
    ):
        refused = httpx.get(url, headers=headers, trust_env=False)
        assert refused.status_code == 401
        assert refused.json() == {
            "error": {
                "code": 401,
                "message": refused.json()["error"]["message"],
                "status": "UNAUTHENTICATED",
            }
        }
        assert refused.json()["error"]["message"].startswith(
            "Request had invalid authentication credentials."
        )
    accepted = httpx.get(url, headers={"Authorization": f"Bearer {grant.access_token}"}, trust_env=False)
    assert accepted.status_code == 200
    assert [p["name"] for p in accepted.json()["caPools"]] == [CORP, MESH]
    fake.expire_tokens()
    expired = httpx.get(url, headers={"Authorization": f"Bearer {grant.access_token}"}, trust_env=False)
    assert expired.status_code == 401


@pytest.mark.usefixtures("corp")
def test_a_revoked_key_is_an_auth_error_naming_key_and_nothing_secret(
    fake: FakeCAS, open_backend: Open
) -> None:
    fake.revoke_key(SERVICE_ACCOUNT_KEY_ID)
    with pytest.raises(AuthError) as caught:
        open_backend().check()
    message = str(caught.value)
    assert message.startswith(
        "backend 'corp-gcp': the token endpoint refused the service account key of -key"
    )
    assert "invalid_grant: Invalid JWT Signature." in message
    assert "create a new key and run backend update" in message
    [grant] = fake.grants
    assert grant.access_token is None
    assert grant.error == "invalid_grant: Invalid JWT Signature."
    for secret in (
        grant.assertion,
        *grant.assertion.split("."),
        service_account_info()["private_key"][40:80],
    ):
        assert secret not in message
    assert fake.requests == []  # no CA Service call was made without a token


@pytest.mark.usefixtures("corp")
def test_an_expired_token_is_replaced_and_the_call_succeeds(fake: FakeCAS, open_backend: Open) -> None:
    backend = open_backend()
    backend.check()
    fake.expire_tokens()  # the service no longer takes the token the client still holds as valid
    assert {ca.id for ca in backend.check().cas} >= {"corp/ca-1"}

    first, second = fake.issued()
    assert first.access_token != second.access_token
    [refused] = fake.unauthenticated
    assert refused.header("Authorization") == f"Bearer {first.access_token}"
    assert _bearers(fake)[-1] == f"Bearer {second.access_token}"


@pytest.mark.usefixtures("corp")
def test_a_token_about_to_expire_is_replaced_before_the_call(fake: FakeCAS, open_backend: Open) -> None:
    # google-auth renews a token in its last minutes (3 min 45 s in 2.x) without waiting for a 401, so
    # a token issued for 60 s is renewed before every call.
    fake.token_lifetime = 60
    open_backend().check()
    tokens = [g.access_token for g in fake.issued()]
    assert len(fake.requests) > 1
    assert len(set(tokens)) == len(tokens) == len(fake.requests)
    assert _bearers(fake) == [f"Bearer {t}" for t in tokens]
    assert fake.unauthenticated == []


@pytest.mark.usefixtures("corp")
def test_a_service_refusing_every_token_is_an_auth_error_naming_key(
    fake: FakeCAS, open_backend: Open
) -> None:
    # The transport gets a new token after each 401 and asks again (twice); then the answer stands.
    fake.fail_next("listCaPools", "UNAUTHENTICATED", times=10)
    with pytest.raises(AuthError) as caught:
        open_backend().check()
    message = str(caught.value)
    assert "UNAUTHENTICATED: Request had invalid authentication credentials." in message
    assert "-key" in message
    grants = fake.issued()
    assert len(grants) > 1
    for grant in grants:
        assert grant.access_token is not None
        assert grant.access_token not in message
        assert grant.assertion not in message
