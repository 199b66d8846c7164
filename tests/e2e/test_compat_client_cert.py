"""Client-certificate login to the compatible REST API where the manager terminates TLS: a real
`ca-manager serve` with CA_MANAGER_COMPAT_CLIENT_CA_FILE, and the cert_manager client's cert_auth."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import trustme
from cert_manager import SSL, Client, Organization
from tests.e2e.processes import (
    BIN,
    TLSFiles,
    clean_env,
    make_tls,
    run,
    serving_manager,
)
from tests.ports import free_port

pytestmark = pytest.mark.slow


@dataclass
class Served:
    url: str
    tls: TLSFiles
    client_ca: trustme.CA
    directory: Path


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    tls = make_tls(tmp_path / "tls")
    client_ca = trustme.CA()
    client_ca.cert_pem.write_to_path(str(tmp_path / "client-ca.pem"))
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    env = clean_env(
        CA_MANAGER_HOME=str(tmp_path / "manager"),
        CA_MANAGER_PUBLIC_URL=url,
        CA_MANAGER_COMPAT_CLIENT_CA_FILE=str(tmp_path / "client-ca.pem"),
    )
    manager = str(BIN / "ca-manager")
    assert run([manager, "admin", "create", "-username", "scripts", "-role", "operator"], env).returncode == 0
    with serving_manager(port, tls, env, tmp_path / "manager.log"):
        yield Served(url, tls, client_ca, tmp_path)


def _certificate(served: Served, ca: trustme.CA, common_name: str) -> tuple[str, str]:
    issued = ca.issue_cert(f"{common_name}.example.test", common_name=common_name)
    cert, key = served.directory / f"{common_name}.pem", served.directory / f"{common_name}.key"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    return str(cert), str(key)


def _client(served: Served, username: str, cert: tuple[str, str], root: str = "/private/api") -> Any:
    session = requests.Session()
    session.trust_env = False
    session.verify = str(served.tls.ca_pem)
    return Client(
        base_url=f"{served.url}{root}", login_uri="ca-manager", username=username, cert_auth=True,
        user_crt_file=cert[0], user_key_file=cert[1], session=session,
    )  # fmt: skip


def test_a_client_certificate_logs_in_the_user_it_names(served: Served) -> None:
    scripts = _certificate(served, served.client_ca, "scripts")
    client = _client(served, "scripts", scripts)
    assert [o["name"] for o in Organization(client).all()] == ["Default Organization"]
    assert SSL(client).types == {}
    # Under /api as well, as the password login is under /private/api.
    assert SSL(_client(served, "scripts", scripts, root="/api")).custom_fields == []

    # The certificate names another user than the login: refused.
    with pytest.raises(requests.HTTPError) as refused:
        Organization(_client(served, "admin", scripts))
    assert refused.value.response is not None
    assert (refused.value.response.status_code, refused.value.response.json()["code"]) == (401, -16)
    # A certificate from a CA not configured: the TLS handshake refuses it.
    stranger = _certificate(served, trustme.CA(), "scripts-elsewhere")
    with pytest.raises(requests.exceptions.ConnectionError):  # SSLError, or a reset under TLS 1.3
        Organization(_client(served, "scripts", stranger))
    # No certificate and no password: 401, and the rest of the manager is unchanged without a certificate.
    session = requests.Session()
    session.trust_env = False
    session.verify = str(served.tls.ca_pem)
    bare = session.get(
        f"{served.url}/api/ssl/v1/types", headers={"login": "scripts", "customerUri": "ca-manager"}
    )
    assert (bare.status_code, bare.json()["code"]) == (401, -16)
    assert session.get(f"{served.url}/healthz").status_code == 200
