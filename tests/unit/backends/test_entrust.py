"""The entrust backend and its httpx client against the fake ECS over real mutual TLS: results and the fake's
stored state are asserted, not which methods were called."""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError
from tests.peers.entrust_fake import (
    APIKEY,
    APPROVAL_REQUIRED,
    APPROVED_ORG,
    PENDING_ORG,
    STANDARD,
    USERNAME,
    FakeECS,
    entrust_peer,
)

from caconnector import testing
from caconnector.backends.base import VALIDATED, BackendContext, EnrollRequest, Issued, Pending, RevokeRequest
from caconnector.backends.entrust import EntrustBackendType
from caconnector.backends.entrust.backend import EntrustBackend, tracking_info
from caconnector.backends.entrust.config import EntrustConfig
from caconnector.backends.errors import AuthError, ConfigError, Rejected, Transient
from caconnector.pki.chain import issued_by
from caconnector.pki.revocation import RevocationReason
from caconnector.pki.serial import canonical_serial

Open = Callable[..., EntrustBackend]


@pytest.fixture
def ecs(monkeypatch: pytest.MonkeyPatch) -> FakeECS:
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(variable, raising=False)
    peer = entrust_peer()
    peer.reset()
    return peer


def config_values(ecs: FakeECS, **changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "username": USERNAME,
        "apikey": APIKEY,
        "cert": ecs.client_cert_pem,
        "key": ecs.client_key_pem,
        "endpoint": ecs.url,
        "cacert": ecs.ca_pem,
    }
    values.update(changes)
    return {k: v for k, v in values.items() if v is not None}


@pytest.fixture
def clock() -> testing.Clock:
    return testing.Clock(dt.datetime.now(dt.UTC))


@pytest.fixture
def open_backend(ecs: FakeECS, tmp_path: Path, clock: testing.Clock) -> Open:
    def make(**changes: Any) -> EntrustBackend:
        factory = EntrustBackendType()
        context = BackendContext(name="ecs-test", state_dir=tmp_path / "state", now=clock)
        config = factory.provision(EntrustConfig.model_validate(config_values(ecs, **changes)), context)
        return factory.open(config, context)

    return make


def enroll(
    backend: EntrustBackend,
    *,
    request_id: str = "req-1",
    product: str = STANDARD,
    organization: str | None = APPROVED_ORG,
    name: str = "app.example.test",
    csr: x509.CertificateSigningRequest | None = None,
) -> Issued | Pending:
    return backend.enroll(
        EnrollRequest(
            csr=csr or testing.make_csr(name),
            request_id=request_id,
            product=product,
            organization=organization,
            validity_days=90,
        )
    )


def test_check_reports_version_organizations_and_products(ecs: FakeECS, open_backend: Open) -> None:
    result = open_backend().check()
    [ca] = result.cas
    assert ca.id == "ecs"
    assert "2.1.0" in ca.name
    organizations = {o.name: o for o in result.organizations}
    assert organizations[APPROVED_ORG].status == VALIDATED
    assert organizations[APPROVED_ORG].id == "1"
    assert organizations[PENDING_ORG].status == "pending"
    assert {p.id for p in result.products} == {STANDARD, APPROVAL_REQUIRED}


def test_organizations_fall_back_to_clients(ecs: FakeECS, open_backend: Open) -> None:
    ecs.fail_next("GET /organizations", 404, "Resource not found")
    organizations = {o.name: o for o in open_backend().check().organizations}
    assert organizations[APPROVED_ORG].status == VALIDATED
    assert organizations[APPROVED_ORG].validated_until is not None
    assert organizations[PENDING_ORG].status == "pending"
    assert [
        r.path.rsplit("/", 1)[-1] for r in ecs.requests if "/organizations" in r.path or "/clients" in r.path
    ] == [
        "organizations",
        "clients",
    ]


def test_enroll_issues_with_ordered_chain_and_our_tracking(ecs: FakeECS, open_backend: Open) -> None:
    csr = testing.make_csr("web.example.test")
    issued = enroll(open_backend(), csr=csr)
    assert isinstance(issued, Issued)
    assert issued.certificate.public_key() == csr.public_key()
    # chainCerts came as [leaf, root, intermediate]: the chain is rebuilt by signature.
    intermediate, root = issued.chain
    assert issued_by(issued.certificate, intermediate)
    assert issued_by(intermediate, root)
    assert issued_by(root, root)
    [order] = ecs.orders.values()
    assert issued.order_ref == str(order.tracking_id)
    assert order.body["certType"] == STANDARD
    assert order.body["clientId"] == 1
    assert order.body["cn"] == "web.example.test"
    assert order.body["subjectAltName"] == ["web.example.test"]
    assert order.body["tracking"]["trackingInfo"] == tracking_info("req-1")
    expiry = dt.date.fromisoformat(order.body["certExpiryDate"])
    assert expiry == (dt.datetime.now(dt.UTC) + dt.timedelta(days=90)).date()


def test_redelivered_enroll_finds_the_earlier_order(ecs: FakeECS, open_backend: Open) -> None:
    csr = testing.make_csr()
    first = enroll(open_backend(), csr=csr)
    again = enroll(open_backend(), csr=csr)
    assert isinstance(first, Issued)
    assert isinstance(again, Issued)
    assert again.certificate == first.certificate
    assert ecs.orders_placed == 1


def test_an_order_whose_answer_was_lost_is_found_by_its_tracking_info(
    ecs: FakeECS, open_backend: Open
) -> None:
    csr = testing.make_csr()
    ecs.drop_answer_next("POST /certificates")
    with pytest.raises(Transient, match="cannot reach the API"):
        enroll(open_backend(), csr=csr)
    assert ecs.orders_placed == 1  # ECS ordered; we never heard
    found = enroll(open_backend(), csr=csr)
    assert isinstance(found, Issued)
    [order] = ecs.orders.values()
    assert found.order_ref == str(order.tracking_id)
    assert ecs.orders_placed == 1


def test_a_redelivery_while_an_attempt_may_be_ordering_waits_then_orders_once(
    ecs: FakeECS, open_backend: Open, clock: testing.Clock
) -> None:
    csr = testing.make_csr()
    ecs.fail_next("POST /certificates", 503, "Service Unavailable")  # answered: may or may not have ordered
    with pytest.raises(Transient, match="503"):
        enroll(open_backend(), csr=csr)
    with pytest.raises(Transient, match="may still be ordering") as caught:
        enroll(open_backend(), csr=csr)
    assert caught.value.retry_after is not None
    assert 0 < caught.value.retry_after <= 120
    assert ecs.orders_placed == 0
    clock.advance(seconds=121)
    assert isinstance(enroll(open_backend(), csr=csr), Issued)
    # Recorded now: read by its tracking id, not ordered again.
    assert isinstance(enroll(open_backend(), csr=csr), Issued)
    assert ecs.orders_placed == 1


def test_an_order_refused_by_entrust_is_ordered_afresh(ecs: FakeECS, open_backend: Open) -> None:
    ecs.fail_next("POST /certificates", 400, "Invalid CSR")
    with pytest.raises(Rejected, match="Invalid CSR"):
        enroll(open_backend())
    assert isinstance(enroll(open_backend()), Issued)  # no lookup, no waiting: nothing was ordered
    listings = [r for r in ecs.requests if r.method == "GET" and r.path.endswith("/certificates")]
    assert listings == []
    assert ecs.orders_placed == 1


def test_redelivered_enroll_with_another_key_is_refused(ecs: FakeECS, open_backend: Open) -> None:
    enroll(open_backend())
    with pytest.raises(Rejected, match="another key"):
        enroll(open_backend())
    assert ecs.orders_placed == 1


def test_pending_organization_is_refused_before_any_order(ecs: FakeECS, open_backend: Open) -> None:
    with pytest.raises(Rejected, match="not validated at Entrust"):
        enroll(open_backend(), organization=PENDING_ORG)
    with pytest.raises(Rejected, match="not known at Entrust"):
        enroll(open_backend(), organization="Nobody Ltd")
    assert ecs.orders_placed == 0
    assert not [r for r in ecs.requests if r.method == "POST"]


def test_approval_then_collect_issues_once(ecs: FakeECS, open_backend: Open) -> None:
    backend = open_backend()
    csr = testing.make_csr()
    pending = enroll(backend, product=APPROVAL_REQUIRED, csr=csr)
    assert isinstance(pending, Pending)
    assert isinstance(backend.collect(pending.order_ref), Pending)
    assert isinstance(enroll(backend, product=APPROVAL_REQUIRED, csr=csr), Pending)  # redelivered: same order
    ecs.approve(int(pending.order_ref))
    issued = backend.collect(pending.order_ref)
    assert isinstance(issued, Issued)
    assert issued.certificate.public_key() == csr.public_key()
    # A redelivered enroll after approval answers the same certificate.
    again = enroll(backend, product=APPROVAL_REQUIRED, csr=csr)
    assert isinstance(again, Issued)
    assert again.certificate == issued.certificate
    assert ecs.orders_placed == 1


def test_declined_order_is_rejected_with_entrusts_reason(ecs: FakeECS, open_backend: Open) -> None:
    backend = open_backend()
    pending = enroll(backend, product=APPROVAL_REQUIRED)
    assert isinstance(pending, Pending)
    ecs.decline(int(pending.order_ref), "Domain ownership could not be verified")
    with pytest.raises(Rejected, match="Domain ownership could not be verified"):
        backend.collect(pending.order_ref)


def test_revoke_by_a_serial_with_a_leading_zero_byte(ecs: FakeECS, open_backend: Open) -> None:
    backend = open_backend()
    issued = enroll(backend)
    assert isinstance(issued, Issued)
    serial = issued.certificate.serial_number
    der = issued.certificate.public_bytes(serialization.Encoding.DER)
    assert serial.to_bytes(17, "big")[0] == 0  # DER needs a zero byte in front of this serial
    assert serial.to_bytes(17, "big") in der
    spelled = ":".join(f"{b:02x}" for b in serial.to_bytes(17, "big"))  # openssl's 00:8f:... spelling
    backend.revoke(RevokeRequest(serial=spelled, reason=RevocationReason.KEY_COMPROMISE))
    assert ecs.revoked_serials() == {serial}
    [order] = ecs.orders.values()
    assert order.revocation is not None
    assert order.revocation[0] == "keyCompromise"
    backend.revoke(RevokeRequest(serial=canonical_serial(serial)))  # again: already revoked, fine
    with pytest.raises(Rejected, match="no certificate with serial"):
        backend.revoke(RevokeRequest(serial="0badc0de"))


def test_scan_pages_through_the_certificates(ecs: FakeECS, open_backend: Open) -> None:
    backend = open_backend()
    for index in range(5):
        enroll(backend, request_id=f"req-{index}", name=f"host{index}.example.test")
    enroll(backend, request_id="req-waiting", product=APPROVAL_REQUIRED)
    ecs.page_limit = 2
    scanned = list(backend.scan())
    assert len(scanned) == 5
    assert len({s.certificate.serial_number for s in scanned}) == 5
    listings = [r for r in ecs.requests if r.method == "GET" and r.path.endswith("/certificates")]
    assert [r.query["offset"] for r in listings[-3:]] == [["0"], ["2"], ["4"]]


def test_throttling_is_transient_with_retry_after(ecs: FakeECS, open_backend: Open) -> None:
    backend = open_backend()
    ecs.throttle(every=1, retry_after=7)
    with pytest.raises(Transient) as caught:
        backend.check()
    assert caught.value.retry_after == 7.0
    ecs.throttle(every=0)
    ecs.fail_next("GET /application/version", 503, "Service Unavailable")
    with pytest.raises(Transient, match="503"):
        backend.check()


def test_short_throttling_is_waited_out_within_the_call(ecs: FakeECS, open_backend: Open) -> None:
    ecs.throttle(every=2, retry_after=1)
    issued = enroll(open_backend())
    assert isinstance(issued, Issued)
    assert ecs.throttled >= 1
    assert ecs.orders_placed == 1


def test_wrong_api_key_names_the_options_never_the_key(ecs: FakeECS, open_backend: Open) -> None:
    wrong = "00000000-1111-2222-3333-444444444444"
    with pytest.raises(AuthError) as caught:
        open_backend(apikey=wrong).check()
    assert "-username" in str(caught.value)
    assert "-apikey" in str(caught.value)
    assert wrong not in str(caught.value)
    ecs.fail_next("POST /certificates", 403, "Forbidden")
    with pytest.raises(AuthError, match="-cert"):
        enroll(open_backend())


def test_client_certificate_refused_in_the_handshake_says_so(ecs: FakeECS, open_backend: Open) -> None:
    stranger = trustme.CA().issue_cert("someone@example.test", common_name=USERNAME)
    backend = open_backend(
        cert=stranger.cert_chain_pems[0].bytes().decode(), key=stranger.private_key_pem.bytes().decode()
    )
    before = ecs.handshake_failures
    with pytest.raises(AuthError, match="refused the client certificate of -cert in the TLS handshake"):
        backend.check()
    # The fake counts the failure in its server thread, which may get there after the client has
    # already raised (TLS 1.3 sends the refusal of a client certificate after the client's Finished).
    deadline = time.monotonic() + 5
    while ecs.handshake_failures <= before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ecs.handshake_failures > before


def test_untrusted_api_certificate_names_cacert(ecs: FakeECS, open_backend: Open) -> None:
    with pytest.raises(ConfigError, match="-cacert"):
        open_backend(cacert=trustme.CA().cert_pem.bytes().decode()).check()


def _expired_pair() -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, USERNAME)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=400))
        .not_valid_after(now - dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


def test_config_refuses_bad_pairs_naming_the_option(ecs: FakeECS) -> None:
    cert, key = _expired_pair()
    with pytest.raises(ValidationError, match="-cert: the certificate expired on"):
        EntrustConfig.model_validate(config_values(ecs, cert=cert, key=key))
    with pytest.raises(ValidationError, match="-key does not belong to the certificate given with -cert"):
        EntrustConfig.model_validate(config_values(ecs, key=key))
    with pytest.raises(ValidationError, match="-key: private key is not an unencrypted PEM or DER key") as e:
        EntrustConfig.model_validate(config_values(ecs, key="-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n"))
    assert "c2VjcmV0" not in str(e.value)
    with pytest.raises(ValidationError, match="cacert"):
        EntrustConfig.model_validate(config_values(ecs, cacert="not a certificate"))


@pytest.fixture
def writes() -> Iterator[list[str]]:
    """Every file this process opens for writing while the test runs (Python's audit events)."""
    seen: list[str] = []
    active = [True]

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if active[0] and event == "open" and isinstance(args[0], str | Path):
            mode = args[1] if len(args) > 1 and isinstance(args[1], str) else "r"
            flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
            if any(c in mode for c in "wax+") or flags & 0o3:
                seen.append(str(args[0]))

    sys.addaudithook(hook)  # audit hooks cannot be removed: `active` switches this one off
    yield seen
    active[0] = False


def test_private_key_never_touches_the_disk(ecs: FakeECS, open_backend: Open, writes: list[str]) -> None:
    started = time.time()
    backend = open_backend()
    backend.check()
    assert isinstance(enroll(backend), Issued)
    # Nothing opened for writing, not even briefly (no temporary key file), but the issuing CA's
    # certificate the backend keeps (public data).
    assert writes
    assert {Path(w).name.split(".")[0] for w in writes} == {"issuer"}, writes
    # And no file anywhere under the temporary directory holds the key's body.
    body = "".join(ecs.client_key_pem.strip().splitlines()[1:-1])[:64].encode()
    for path in Path(tempfile.gettempdir()).rglob("*"):
        try:
            if path.is_file() and path.stat().st_mtime >= started - 1 and path.stat().st_size < 1_000_000:
                assert body not in path.read_bytes(), path
        except OSError:
            continue
