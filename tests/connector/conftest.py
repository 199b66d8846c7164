"""Fixtures for the connector side: a data directory, the CLI in-process, a fake manager over HTTP or
HTTPS (trustme), and a fake proxy."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme
from tests.connector.peers import FakeManager, FakeProxy
from tests.support import Result

from caconnector.connector.cli import main


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The machine's proxy and CA settings must not change what the connector does (it ignores them).
    for name in ("CA_CONNECTOR_KEY_FILE", "CA_CONNECTOR_HOME"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def datadir(tmp_path: Path) -> Path:
    return tmp_path / "connector-data"


@pytest.fixture
def cli(datadir: Path, capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run `ca-connector ARGS -datadir D` in this process; capture its exit code and output."""

    def run(*args: str) -> Result:
        capsys.readouterr()
        code = main([*args, "-datadir", str(datadir)])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


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
