"""A failed silent install keeps nothing (not even the proxy it saved to register through) and says a
new token is needed when the manager refused the one given; `update` refuses what it cannot do."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.connector.peers import FakeManager, FakeProxy
from tests.support import Result

from caconnector.connector.link_settings import read_proxy, read_registration
from caconnector.connector.store import ConnectorStore

Run = Callable[..., Result]


def test_a_spent_token_keeps_nothing_and_asks_for_a_new_one(
    cli: Run, datadir: Path, manager: FakeManager, proxy: FakeProxy
) -> None:
    assert proxy.credentials is not None
    user, password = proxy.credentials
    token = manager.add_token("edge-x")
    manager.used_tokens.add(token)  # an earlier attempt used it
    result = cli(
        "install", "-silent", "-token", token, "-manager", manager.url,
        "-proxy", "1", "-proxyhost", "127.0.0.1", "-proxyport", str(proxy.port),
        "-proxyuser", user, "-proxypassword", password,
    )  # fmt: skip
    assert result.code == 1
    assert "it cannot be used again: create a new one in the manager" in result.err
    assert any(line.startswith("POST http://127.0.0.1") for line in proxy.request_lines)  # it went through
    snapshot = ConnectorStore(datadir).read()
    assert read_proxy(snapshot) is None and read_registration(snapshot) is None
    assert password not in result.err


def test_an_unknown_token_is_refused_the_same_way(cli: Run, datadir: Path, manager: FakeManager) -> None:
    result = cli("install", "-silent", "-token", "no-such-token", "-manager", manager.url)
    assert result.code == 1
    assert "knows no such installation token" in result.err and "create a new one" in result.err
    assert read_registration(ConnectorStore(datadir).read()) is None


def test_update_without_a_registration_or_a_file(cli: Run, tmp_path: Path) -> None:
    check = cli("update", "-check")
    assert check.code == 1 and "not registered" in check.err
    missing = cli("update", "-file", str(tmp_path / "nothing.deb"))
    assert missing.code == 2 and "is not a file" in missing.err
    bogus = tmp_path / "bogus.deb"
    bogus.write_bytes(b"not a package")
    refused = cli("update", "-file", str(bogus))
    assert refused.code == 1 and "is not the ca-connector package" in refused.err
