"""Fixtures shared across suites: driving `ca-connector` in process (tests/connector, tests/integration), and
the CA peers the backend tests run against (moto for acmpca, the fake CA Service for gcpcas, pebble for
acme)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from caconnector.connector.cli import main
from tests.support import Result

if TYPE_CHECKING:
    # The peers are imported when a test asks for one: moto and the Google libraries take seconds to load,
    # and the manager's tests need neither.
    from tests.peers.gcpcas_fake import FakeCAS
    from tests.peers.moto_server import MotoCA, MotoPeer
    from tests.peers.pebble import Pebble


@pytest.fixture
def datadir(tmp_path: Path) -> Path:
    """A connector data directory that does not exist yet (what a fresh install has)."""
    return tmp_path / "connector-data"


@pytest.fixture
def cli(datadir: Path, capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run `ca-connector ARGS -datadir D` in this process and capture its exit code and output."""

    def run(*args: str) -> Result:
        capsys.readouterr()
        code = main([*args, "-datadir", str(datadir)])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def moto() -> MotoPeer:
    """moto's server, the AWS peer of the acmpca tests (one per test process: it takes a second to start)."""
    from tests.peers.moto_server import moto_peer  # noqa: PLC0415  (lazy: see TYPE_CHECKING above)

    return moto_peer()


@pytest.fixture(scope="session")
def pebble() -> Pebble:
    """pebble with pebble-challtestsrv, the ACME peer of the acme tests (one per test process)."""
    from tests.peers.pebble import pebble_peer  # noqa: PLC0415  (lazy: see TYPE_CHECKING above)

    return pebble_peer()


@pytest.fixture
def root(moto: MotoPeer) -> MotoCA:
    """An empty AWS account on moto holding one ACTIVE root CA."""
    moto.reset()
    return moto.active_ca()


@pytest.fixture
def fake() -> FakeCAS:
    """The fake CA Service, the Google peer of the gcpcas tests, emptied (no pools) for this test."""
    from tests.peers.gcpcas_fake import gcpcas_peer  # noqa: PLC0415  (lazy: see TYPE_CHECKING above)

    peer = gcpcas_peer()
    peer.reset()
    return peer
