"""The digicert backend and its CertCentral client against the fake CertCentral over real HTTP: paging,
the lookup of an earlier order of the same request, every kind of wait and refusal, and the error mapping
(DigiCert's messages verbatim, the key never)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme
from pydantic import SecretStr, ValidationError
from tests.peers import digicert_fake
from tests.peers.digicert_fake import API_KEY, FakeCertCentral

from caconnector.backends.base import (
    BackendContext,
    EnrollRequest,
    Issued,
    Pending,
    RevocationRequested,
    RevokeRequest,
)
from caconnector.backends.digicert.backend import DigiCert, open_certcentral, request_marker
from caconnector.backends.digicert.client import CertCentral
from caconnector.backends.digicert.config import DigicertConfig
from caconnector.backends.digicert.store import DigicertStore
from caconnector.backends.errors import AuthError, ConfigError, NotSupported, Rejected, Transient
from caconnector.pki.revocation import RevocationReason
from caconnector.testing import make_csr

ORG = str(digicert_fake.VALIDATED_ORG)


@pytest.fixture
def fake() -> Iterator[FakeCertCentral]:
    peer = digicert_fake.digicert_peer()
    peer.reset()
    yield peer
    peer.reset()


def _client(
    fake: FakeCertCentral, key: str = API_KEY, page_limit: int = 1000, slept: list[float] | None = None
) -> CertCentral:
    def make_http() -> httpx.Client:
        return httpx.Client(base_url=fake.url, headers={"X-DC-DEVKEY": key}, trust_env=False, timeout=10)

    waits = [] if slept is None else slept
    return CertCentral(make_http, "dc", page_limit=page_limit, sleep=waits.append)


def _backend(fake: FakeCertCentral, state: Path, *, page_limit: int = 1000, key: str = API_KEY) -> DigiCert:
    return DigiCert(_client(fake, key, page_limit), DigicertStore(state, "dc"), name="dc", now=_now)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _request(name: str, request_id: str, **fields: str | int) -> EnrollRequest:
    values: dict[str, object] = {"product": digicert_fake.PUBLIC_PRODUCT, "organization": ORG, **fields}
    return EnrollRequest(csr=make_csr(name), request_id=request_id, **values)  # type: ignore[arg-type]


# -- config ---------------------------------------------------------------------------------------------


def test_region_picks_the_instance_and_endpoint_replaces_it() -> None:
    assert DigicertConfig(apikey=SecretStr("k")).base_url == "https://www.digicert.com/services/v2"
    assert (
        DigicertConfig(apikey=SecretStr("k"), region="eu").base_url
        == "https://certcentral.digicert.eu/services/v2"
    )
    local = DigicertConfig(apikey=SecretStr("k"), region="eu", endpoint="http://127.0.0.1:8080/services/v2/")
    assert local.base_url == "http://127.0.0.1:8080/services/v2"


def test_bad_cacert_and_plain_http_off_loopback_are_refused_naming_the_option() -> None:
    with pytest.raises(ValidationError, match="cacert"):
        DigicertConfig(apikey=SecretStr("k"), cacert="not a certificate")
    with pytest.raises(ValidationError, match="endpoint"):
        DigicertConfig(apikey=SecretStr("k"), endpoint="http://digicert.example.test/services/v2")


# -- client ---------------------------------------------------------------------------------------------


def test_orders_are_read_through_every_page(fake: FakeCertCentral) -> None:
    fake.add_orders(23, "other.example.test")
    listed = list(_client(fake, page_limit=5).orders())
    assert len({o.id for o in listed}) == 23
    offsets = [path for method, path in fake.calls if path.endswith("/order/certificate")]
    assert len(offsets) == 5  # 5 + 5 + 5 + 5 + 3


def test_a_persisting_429_is_transient_with_retry_after(fake: FakeCertCentral) -> None:
    fake.throttle_every = 1
    slept: list[float] = []
    with pytest.raises(Transient) as caught:
        _client(fake, slept=slept).products()
    assert caught.value.retry_after == 1.0
    assert "request_limit_exceeded" in caught.value.message
    assert slept == [1.0, 1.0]  # paced twice, as Retry-After asked, then left to the manager


def test_a_passing_429_is_paced_and_the_call_goes_through(fake: FakeCertCentral, tmp_path: Path) -> None:
    fake.throttle_every = 2
    slept: list[float] = []
    backend = DigiCert(_client(fake, slept=slept), DigicertStore(tmp_path, "dc"), name="dc", now=_now)
    assert isinstance(backend.enroll(_request("paced.example.test", "req-paced")), Issued)
    assert slept
    assert fake.throttled == len(slept)
    assert len(fake.placed()) == 1


def test_a_5xx_is_transient(fake: FakeCertCentral) -> None:
    fake.fail_next.append((503, "service_unavailable", "CertCentral is down for maintenance."))
    with pytest.raises(Transient, match="CertCentral is down for maintenance"):
        _client(fake).organizations()


def test_a_refused_key_is_an_auth_error_naming_apikey_not_the_key(fake: FakeCertCentral) -> None:
    wrong = "11111111-2222-4333-8444-555555555555"
    with pytest.raises(AuthError) as caught:
        _client(fake, key=wrong).products()
    assert "-apikey" in caught.value.message
    assert "Access denied" in caught.value.message
    assert wrong not in caught.value.message


def test_digicerts_error_messages_reach_the_user_verbatim(fake: FakeCertCentral, tmp_path: Path) -> None:
    request = _request("x.example.test", "req-bad-product", product="no_such_product")
    with pytest.raises(Rejected, match=r"invalid_product: Invalid product name id: no_such_product\."):
        _backend(fake, tmp_path).enroll(request)


def test_unreachable_is_transient(tmp_path: Path) -> None:
    def make_http() -> httpx.Client:
        return httpx.Client(base_url="http://127.0.0.1:9/services/v2", trust_env=False, timeout=2)

    with pytest.raises(Transient, match="cannot reach"):
        CertCentral(make_http, "dc").products()


# -- check ----------------------------------------------------------------------------------------------


def test_check_reports_products_their_cas_and_the_organizations_validation(
    fake: FakeCertCentral, tmp_path: Path
) -> None:
    result = _backend(fake, tmp_path).check()
    assert {(p.id, p.ca_ids) for p in result.products} == {
        ("ssl_basic", ()),
        ("private_ssl_plus", (digicert_fake.PRIVATE_CA_ID,)),
    }
    assert {ca.id for ca in result.cas} == {"digicert", digicert_fake.PRIVATE_CA_ID}
    organizations = {o.name: o for o in result.organizations}
    validated = organizations[digicert_fake.VALIDATED_ORG_NAME]
    assert validated.validated
    assert validated.validated_until is not None
    assert organizations[digicert_fake.PENDING_ORG_NAME].status == "pending"


def test_validation_is_read_per_organization_when_the_list_has_none(
    fake: FakeCertCentral, tmp_path: Path
) -> None:
    fake.validations_in_list = False
    result = _backend(fake, tmp_path).check()
    assert {o.name: o.status for o in result.organizations} == {
        digicert_fake.VALIDATED_ORG_NAME: "validated",
        digicert_fake.PENDING_ORG_NAME: "pending",
    }
    assert sum(1 for _, path in fake.calls if path.endswith("/validation")) == 2


# -- enroll and collect ---------------------------------------------------------------------------------


def test_names_come_from_the_csr_and_the_request_id_goes_in_the_comments(
    fake: FakeCertCentral, tmp_path: Path
) -> None:
    issued = _backend(fake, tmp_path).enroll(
        _request(
            "a.example.test", "req-names", organization=digicert_fake.VALIDATED_ORG_NAME, validity_days=30
        )
    )
    assert isinstance(issued, Issued)
    [order] = fake.placed()
    assert (order.common_name, order.dns_names, order.validity_days) == (
        "a.example.test",
        ["a.example.test"],
        30,
    )
    assert order.organization_id == digicert_fake.VALIDATED_ORG
    assert request_marker("req-names") in order.comments
    assert issued.chain == (fake.public_ca.certificate, fake.public_root.certificate)


def test_a_chain_without_the_certificate_is_completed_by_a_download(
    fake: FakeCertCentral, tmp_path: Path
) -> None:
    fake.chain_without_certificate = True
    csr_request = _request("chain.example.test", "req-chain")
    issued = _backend(fake, tmp_path).enroll(csr_request)
    assert isinstance(issued, Issued)
    assert issued.certificate == fake.issued()[0]
    assert issued.chain == (fake.public_ca.certificate, fake.public_root.certificate)
    assert any("/download/format/pem_all" in path for _, path in fake.calls)


def test_an_order_whose_answer_was_lost_is_found_among_hundreds_not_placed_again(
    fake: FakeCertCentral, tmp_path: Path
) -> None:
    # Hundreds of orders of others, some for the same host; ours is among them, but this connector's
    # record of it is gone (the answer was lost, or the state directory).
    fake.add_orders(150, "lost.example.test", age_days=90)
    fake.add_orders(40, "lost.example.test")
    first = _backend(fake, tmp_path / "first", page_limit=50).enroll(
        _request("lost.example.test", "req-lost")
    )
    fake.add_orders(200, "elsewhere.example.test")
    before = len(fake.placed())
    again = _backend(fake, tmp_path / "fresh", page_limit=50).enroll(
        _request("lost.example.test", "req-lost")
    )
    assert isinstance(first, Issued)
    assert isinstance(again, Issued)
    assert again.certificate == first.certificate
    assert len(fake.placed()) == before
    # The orders of the same host from long ago (its renewals) were not read one by one.
    details = [path for method, path in fake.calls if method == "GET" and path.split("/")[-1].isdigit()]
    assert len(details) <= 42


def test_without_comments_in_the_details_the_csr_finds_the_lost_order(
    fake: FakeCertCentral, tmp_path: Path
) -> None:
    fake.comments_in_details = False
    fake.add_orders(5, "csr.example.test")  # other requests for the host: other CSRs
    request = _request("csr.example.test", "req-csr")
    first = _backend(fake, tmp_path / "first").enroll(request)
    again = _backend(fake, tmp_path / "fresh").enroll(request)  # the record of the order is gone
    assert isinstance(first, Issued)
    assert isinstance(again, Issued)
    assert again.certificate == first.certificate
    assert len(fake.placed()) == 6


def test_a_similar_request_id_does_not_match(fake: FakeCertCentral, tmp_path: Path) -> None:
    _backend(fake, tmp_path / "a").enroll(_request("same.example.test", "req-10"))
    _backend(fake, tmp_path / "b").enroll(_request("same.example.test", "req-1"))
    assert len(fake.placed()) == 2


def test_pending_approval_then_rejected_carries_digicerts_reason(
    fake: FakeCertCentral, tmp_path: Path
) -> None:
    fake.may_skip_approval = False
    backend = _backend(fake, tmp_path)
    waiting = backend.enroll(_request("r.example.test", "req-reject"))
    assert isinstance(waiting, Pending)
    assert "waits for an approver in CertCentral" in waiting.reason
    assert isinstance(backend.collect(waiting.order_ref), Pending)
    [request] = fake.pending_requests()
    answer = httpx.put(
        f"{fake.url}/request/{request.id}/status",
        json={"status": "rejected", "processor_comment": "Not an approved domain for this team."},
        headers={"X-DC-DEVKEY": API_KEY},
        trust_env=False,
    )
    assert answer.status_code == 204
    with pytest.raises(Rejected, match=r"rejected: Not an approved domain for this team\."):
        backend.collect(waiting.order_ref)


def test_pending_dcv_is_pending_until_dcv_completes(fake: FakeCertCentral, tmp_path: Path) -> None:
    fake.unvalidated_domains.add("dcv.example.test")
    backend = _backend(fake, tmp_path)
    waiting = backend.enroll(_request("dcv.example.test", "req-dcv"))
    assert isinstance(waiting, Pending)
    assert "waits for validation at DigiCert" in waiting.reason
    again = backend.enroll(_request("dcv.example.test", "req-dcv"))  # a redelivery: the same order
    assert isinstance(again, Pending)
    assert again.order_ref == waiting.order_ref
    fake.complete_dcv("dcv.example.test")
    assert isinstance(backend.collect(waiting.order_ref), Issued)
    assert len(fake.placed()) == 1


def test_an_unknown_organization_name_is_refused_before_ordering(
    fake: FakeCertCentral, tmp_path: Path
) -> None:
    with pytest.raises(Rejected, match="not known to DigiCert"):
        _backend(fake, tmp_path).enroll(_request("o.example.test", "req-org", organization="Nobody Ltd"))
    assert fake.placed() == []


# -- revoke and scan ------------------------------------------------------------------------------------


def test_revoke_by_serial_found_without_the_local_record(fake: FakeCertCentral, tmp_path: Path) -> None:
    issued = _backend(fake, tmp_path / "a").enroll(_request("v.example.test", "req-v"))
    assert isinstance(issued, Issued)
    serial = format(issued.certificate.serial_number, "x")
    fresh = _backend(fake, tmp_path / "b", page_limit=3)
    assert fresh.revoke(RevokeRequest(serial=serial, reason=RevocationReason.SUPERSEDED)) is None
    assert fake.revoked_serials() == {issued.certificate.serial_number}
    # Asked again (the first answer lost): DigiCert refuses, the certificate is revoked, so it is done.
    assert fresh.revoke(RevokeRequest(serial=serial)) is None
    assert sum(1 for method, path in fake.calls if method == "PUT" and path.endswith("/revoke")) == 2


def test_a_revoke_digicert_refuses_for_another_reason_is_rejected_verbatim(
    fake: FakeCertCentral, tmp_path: Path
) -> None:
    backend = _backend(fake, tmp_path)
    issued = backend.enroll(_request("u.example.test", "req-u"))
    assert isinstance(issued, Issued)
    fake.fail_next.append((400, "revoke_not_allowed", "A pending reissue blocks the revocation."))
    with pytest.raises(Rejected, match="revoke_not_allowed: A pending reissue blocks the revocation"):
        backend.revoke(RevokeRequest(serial=format(issued.certificate.serial_number, "x")))


def test_a_revoke_digicert_must_approve_is_a_request(fake: FakeCertCentral, tmp_path: Path) -> None:
    backend = _backend(fake, tmp_path)
    issued = backend.enroll(_request("w.example.test", "req-w"))
    assert isinstance(issued, Issued)
    fake.may_skip_approval = False  # the key's user may not skip the approval of a revoke
    requested = backend.revoke(RevokeRequest(serial=format(issued.certificate.serial_number, "x")))
    assert isinstance(requested, RevocationRequested)
    assert requested.ref == str(fake.pending_requests()[0].id)
    assert fake.revoked_serials() == set()


def test_reasons_digicert_does_not_take_are_not_supported(fake: FakeCertCentral, tmp_path: Path) -> None:
    with pytest.raises(NotSupported, match="certificateHold"):
        _backend(fake, tmp_path).revoke(RevokeRequest(serial="1f", reason=RevocationReason.CERTIFICATE_HOLD))


def test_unknown_serial_is_rejected(fake: FakeCertCentral, tmp_path: Path) -> None:
    with pytest.raises(Rejected, match="no certificate with serial"):
        _backend(fake, tmp_path).revoke(RevokeRequest(serial="abcdef"))


def test_scan_imports_the_issued_orders_across_pages(fake: FakeCertCentral, tmp_path: Path) -> None:
    backend = _backend(fake, tmp_path, page_limit=2)
    serials = set()
    for index in range(3):
        issued = backend.enroll(_request(f"s{index}.example.test", f"req-s{index}"))
        assert isinstance(issued, Issued)
        serials.add(issued.certificate.serial_number)
    fake.add_orders(4, "pending.example.test")
    assert {i.certificate.serial_number for i in backend.scan()} == serials


# -- TLS --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_certcentral(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeCertCentral, str]]:
    """The fake on https, its certificate from a private CA (as behind a TLS-inspecting proxy)."""
    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    chain, key = directory / "chain.pem", directory / "key.pem"
    chain.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    key.write_bytes(issued.private_key_pem.bytes())
    fake = FakeCertCentral()
    server = digicert_fake.serve(fake, (str(chain), str(key)))
    yield fake, ca.cert_pem.bytes().decode()
    server.should_exit = True


def test_cacert_adds_the_trust_anchor_the_apis_tls_needs(
    tls_certcentral: tuple[FakeCertCentral, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    fake, anchor = tls_certcentral
    context = BackendContext(name="dc", state_dir=tmp_path)
    trusted = DigicertConfig(apikey=SecretStr(API_KEY), endpoint=fake.url, cacert=anchor)
    assert open_certcentral(trusted, context).check().organizations
    untrusted = DigicertConfig(apikey=SecretStr(API_KEY), endpoint=fake.url)
    with pytest.raises(ConfigError, match="-cacert"):
        open_certcentral(untrusted, context).check()
