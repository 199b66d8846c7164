"""`ca-connector register` and `install`: what is stored (the private key only encrypted), what is refused,
and that a refusal writes nothing."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from tests.connector.peers import FakeManager, FakeProxy
from tests.support import Result, all_bytes, tree_digest

from caconnector.connector.link import Identity, Link, LinkSettings
from caconnector.connector.link_settings import Registration, read_registration
from caconnector.connector.store import ConnectorStore

Run = Callable[..., Result]


def _registration(datadir: Path) -> Registration:
    registration = read_registration(ConnectorStore(datadir).read())
    assert registration is not None
    return registration


def test_register_stores_the_registration_and_the_key_encrypted(
    cli: Run, datadir: Path, manager: FakeManager
) -> None:
    token = manager.add_token("edge-1")
    result = cli("register", "-token", token, "-manager", manager.url + "/", "-json")
    assert result.code == 0, result.err
    view = json.loads(result.out)
    assert view["name"] == "edge-1"
    assert view["manager_url"] == manager.url

    registration = _registration(datadir)
    assert registration.connector_id == view["connector_id"]
    assert registration.poll_wait_seconds == manager.poll_wait_seconds
    # The private key is in the store only encrypted: no PEM, no line of its base64, anywhere.
    pem = registration.private_key_pem
    body = "".join(pem.splitlines()[1:-1])
    everything = all_bytes(datadir)
    assert b"PRIVATE KEY" not in everything
    assert body.encode() not in everything
    config = tomllib.loads((datadir / "config.toml").read_text())
    assert config["sections"]["manager"]["secret_fields"] == ["private_key"]
    # Only the public key travelled, and it is the stored key's.
    assert manager.registrations[-1].public_key in _public_pem(pem)
    assert token not in everything.decode(errors="replace")

    # The stored key signs requests the manager accepts.
    with Link(
        LinkSettings(manager.url), Identity(registration.connector_id, registration.private_key())
    ) as link:
        assert link.hello().connector_id == registration.connector_id


def _public_pem(private_pem: str) -> str:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def test_register_refuses_to_overwrite_without_force_and_replaces_with_it(
    cli: Run, datadir: Path, manager: FakeManager
) -> None:
    assert cli("register", "-token", manager.add_token("edge-1"), "-manager", manager.url).code == 0
    first = _registration(datadir)
    before = tree_digest(datadir)

    again = cli("register", "-token", manager.add_token("edge-1"), "-manager", manager.url)
    assert again.code == 1
    assert f"already registered to {manager.url} as edge-1; use -force with a restore token" in again.err
    assert tree_digest(datadir) == before

    # The restore flow: only the token and -force; the manager URL is the stored one.
    restored = cli("register", "-token", manager.add_token("edge-1"), "-force")
    assert restored.code == 0, restored.err
    second = _registration(datadir)
    assert second.private_key_pem != first.private_key_pem
    assert second.manager_url == manager.url
    assert manager.registrations[-1].force is True


@pytest.mark.parametrize(
    "refusal",
    # The fix is the manager's own sentence (see peers.REFUSAL_DETAILS), passed on as it is.
    [("unknown", "token_invalid", "copy it again"), ("used", "token_used", "needs a new token")],
)
def test_a_refused_registration_writes_nothing_and_names_the_fix(
    cli: Run, datadir: Path, manager: FakeManager, refusal: tuple[str, str, str]
) -> None:
    token_state, code, fix = refusal
    token = manager.add_token() if token_state == "used" else "no-such-token"
    if token_state == "used":
        manager.used_tokens.add(token)
    result = cli("register", "-token", token, "-manager", manager.url)
    assert result.code == 1
    assert f"({code})" in result.err and fix in result.err
    assert read_registration(ConnectorStore(datadir).read()) is None
    assert not (datadir / "config.toml").exists()


def test_register_needs_a_manager_url_the_first_time(cli: Run) -> None:
    result = cli("register", "-token", "t")
    assert result.code == 1
    assert "-manager URL" in result.err


def test_register_over_https_with_cacert_stores_the_bundle(
    cli: Run, datadir: Path, tls_manager: FakeManager, ca_file: Path, ca: trustme.CA
) -> None:
    result = cli(
        "register", "-token", tls_manager.add_token(), "-manager", tls_manager.url, "-cacert", str(ca_file)
    )
    assert result.code == 0, result.err
    assert _registration(datadir).cacert_pem == ca.cert_pem.bytes().decode()

    untrusted = cli(
        "register",
        "-token",
        tls_manager.add_token(),
        "-manager",
        tls_manager.url,
        "-force",
        "-cacert",
        str(_other_ca(datadir.parent)),
    )
    assert untrusted.code == 1
    assert "not trusted" in untrusted.err


def _other_ca(directory: Path) -> Path:
    path = directory / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return path


# ---- install -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["-proxy", "1"], "-proxyhost and -proxyport are required with -proxy 1"),
        (["-proxy", "1", "-proxyhost", "p.example"], "-proxyport is required with -proxy 1"),
        (["-proxy", "1", "-proxyport", "3128"], "-proxyhost is required with -proxy 1"),
        (
            ["-proxy", "1", "-proxyhost", "p", "-proxyport", "3128", "-proxyuser", "u"],
            "-proxyuser and -proxypassword go together",
        ),
        (
            ["-proxy", "1", "-proxyhost", "p", "-proxyport", "3128", "-proxypassword", "w"],
            "-proxyuser and -proxypassword go together",
        ),
        (
            ["-proxy", "1", "-proxyhost", "p", "-proxyport", "0"],
            "-proxyport: 0 is not a port number (1-65535)",
        ),
        (["-proxy", "1", "-proxyhost", "p", "-proxyport", "65536"], "-proxyport: 65536 is not a port number"),
        (["-proxy", "1", "-proxyhost", "p", "-proxyport", "web"], "-proxyport: 'web' is not a port number"),
        (["-proxy", "0", "-proxyhost", "p"], "-proxy 0 means no proxy, but -proxyhost is given"),
        (["-proxy", "2"], "invalid choice: '2'"),
        (["-proxyhost", "p"], "-proxyport is required with -proxyhost"),
    ],
)
def test_install_option_validation_exits_2_and_writes_nothing(
    cli: Run, datadir: Path, options: list[str], message: str
) -> None:
    result = cli("install", "-token", "t", "-manager", "https://manager.example.com", "-silent", *options)
    assert result.code == 2, result.err
    assert message in result.err
    assert tree_digest(datadir) == {}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["-manager", "http://manager.example.com"], "http:// is accepted only for loopback addresses"),
        (["-manager", "https://m.example.com"], "-token is required"),
        (["-token", "t"], "the following arguments are required: -manager"),
        (
            ["-token", "t", "-manager", "https://m.example.com", "-cacert", "/nonexistent.pem"],
            "-cacert: cannot read",
        ),
    ],
)
def test_install_required_options(cli: Run, datadir: Path, options: list[str], message: str) -> None:
    if "-token" not in options and "http://" in options[1]:
        options = ["-token", "t", *options]
    result = cli("install", "-silent", *options)
    assert result.code == 2, result.err
    assert message in result.err
    assert tree_digest(datadir) == {}


def test_install_saves_the_proxy_registers_through_it_and_says_how_to_run(
    cli: Run, datadir: Path, manager: FakeManager, proxy: FakeProxy
) -> None:
    assert proxy.credentials is not None
    user, password = proxy.credentials
    result = cli(
        "install", "-silent", "-noservice", "-token", manager.add_token("edge-9"), "-manager", manager.url,
        "-proxy", "1", "-proxyhost", "127.0.0.1", "-proxyport", str(proxy.port),
        "-proxyuser", user, "-proxypassword", password,
    )  # fmt: skip
    assert result.code == 0, result.err
    assert "registered with" in result.out and "edge-9" in result.out
    # -noservice: the operator is told how to run the agent.
    assert "ca-connector run -datadir" in result.out
    assert any(line.startswith("POST http://127.0.0.1") for line in proxy.request_lines)
    assert proxy.seen_auth[-1] == f"{user}:{password}"
    assert password not in result.out + result.err
    assert password.encode() not in all_bytes(datadir)

    again = cli("install", "-silent", "-token", manager.add_token(), "-manager", manager.url)
    assert again.code == 1
    assert "already registered" in again.err and "-force" in again.err
