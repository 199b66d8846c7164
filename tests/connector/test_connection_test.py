"""`ca-connector test-connection`: each way of failing is named by its step, against real local peers."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme
from tests.connector.peers import FakeManager, FakeProxy, Peer, Response
from tests.ports import closed_port
from tests.support import Result

Run = Callable[..., Result]


def _steps(result: Result) -> dict[str, str]:
    """Step name -> status, from the text output."""
    steps = {}
    for line in result.out.splitlines():
        for status in ("OK", "FAILED", "SKIPPED"):
            marker = f"  {status}"
            if marker in line:
                steps[line.split(marker)[0].strip()] = status
                break
    return steps


def _failed_line(result: Result) -> str:
    return next(line for line in result.out.splitlines() if "FAILED" in line)


def test_dns_failure_names_the_manager_host(cli: Run) -> None:
    result = cli("test-connection", "-manager", "https://nonexistent.invalid")
    assert result.code == 1
    assert _steps(result) == {"DNS": "FAILED"}
    assert "cannot resolve nonexistent.invalid" in _failed_line(result)
    assert "the DNS step failed" in result.err


def test_dns_failure_of_the_proxy_names_proxyhost(cli: Run) -> None:
    assert cli("proxy", "set", "-proxyhost", "proxy.nonexistent.invalid", "-proxyport", "3128").code == 0
    result = cli("test-connection", "-manager", "https://manager.example.com")
    assert result.code == 1
    assert "-proxyhost" in _failed_line(result)


def test_tcp_refused_on_a_closed_port(cli: Run) -> None:
    result = cli("test-connection", "-manager", f"http://127.0.0.1:{closed_port()}")
    assert result.code == 1
    assert _steps(result) == {"DNS": "OK", "TCP": "FAILED"}
    assert "connection refused" in _failed_line(result)


def test_407_names_proxy_authentication(cli: Run, proxy: FakeProxy) -> None:
    set_ = cli("proxy", "set", "-proxyhost", "127.0.0.1", "-proxyport", str(proxy.port),
               "-proxyuser", "us@er:x", "-proxypassword", "not-the-password")  # fmt: skip
    assert set_.code == 0
    result = cli("test-connection", "-manager", "https://manager.example.com")
    assert result.code == 1
    assert _steps(result) == {"DNS": "OK", "TCP": "OK", "proxy authentication": "FAILED"}
    assert "the proxy refused authentication: check -proxyuser/-proxypassword" in _failed_line(result)
    assert "not-the-password" not in result.out + result.err
    assert proxy.request_lines[-1] == "CONNECT manager.example.com:443 HTTP/1.1"


def test_407_without_credentials_says_to_set_them(cli: Run, proxy: FakeProxy) -> None:
    assert cli("proxy", "set", "-proxyhost", "127.0.0.1", "-proxyport", str(proxy.port)).code == 0
    result = cli("test-connection", "-manager", "http://127.0.0.1:8080")
    assert result.code == 1
    assert "requires authentication: set -proxyuser and -proxypassword" in _failed_line(result)
    assert proxy.request_lines[-1] == "GET http://127.0.0.1:8080/healthz HTTP/1.1"


def test_tls_failure_with_a_certificate_not_in_the_bundle(
    cli: Run, tls_manager: FakeManager, tmp_path: Path
) -> None:
    other = tmp_path / "other.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    result = cli("test-connection", "-manager", tls_manager.url, "-cacert", str(other))
    assert result.code == 1
    assert _steps(result) == {"DNS": "OK", "TCP": "OK", "proxy authentication": "SKIPPED", "TLS": "FAILED"}
    assert "not trusted" in _failed_line(result) and "-cacert" in _failed_line(result)


def test_tls_to_a_plain_http_port(cli: Run, manager: FakeManager) -> None:
    result = cli("test-connection", "-manager", manager.url.replace("http://", "https://"))
    assert result.code == 1
    assert _steps(result)["TLS"] == "FAILED"


def test_all_ok_through_a_proxy_and_tls_before_registration(
    cli: Run, tls_manager: FakeManager, proxy: FakeProxy, ca_file: Path
) -> None:
    assert proxy.credentials is not None
    user, password = proxy.credentials
    set_ = cli("proxy", "set", "-proxyhost", "127.0.0.1", "-proxyport", str(proxy.port),
               "-proxyuser", user, "-proxypassword", password)  # fmt: skip
    assert set_.code == 0
    result = cli("test-connection", "-manager", tls_manager.url, "-cacert", str(ca_file), "-json")
    assert result.code == 0, result.out + result.err
    view = json.loads(result.out)
    assert view["ok"] is True
    assert [(s["step"], s["status"]) for s in view["steps"]] == [
        ("DNS", "OK"),
        ("TCP", "OK"),
        ("proxy authentication", "OK"),
        ("TLS", "OK"),
        ("manager health", "OK"),
        ("registration", "SKIPPED"),
    ]
    assert password not in result.out


def test_health_failure_is_named(cli: Run) -> None:
    with Peer(lambda _: Response(503, b"down")) as peer:
        result = cli("test-connection", "-manager", peer.url())
    assert result.code == 1
    assert _steps(result)["manager health"] == "FAILED"
    assert "HTTP 503" in _failed_line(result)


def test_registration_ok_then_refused_names_the_code_and_fix(cli: Run, manager: FakeManager) -> None:
    assert cli("register", "-token", manager.add_token("edge-1"), "-manager", manager.url).code == 0
    ok = cli("test-connection")
    assert ok.code == 0, ok.out
    assert _steps(ok)["registration"] == "OK"
    assert "edge-1" in ok.out

    manager.refusal = (403, "connector_expired")
    refused = cli("test-connection")
    assert refused.code == 1
    line = _failed_line(refused)
    assert line.startswith("registration")
    assert "connector_expired" in line and "register -token T -force" in line


@pytest.mark.parametrize("args", [[], ["-cacert", "/nonexistent.pem", "-manager", "https://m.example.com"]])
def test_usage_errors(cli: Run, args: list[str]) -> None:
    result = cli("test-connection", *args)
    assert result.code == 2
