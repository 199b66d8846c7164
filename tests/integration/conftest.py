"""Fixtures for driving the real `ca-connector` command: in-process for speed, as a subprocess where the
acceptance criteria speak of a user at a shell."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.support import EXECUTABLE, Result


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
