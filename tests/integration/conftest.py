"""Fixtures for driving the real `ca-connector` command: in-process for speed, as a subprocess where the
acceptance criteria speak of a user at a shell."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.support import EXECUTABLE, Result

from caconnector.connector.cli import main


@pytest.fixture
def datadir(tmp_path: Path) -> Path:
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


@pytest.fixture
def shell(datadir: Path) -> Callable[..., Result]:
    """Run the installed `ca-connector` executable as a user would, with CA_CONNECTOR_HOME set."""

    def run(*args: str, cwd: Path | None = None) -> Result:
        env = {**os.environ, "CA_CONNECTOR_HOME": str(datadir)}
        done = subprocess.run(
            [EXECUTABLE, *args], capture_output=True, text=True, env=env, cwd=cwd, check=False, timeout=120
        )
        return Result(done.returncode, done.stdout, done.stderr)

    return run
