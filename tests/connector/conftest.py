"""Fixtures for the connector side: a data directory, the CLI in-process, a fake manager over HTTP or
HTTPS (trustme), and a fake proxy."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from tests.connector.peers import FakeManager, FakeProxy


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The machine's proxy and CA settings must not change what the connector does (it ignores them).
    for name in ("CA_CONNECTOR_KEY_FILE", "CA_CONNECTOR_HOME"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "manager-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    return context


@pytest.fixture
def manager() -> Iterator[FakeManager]:
    with FakeManager() as peer:
        yield peer


@pytest.fixture
def tls_manager(server_tls: ssl.SSLContext) -> Iterator[FakeManager]:
    with FakeManager(server_tls) as peer:
        yield peer


@pytest.fixture
def proxy() -> Iterator[FakeProxy]:
    with FakeProxy(credentials=("us@er:x", "p%ss/w:rd@1 é")) as peer:
        yield peer
