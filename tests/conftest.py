"""Fixtures every suite that drives `ca-connector` in process shares (tests/connector, tests/integration)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from caconnector.connector.cli import main
from tests.support import Result


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
