"""The link's error mapping against real local servers: problem documents, 407, dropped connections, 5xx,
closed ports, answers that are not the protocol; the manager URL rules; environment proxies ignored."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import trustme
from tests.connector.peers import FakeManager, FakeProxy, Peer, Response
from tests.ports import closed_port

from caconnector.connector.link import (
    Identity,
    Link,
    LinkSettings,
    ManagerUnreachable,
    ProxyAuthFailed,
    Refused,
)
from caconnector.connector.link_settings import InvalidSetting, ProxySettings, parse_manager_url
from caconnector.protocol.errors import ChannelError
from caconnector.protocol.messages import PollRequest, RegisterRequest
from caconnector.protocol.signing import generate_connector_key, public_key_pem


def _identity() -> Identity:
    return Identity("c-1", generate_connector_key())


def _always(response: Response | None) -> Peer:
    return Peer(lambda _: response)


def test_a_problem_document_becomes_refused_with_its_code_and_fix() -> None:
    # The manager's detail says what is wrong and what to do; the message adds only the code to it,
    # never a second explanation of the same refusal.
    detail = "not seen for 31 days; restore it, then run ca-connector register -token T -force"
    with (
        _always(Response.problem(403, "connector_expired", detail)) as peer,
        Link(LinkSettings(peer.url()), _identity()) as link,
        pytest.raises(Refused) as caught,
    ):
        link.hello()
    assert caught.value.code == ChannelError.CONNECTOR_EXPIRED
    assert caught.value.status == 403
    assert caught.value.detail == detail
    assert caught.value.message == f"the manager refused the request (connector_expired): {detail}"


def test_a_4xx_without_a_problem_document_is_refused_without_a_code() -> None:
    with (
        _always(Response(404, b"<html>nope</html>", {"Content-Type": "text/html"})) as peer,
        Link(LinkSettings(peer.url())) as link,
        pytest.raises(Refused) as caught,
    ):
        link.healthz()
    assert caught.value.code is None
    assert "-manager" in caught.value.message


@pytest.mark.parametrize(("status", "retry_after"), [(503, "7"), (429, "2"), (500, None)])
def test_5xx_and_429_mean_unreachable_with_retry_after(status: int, retry_after: str | None) -> None:
    headers = {"Retry-After": retry_after} if retry_after else {}
    with (
        _always(Response(status, b"busy", headers)) as peer,
        Link(LinkSettings(peer.url()), _identity()) as link,
        pytest.raises(ManagerUnreachable) as caught,
    ):
        link.hello()
    assert caught.value.retry_after == (float(retry_after) if retry_after else None)
    assert f"HTTP {status}" in caught.value.message


def test_a_dropped_connection_means_unreachable() -> None:
    with (
        _always(None) as peer,
        Link(LinkSettings(peer.url()), _identity()) as link,
        pytest.raises(ManagerUnreachable),
    ):
        link.hello()


def test_a_closed_port_means_unreachable_naming_the_refusal() -> None:
    with (
        Link(LinkSettings(f"http://127.0.0.1:{closed_port()}")) as link,
        pytest.raises(ManagerUnreachable) as caught,
    ):
        link.healthz()
    assert "connection refused" in caught.value.message


def test_an_answer_that_is_not_the_protocol_means_unreachable() -> None:
    with (
        _always(Response(200, b"<html>captive portal</html>", {"Content-Type": "text/html"})) as peer,
        Link(LinkSettings(peer.url()), _identity()) as link,
        pytest.raises(ManagerUnreachable) as caught,
    ):
        link.hello()
    assert "not the connector protocol" in caught.value.message


def test_a_newer_major_protocol_is_refused_as_protocol_version() -> None:
    answer = {"connector_id": "c-1", "name": "n", "status": "Connected", "protocol_version": "2.0"}
    with (
        _always(Response.json(200, answer)) as peer,
        Link(LinkSettings(peer.url()), _identity()) as link,
        pytest.raises(Refused) as caught,
    ):
        link.hello()
    assert caught.value.code == ChannelError.PROTOCOL_VERSION


def test_a_job_of_an_unknown_kind_is_set_aside_not_fatal_to_the_poll() -> None:
    expires = dt.datetime.now(dt.UTC).isoformat()
    jobs = [
        {"id": "j-new", "kind": "teleport", "payload": {}, "lease_expires_at": expires},
        {"id": "j-ok", "kind": "check", "backend": "b", "lease_expires_at": expires},
    ]
    answer = {"jobs": jobs, "acknowledged": ["j-0"], "server_time": expires, "some_new_field": 1}
    with _always(Response.json(200, answer)) as peer, Link(LinkSettings(peer.url()), _identity()) as link:
        reply = link.poll(PollRequest(wait_seconds=0))
    assert [job.id for job in reply.response.jobs] == ["j-ok"]
    assert list(reply.unreadable) == ["j-new"]
    assert reply.response.acknowledged == ["j-0"]


def test_signed_requests_verify_at_the_manager_and_each_is_fresh(manager: FakeManager) -> None:
    key = generate_connector_key()
    with Link(LinkSettings(manager.url)) as link:
        token = manager.add_token("edge-1")
        registered = link.register(
            RegisterRequest(token=token, public_key=public_key_pem(key), hostname="h", version="1")
        )
    with Link(LinkSettings(manager.url), Identity(registered.connector_id, key)) as link:
        assert link.hello().name == "edge-1"
        assert link.hello().name == "edge-1"  # a second request is not a replay: a new jti
    assert manager.hellos == 2


def test_407_from_a_forwarding_proxy_is_proxy_auth_failed(manager: FakeManager, proxy: FakeProxy) -> None:
    wrong = ProxySettings("127.0.0.1", proxy.port, "us@er:x", "wrong")
    with Link(LinkSettings(manager.url, proxy=wrong)) as link, pytest.raises(ProxyAuthFailed) as caught:
        link.healthz()
    assert "refused authentication" in caught.value.message
    assert "wrong" not in caught.value.message


def test_407_to_connect_is_proxy_auth_failed(
    tls_manager: FakeManager, proxy: FakeProxy, ca: trustme.CA
) -> None:
    none = ProxySettings("127.0.0.1", proxy.port)
    settings = LinkSettings(tls_manager.url, ca.cert_pem.bytes().decode(), none)
    with Link(settings) as link, pytest.raises(ProxyAuthFailed) as caught:
        link.healthz()
    assert "requires authentication" in caught.value.message
    assert proxy.request_lines[-1].startswith("CONNECT localhost:")


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_credentials_are_percent_encoded_and_reach_the_proxy_intact(
    scheme: str, manager: FakeManager, tls_manager: FakeManager, proxy: FakeProxy, ca: trustme.CA
) -> None:
    target = manager if scheme == "http" else tls_manager
    assert proxy.credentials is not None
    settings = ProxySettings("127.0.0.1", proxy.port, *proxy.credentials)
    assert "%40" in settings.url() and "%25" in settings.url()  # '@' and '%' escaped
    with Link(LinkSettings(target.url, ca.cert_pem.bytes().decode(), settings)) as link:
        link.healthz()
    assert proxy.seen_auth[-1] == ":".join(proxy.credentials)


def test_environment_proxies_and_ca_settings_are_ignored(
    manager: FakeManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{closed_port()}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with Link(LinkSettings(manager.url)) as link:
        link.healthz()  # direct, despite the environment


def test_the_configured_bundle_is_the_whole_trust(tls_manager: FakeManager, tmp_path: Path) -> None:
    other = trustme.CA().cert_pem.bytes().decode()
    with Link(LinkSettings(tls_manager.url, other)) as link, pytest.raises(ManagerUnreachable) as caught:
        link.healthz()
    assert "not trusted" in caught.value.message
    # Without a bundle the system store is used, which does not know the test CA either.
    with Link(LinkSettings(tls_manager.url)) as link, pytest.raises(ManagerUnreachable):
        link.healthz()


def test_an_unusable_bundle_is_refused() -> None:
    with pytest.raises(ValueError, match="-cacert"):
        Link(
            LinkSettings(
                "https://localhost", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
            )
        )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://manager.example.com/", "https://manager.example.com"),
        ("https://manager.example.com:8443/cam", "https://manager.example.com:8443/cam"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://localhost:8080/", "http://localhost:8080"),
        ("http://[::1]:8080", "http://[::1]:8080"),
    ],
)
def test_manager_urls_accepted(text: str, expected: str) -> None:
    assert parse_manager_url(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("http://manager.example.com", "loopback"),
        ("ftp://manager.example.com", "https://"),
        ("manager.example.com", "https://"),
        ("https://user:pw@manager.example.com", "credentials"),
        ("https://manager.example.com:99999", "not a valid URL"),
    ],
)
def test_manager_urls_refused(text: str, problem: str) -> None:
    with pytest.raises(InvalidSetting, match=problem):
        parse_manager_url(text)
