"""The link over an injected transport (`httpx.MockTransport`): what the request carries and how a
transport failure maps, checked without a server. The error mapping against real servers is in
`test_link.py`."""

from __future__ import annotations

import json

import httpx
import pytest

from caconnector.connector.link import Identity, Link, LinkSettings, ManagerUnreachable
from caconnector.protocol.messages import HELLO_PATH, POLL_PATH, PollRequest
from caconnector.protocol.signing import generate_connector_key, verify_request

HELLO = {"connector_id": "c-1", "name": "edge-1", "status": "Connected"}


def test_a_manager_under_a_url_prefix_gets_requests_signed_for_the_channel_path() -> None:
    # A reverse proxy that mounts the manager under /pki strips the prefix: the signature must bind
    # the channel path alone, while the request itself goes to the prefixed URL.
    key = generate_connector_key()
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=HELLO)

    settings = LinkSettings("https://manager.example/pki")
    with Link(settings, Identity("c-1", key), transport=httpx.MockTransport(answer)) as link:
        assert link.hello().connector_id == "c-1"
    (request,) = seen
    assert request.url == httpx.URL(f"https://manager.example/pki{HELLO_PATH}")
    scheme, token = request.headers["Authorization"].split(" ", 1)
    assert scheme == "Bearer"
    verified = verify_request(token, key.public_key(), "GET", HELLO_PATH)
    assert verified.connector_id == "c-1"
    assert request.headers["User-Agent"].startswith("ca-connector/")


def test_a_long_poll_sends_its_request_and_waits_longer_than_its_wait() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200, json={"jobs": [], "acknowledged": [], "server_time": "2030-01-01T00:00:00Z"}
        )

    with Link(
        LinkSettings("http://manager.test"),
        Identity("c-1", generate_connector_key()),
        transport=httpx.MockTransport(answer),
    ) as link:
        link.poll(PollRequest(running=["j-1"], capacity=3, wait_seconds=40))
    (request,) = seen
    assert request.url.path == POLL_PATH
    body = json.loads(request.content)
    assert (body["running"], body["capacity"], body["wait_seconds"]) == (["j-1"], 3, 40)
    # The read timeout covers the whole wait plus a margin, or every quiet long poll would fail.
    assert request.extensions["timeout"]["read"] > 40


@pytest.mark.parametrize(
    ("failure", "words"),
    [
        (httpx.ReadTimeout("slow"), "did not answer in time (ReadTimeout)"),
        (httpx.ConnectError("[Errno 111] Connection refused"), "cannot reach the manager at"),
    ],
)
def test_a_transport_failure_is_unreachable_naming_the_manager(failure: Exception, words: str) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise failure

    with (
        Link(LinkSettings("http://manager.test"), transport=httpx.MockTransport(fail)) as link,
        pytest.raises(ManagerUnreachable) as caught,
    ):
        link.healthz()
    assert words in caught.value.message
    assert "http://manager.test" in caught.value.message
