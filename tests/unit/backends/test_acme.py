"""The acme backend against pebble (started by the tests, see tests/peers/pebble.py): real http-01 and dns-01
validations, revocation seen in pebble's management interface, redelivery resuming the same order, pending
then collect, nonce rejection, External Account Binding, and the CA's problems as backend errors.

Assertions are on results and on pebble's own state (its management interface, the account's order list)."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import acme.client
import acme.messages
import pytest
from cryptography import x509
from pydantic import ValidationError
from tests.peers import pebble as pebble_peers
from tests.peers.pebble import Pebble, WithRenewalInfo
from tests.ports import free_port

from caconnector.backends.acme import AcmeBackendType
from caconnector.backends.acme.backend import AcmeBackend
from caconnector.backends.acme.client import describe_problem, renewal_certificate_id
from caconnector.backends.acme.config import AcmeConfig
from caconnector.backends.base import (
    BackendContext,
    EnrollRequest,
    Issued,
    Pending,
    RenewalWindow,
    RevokeRequest,
)
from caconnector.backends.errors import ConfigError, NotSupported, Rejected, Transient
from caconnector.pki.chain import is_self_signed
from caconnector.pki.revocation import RevocationReason
from caconnector.testing import make_csr

EAB_KID = "kid-1"
EAB_HMAC = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"


def _context(tmp_path: Path, name: str = "acme-test") -> BackendContext:
    return BackendContext(name=name, state_dir=tmp_path / "state" / name)


def _config(peer: Pebble, **values: object) -> AcmeConfig:
    options: dict[str, object] = {
        "directory": peer.directory_url,
        "cacert": peer.tls_ca_pem,
        "roots": peer.root_pem(),
        "httpaddress": f"127.0.0.1:{peer.http_port}",
        **values,
    }
    return AcmeConfig.model_validate(options)


def _added(peer: Pebble, tmp_path: Path, **values: object) -> tuple[AcmeConfig, AcmeBackend]:
    """What `backend add` stores (key made, account registered) and the backend opened from it."""
    factory = AcmeBackendType()
    context = _context(tmp_path)
    config = factory.provision(_config(peer, **values), context)
    return config, factory.open(config, context)


def _request(request_id: str, name: str = "app.example.test") -> EnrollRequest:
    return EnrollRequest(csr=make_csr(name), request_id=request_id)


def _issued(result: Issued | Pending) -> Issued:
    assert isinstance(result, Issued), result
    return result


def _check_chain(peer: Pebble, issued: Issued, name: str) -> None:
    san = issued.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [name]
    for child, parent in zip([issued.certificate, *issued.chain], issued.chain, strict=False):
        child.verify_directly_issued_by(parent)
    root = x509.load_pem_x509_certificate(peer.root_pem().encode())
    assert issued.chain[-1] == root and is_self_signed(root)
    assert peer.cert_status(issued.certificate.serial_number) is not None


def _orders(peer: Pebble, config: AcmeConfig) -> list[str]:
    assert config.accountkey is not None and config.accounturl is not None
    return peer.orders(config.accountkey.get_secret_value(), config.accounturl)


@pytest.fixture(autouse=True)
def _no_ca_bundle_override(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests reads these and would ignore -cacert's file otherwise.
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(variable, raising=False)


# -- issuing --------------------------------------------------------------------------------------------


def test_http01_validates_for_real_and_the_chain_ends_at_pebbles_root(pebble: Pebble, tmp_path: Path) -> None:
    config, backend = _added(pebble, tmp_path, challenge="http-01")
    issued = _issued(backend.enroll(_request("req-http", "web.example.test")))
    _check_chain(pebble, issued, "web.example.test")
    assert issued.order_ref in _orders(pebble, config)


def test_concurrent_http01_enrollments_share_the_address(pebble: Pebble, tmp_path: Path) -> None:
    # The connector's workers run jobs side by side; both validations need the one -httpaddress.
    _, backend = _added(pebble, tmp_path, challenge="http-01")
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(
            pool.map(lambda i: backend.enroll(_request(f"req-par-{i}", f"p{i}.example.test")), range(2))
        )
    for index, result in enumerate(results):
        _check_chain(pebble, _issued(result), f"p{index}.example.test")


def test_dns01_validates_through_the_hook_and_challtestsrv(pebble: Pebble, tmp_path: Path) -> None:
    _, backend = _added(pebble, tmp_path, challenge="dns-01", hook=pebble.hook_command())
    issued = _issued(backend.enroll(_request("req-dns", "*.dns.example.test")))
    san = issued.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["*.dns.example.test"]


def test_a_redelivered_enroll_resumes_the_order_and_pebble_holds_one(pebble: Pebble, tmp_path: Path) -> None:
    config, backend = _added(pebble, tmp_path)
    first = _issued(backend.enroll(_request("req-again")))
    again = _issued(backend.enroll(_request("req-again")))
    assert again.certificate == first.certificate and again.order_ref == first.order_ref
    assert _orders(pebble, config) == [first.order_ref]


def test_an_order_still_processing_is_pending_and_collect_finishes_it(pebble: Pebble, tmp_path: Path) -> None:
    # -wait 0: pebble answers finalize with `processing` (it issues in the background), which is reported
    # as it is, without polling.
    config, backend = _added(pebble, tmp_path, wait=0)
    result = backend.enroll(_request("req-pending"))
    assert isinstance(result, Pending), result
    for _ in range(50):
        result = backend.collect(result.order_ref)
        if isinstance(result, Issued):
            break
        time.sleep(0.1)
    _check_chain(pebble, _issued(result), "app.example.test")
    assert len(_orders(pebble, config)) == 1


def test_collect_of_an_order_not_placed_here_is_rejected(pebble: Pebble, tmp_path: Path) -> None:
    _, backend = _added(pebble, tmp_path)
    with pytest.raises(Rejected, match="not placed through this backend"):
        backend.collect(f"{pebble.directory_url}/my-order/unknown")


@pytest.fixture(scope="module")
def two_root_pebble() -> Iterator[Pebble]:
    with pebble_peers.running(alternate_roots=1) as peer:
        yield peer


def test_preferredchain_picks_the_alternate_chain_by_its_issuer(
    two_root_pebble: Pebble, tmp_path: Path
) -> None:
    first, second = (x509.load_pem_x509_certificate(two_root_pebble.root_pem(i).encode()) for i in (0, 1))
    both = two_root_pebble.root_pem(0) + two_root_pebble.root_pem(1)
    _, default = _added(two_root_pebble, tmp_path / "default", roots=both)
    assert _issued(default.enroll(_request("req-default"))).chain[-1] == first
    preferred_cn = second.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    _, preferring = _added(two_root_pebble, tmp_path / "preferring", roots=both, preferredchain=preferred_cn)
    issued = _issued(preferring.enroll(_request("req-preferred")))
    assert issued.chain[-1] == second
    for child, parent in zip([issued.certificate, *issued.chain], issued.chain, strict=False):
        child.verify_directly_issued_by(parent)


# -- revoking -------------------------------------------------------------------------------------------


def test_revoke_shows_in_pebbles_management_interface_with_the_reason(pebble: Pebble, tmp_path: Path) -> None:
    _, backend = _added(pebble, tmp_path)
    issued = _issued(backend.enroll(_request("req-revoke")))
    serial = format(issued.certificate.serial_number, "x")
    backend.revoke(RevokeRequest(serial=serial, reason=RevocationReason.KEY_COMPROMISE))
    status = pebble.cert_status(issued.certificate.serial_number)
    assert status is not None and status["Status"] == "Revoked" and status["Reason"] == 1
    # Revoking again is not an error (alreadyRevoked), and the first reason stands.
    backend.revoke(RevokeRequest(serial=serial, reason=RevocationReason.SUPERSEDED))
    status = pebble.cert_status(issued.certificate.serial_number)
    assert status is not None and status["Reason"] == 1


def test_revoke_of_a_serial_not_issued_here_is_rejected(pebble: Pebble, tmp_path: Path) -> None:
    _, backend = _added(pebble, tmp_path)
    with pytest.raises(Rejected, match="ACME revokes by the certificate itself"):
        backend.revoke(RevokeRequest(serial="01:02:03"))


def test_scan_is_not_supported_by_acme(pebble: Pebble, tmp_path: Path) -> None:
    _, backend = _added(pebble, tmp_path)
    with pytest.raises(NotSupported, match="not supported by ACME"):
        list(backend.scan())


# -- the CA's problems ----------------------------------------------------------------------------------


def test_a_failed_http01_validation_is_rejected_with_pebbles_problem(pebble: Pebble, tmp_path: Path) -> None:
    # The tokens are served where pebble does not look, so its validation fails (connection refused).
    _, backend = _added(pebble, tmp_path, httpaddress=f"127.0.0.1:{free_port()}")
    with pytest.raises(Rejected) as refused:
        backend.enroll(_request("req-invalid", "nowhere.example.test"))
    message = refused.value.message
    assert "the authorization of nowhere.example.test is invalid" in message
    assert "connection" in message  # pebble's problem type or detail


def test_the_cas_problem_document_reaches_the_user(pebble: Pebble, tmp_path: Path) -> None:
    _, backend = _added(pebble, tmp_path)
    with pytest.raises(Rejected) as refused:
        backend.enroll(_request("req-malformed", "bad_name.example.test"))
    assert "placing the order: the CA answered malformed: " in refused.value.message
    assert "illegal character: '_'" in refused.value.message


def test_subproblems_are_described_with_their_identifiers() -> None:
    def sub(kind: str, detail: str, name: str) -> dict[str, object]:
        identifier = {"type": "dns", "value": name}
        return {"type": f"urn:ietf:params:acme:error:{kind}", "detail": detail, "identifier": identifier}

    problem = acme.messages.Error.from_json(
        {
            "type": "urn:ietf:params:acme:error:rejectedIdentifier",
            "detail": "2 identifiers refused",
            "subproblems": [sub("caa", "CAA forbids", "a.example"), sub("dns", "NXDOMAIN", "b.example")],
        }
    )
    assert describe_problem(problem) == (
        "rejectedIdentifier: 2 identifiers refused; caa (a.example): CAA forbids; dns (b.example): NXDOMAIN"
    )


def test_a_failing_hook_is_transient_and_names_the_hook(pebble: Pebble, tmp_path: Path) -> None:
    _, backend = _added(
        pebble, tmp_path, challenge="dns-01", hook="sh -c 'echo nsupdate refused >&2; exit 3'"
    )
    with pytest.raises(Transient, match=r"-hook set _acme-challenge\.app\.example\.test.*status 3.*refused"):
        backend.enroll(_request("req-hook"))


def test_a_directory_that_is_not_acme_fails_at_add(pebble: Pebble, tmp_path: Path) -> None:
    config = _config(pebble).model_copy(update={"directory": f"{pebble.management_url}/roots/0"})
    with pytest.raises(ConfigError, match=r"-directory .*/roots/0 is not an ACME directory"):
        AcmeBackendType().provision(config, _context(tmp_path))


def test_an_untrusted_tls_certificate_names_cacert(pebble: Pebble, tmp_path: Path) -> None:
    config = _config(pebble).model_copy(update={"cacert": None})
    with pytest.raises(ConfigError, match="-cacert"):
        AcmeBackendType().provision(config, _context(tmp_path))


class _RateLimited(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(
            {"type": "urn:ietf:params:acme:error:rateLimited", "detail": "too many new orders recently"}
        ).encode()
        self.send_response(429)
        self.send_header("Content-Type", "application/problem+json")
        self.send_header("Retry-After", "42")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def rate_limited() -> Iterator[str]:
    """A CA that answers every request with rateLimited and Retry-After: 42 (pebble has no rate limits)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RateLimited)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/directory"
    server.shutdown()
    server.server_close()


def test_rate_limited_is_transient_with_the_cas_retry_after(rate_limited: str, tmp_path: Path) -> None:
    config = AcmeConfig(directory=rate_limited)
    with pytest.raises(Transient) as limited:
        AcmeBackendType().provision(config, _context(tmp_path))
    assert limited.value.retry_after == 42
    assert "rateLimited: too many new orders recently" in limited.value.message


def test_option_mistakes_are_refused_naming_the_option() -> None:
    directory = "https://acme.example.test/dir"
    cases: list[tuple[dict[str, object], str]] = [
        ({"challenge": "dns-01"}, "-challenge dns-01 needs -hook"),
        ({"httpaddress": "80"}, "must be HOST:PORT"),
        ({"roots": "not a certificate"}, "roots"),
        ({"cacert": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}, "cacert"),
        ({"eabkid": "kid-1"}, "-eabkid and -eabhmac go together"),
        ({"eabkid": "kid-1", "eabhmac": "not base64url!"}, "base64url"),
        ({"hook": "unbalanced 'quote"}, "not a command line"),
        ({"wait": 5000}, "between 0 and 3600"),
    ]
    for values, expected in cases:
        with pytest.raises(ValidationError, match=expected):
            AcmeConfig.model_validate({"directory": directory, **values})


# -- accounts and External Account Binding ---------------------------------------------------------------


def test_the_account_key_is_made_at_add_and_the_account_is_registered(pebble: Pebble, tmp_path: Path) -> None:
    config, backend = _added(pebble, tmp_path)
    assert config.accountkey is not None and "PRIVATE KEY" in config.accountkey.get_secret_value()
    assert config.accounturl is not None and config.accounturl.startswith(
        pebble.directory_url.rsplit("/", 1)[0]
    )
    result = backend.check()
    assert [ca.certificate for ca in result.cas] == [
        x509.load_pem_x509_certificate(pebble.root_pem().encode())
    ]


@pytest.fixture(scope="module")
def eab_pebble() -> Iterator[Pebble]:
    with pebble_peers.running(eab_keys={EAB_KID: EAB_HMAC}) as peer:
        yield peer


def test_eab_required_and_given_registers_and_issues(eab_pebble: Pebble, tmp_path: Path) -> None:
    _, backend = _added(eab_pebble, tmp_path, eabkid=EAB_KID, eabhmac=EAB_HMAC)
    _check_chain(eab_pebble, _issued(backend.enroll(_request("req-eab"))), "app.example.test")


def test_wrong_eab_credentials_fail_at_add_naming_the_options(eab_pebble: Pebble, tmp_path: Path) -> None:
    wrong = "b10lLJs8l1GPIzsLP0s6pMt8O0XVGnfTaCeROxQM0BIt2XrJMDHJZBM5NuQmQJQH"
    with pytest.raises(ConfigError) as refused:
        AcmeBackendType().provision(_config(eab_pebble, eabkid=EAB_KID, eabhmac=wrong), _context(tmp_path))
    assert "-eabkid and -eabhmac" in refused.value.message
    assert wrong not in refused.value.message


def test_eab_required_but_not_given_fails_at_add(eab_pebble: Pebble, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"requires External Account Binding.*-eabkid and -eabhmac"):
        AcmeBackendType().provision(_config(eab_pebble), _context(tmp_path))


# -- pebble's nonce rejection, and the `none` challenge ---------------------------------------------------


@pytest.fixture(scope="module")
def nonce_pebble() -> Iterator[Pebble]:
    # Three in ten good nonces refused: more than the library's single retry can absorb.
    with pebble_peers.running(nonce_reject_percent=30) as peer:
        yield peer


def test_bad_nonces_are_retried_inside_the_client(
    nonce_pebble: Pebble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="caconnector.backends.acme.client")
    _, backend = _added(nonce_pebble, tmp_path)
    for index in range(3):
        issued = _issued(backend.enroll(_request(f"req-nonce-{index}", f"n{index}.example.test")))
        backend.revoke(RevokeRequest(serial=format(issued.certificate.serial_number, "x")))
    assert any("badNonce" in record.getMessage() for record in caplog.records)


@pytest.fixture(scope="module")
def always_valid_pebble() -> Iterator[Pebble]:
    with pebble_peers.running(always_valid=True) as peer:
        yield peer


def test_challenge_none_issues_when_the_ca_validates_by_itself(
    always_valid_pebble: Pebble, tmp_path: Path
) -> None:
    # Nothing serves a token or sets a record: pebble (PEBBLE_VA_ALWAYS_VALID) validates without them.
    _, backend = _added(always_valid_pebble, tmp_path, challenge="none", httpaddress="127.0.0.1:1")
    _check_chain(always_valid_pebble, _issued(backend.enroll(_request("req-none"))), "app.example.test")


# -- ACME Renewal Information ------------------------------------------------------------------------------


def test_the_cas_renewal_window_comes_with_the_certificate(pebble: Pebble, tmp_path: Path) -> None:
    window = {"start": "2027-01-01T00:00:00Z", "end": "2027-01-03T12:00:00Z"}
    with WithRenewalInfo(pebble, window, "https://ca.example.test/why") as proxy:
        _, backend = _added(pebble, tmp_path, directory=proxy.directory_url)
        issued = _issued(backend.enroll(_request("req-ari-window")))
    assert issued.renewal_window == RenewalWindow(
        start=dt.datetime(2027, 1, 1, tzinfo=dt.UTC),
        end=dt.datetime(2027, 1, 3, 12, tzinfo=dt.UTC),
        explanation_url="https://ca.example.test/why",
    )
    assert proxy.asked == [renewal_certificate_id(issued.certificate)]


def test_the_renewal_certificate_id_is_rfc_9773s(pebble: Pebble, tmp_path: Path) -> None:
    _, backend = _added(pebble, tmp_path)
    issued = _issued(backend.enroll(_request("req-ari")))
    # RFC 9773 4.1: base64url(AKI keyIdentifier) "." base64url(DER serial), as certbot's library has it.
    assert renewal_certificate_id(issued.certificate) == acme.client._renewal_info_path_component(
        issued.certificate
    )
    # pebble 2.4 has no renewalInfo in its directory, so no window is reported.
    assert issued.renewal_window is None


def test_an_existing_account_key_finds_its_account(pebble: Pebble, tmp_path: Path) -> None:
    first, _ = _added(pebble, tmp_path)
    assert first.accountkey is not None
    again, backend = _added(pebble, tmp_path / "again", accountkey=first.accountkey.get_secret_value())
    assert again.accounturl == first.accounturl
    backend.check()
