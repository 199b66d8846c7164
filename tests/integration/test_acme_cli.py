"""The acme backend through the connector's own commands, against pebble over real HTTPS: `backend add
-type acme` registering the account (EAB given, wrong, or a directory that is not ACME), `backend test`,
`backend show` hiding the account key, and enroll and revoke as a user types them."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from tests.peers import pebble as pebble_peers
from tests.peers.pebble import Pebble
from tests.support import Result, all_bytes, openssl_csr

from caconnector.connector import backend_admin
from caconnector.connector.store import ConnectorStore

Run = Callable[..., Result]
EAB_KID = "kid-1"
EAB_HMAC = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"
WRONG_HMAC = "b10lLJs8l1GPIzsLP0s6pMt8O0XVGnfTaCeROxQM0BIt2XrJMDHJZBM5NuQmQJQH"


@pytest.fixture(autouse=True)
def _no_ca_bundle_override(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(variable, raising=False)  # requests would prefer them to -cacert


@pytest.fixture(scope="module")
def eab_pebble() -> Iterator[Pebble]:
    with pebble_peers.running(eab_keys={EAB_KID: EAB_HMAC}) as peer:
        yield peer


def _files(peer: Pebble, tmp_path: Path) -> list[str]:
    """`-directory`, `-cacert` and `-roots` for this pebble, as an operator passes them."""
    cacert, roots = tmp_path / "pebble-tls-ca.pem", tmp_path / "pebble-roots.pem"
    cacert.write_text(peer.tls_ca_pem)
    roots.write_text(peer.root_pem())
    return ["-directory", peer.directory_url, "-cacert", str(cacert), "-roots", str(roots)]


def _account_key(datadir: Path, name: str) -> str:
    return backend_admin.get_backend(ConnectorStore(datadir), name).secrets["accountkey"]


def test_backend_add_registers_the_account_and_keeps_its_key_secret(
    shell: Run, datadir: Path, pebble: Pebble, tmp_path: Path
) -> None:
    added = shell(
        "backend", "add", "-name", "test-acme", "-type", "acme", *_files(pebble, tmp_path),
        "-email", "pki@example.test", "-httpaddress", f"127.0.0.1:{pebble.http_port}",
    )  # fmt: skip
    assert added.code == 0, added.err
    assert "backend 'test-acme' (acme) added" in added.out

    tested = shell("backend", "test", "-name", "test-acme", "-json")
    assert tested.code == 0, tested.err
    view = json.loads(tested.out)
    assert view["status"] == "Available"
    root = x509.load_pem_x509_certificate(pebble.root_pem().encode())
    assert [ca["name"] for ca in view["cas"]] == [root.subject.rfc4514_string().removeprefix("CN=")]

    shown = shell("backend", "show", "-name", "test-acme", "-json")
    assert shown.code == 0, shown.err
    settings = json.loads(shown.out)["settings"]
    assert settings["accounturl"].startswith(pebble.directory_url.removesuffix("/dir"))
    key = _account_key(datadir, "test-acme")
    assert "PRIVATE KEY" in key and settings["accountkey"] != key

    # No line of the key's PEM body shows anywhere, nor sits in clear in the data directory.
    secret_lines = [line for line in key.splitlines() if line and not line.startswith("-----")]
    stored = all_bytes(datadir)
    for result in (added, tested, shown):
        assert not any(line in result.out + result.err for line in secret_lines)
    assert not any(line.encode() in stored for line in secret_lines)


def test_cli_enroll_and_revoke_through_pebble(cli: Run, pebble: Pebble, tmp_path: Path) -> None:
    added = cli(
        "backend", "add", "-name", "test-acme", "-type", "acme", *_files(pebble, tmp_path),
        "-httpaddress", f"127.0.0.1:{pebble.http_port}",
    )  # fmt: skip
    assert added.code == 0, added.err
    csr = openssl_csr(tmp_path, "cli", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256")
    out = tmp_path / "cli.pem"
    enrolled = cli("backend", "enroll", "-name", "test-acme", "-csr", str(csr), "-out", str(out), "-json")
    assert enrolled.code == 0, enrolled.err
    leaf, *chain = x509.load_pem_x509_certificates(out.read_bytes())
    assert chain[-1] == x509.load_pem_x509_certificate(pebble.root_pem().encode())

    serial = json.loads(enrolled.out)["serial"]
    revoked = cli("backend", "revoke", "-name", "test-acme", "-serial", serial, "-reason", "keyCompromise")
    assert revoked.code == 0, revoked.err
    status = pebble.cert_status(leaf.serial_number)
    assert status is not None and (status["Status"], status["Reason"]) == ("Revoked", 1)


def test_backend_add_with_eab_registers_at_a_ca_that_requires_it(
    cli: Run, eab_pebble: Pebble, tmp_path: Path, datadir: Path
) -> None:
    added = cli(
        "backend", "add", "-name", "eab", "-type", "acme", *_files(eab_pebble, tmp_path),
        "-eabkid", EAB_KID, "-eabhmac", EAB_HMAC,
    )  # fmt: skip
    assert added.code == 0, added.err
    assert EAB_HMAC not in added.out + added.err
    assert EAB_HMAC.encode() not in all_bytes(datadir)


def test_wrong_eab_credentials_give_a_clear_error_at_backend_add(
    shell: Run, eab_pebble: Pebble, tmp_path: Path, datadir: Path
) -> None:
    added = shell(
        "backend", "add", "-name", "eab", "-type", "acme", *_files(eab_pebble, tmp_path),
        "-eabkid", EAB_KID, "-eabhmac", WRONG_HMAC,
    )  # fmt: skip
    assert added.code != 0
    assert "registering the ACME account" in added.err
    assert "check -eabkid and -eabhmac" in added.err
    assert "Traceback" not in added.err and WRONG_HMAC not in added.out + added.err
    assert shell("backend", "list").out.count("eab") == 0  # nothing was stored


def test_backend_add_at_a_url_that_is_not_acme_names_the_directory(
    cli: Run, pebble: Pebble, tmp_path: Path
) -> None:
    files = _files(pebble, tmp_path)
    files[1] = f"{pebble.management_url}/roots/0"
    added = cli("backend", "add", "-name", "not-acme", "-type", "acme", *files)
    assert added.code != 0
    assert "-directory" in added.err and "is not an ACME directory" in added.err
