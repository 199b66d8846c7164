"""The project's own checks run as tests, so CI fails on a lint, type or import-boundary error."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "caconnector"

# Which of our packages each package may import (architecture.md section 2).
ALLOWED = {
    "cliparse": set(),
    "cliexit": set(),
    "pki": set(),
    "protocol": {"pki"},
    "backends": {"pki", "protocol"},
    "connector": {"pki", "protocol", "backends", "cliparse", "cliexit"},
    "manager": {"pki", "protocol", "cliparse", "cliexit"},
}
# The manager must never see a CA SDK either.
SDK_MODULES = {"boto3", "botocore", "google", "impacket", "certsrv", "acme", "josepy"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _violations() -> list[str]:
    problems = []
    for package, allowed in ALLOWED.items():
        module = PACKAGE / f"{package}.py"
        paths = [module] if module.exists() else sorted((PACKAGE / package).rglob("*.py"))
        for path in paths:
            for imported in _imports(path):
                parts = imported.split(".")
                ours = parts[0] == "caconnector" and len(parts) > 1 and parts[1] != package
                if ours and parts[1] not in allowed:
                    problems.append(f"{path.relative_to(ROOT)} imports {imported}")
                if package == "manager" and parts[0] in SDK_MODULES:
                    problems.append(f"{path.relative_to(ROOT)} imports the CA SDK {imported}")
    return problems


def test_import_boundaries() -> None:
    assert _violations() == []


def test_boundary_check_catches_a_violation(tmp_path: Path) -> None:
    # The check itself must be able to fail: a manager module importing a backend is reported.
    bad = tmp_path / "bad.py"
    bad.write_text("from caconnector.backends.local import LocalBackendType\nimport boto3\n")
    assert {"caconnector.backends.local", "boto3"} <= _imports(bad)


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)


@pytest.mark.slow
def test_ruff_check() -> None:
    result = _run(
        sys.executable, "-m", "ruff", "check", "--output-format", "concise", "src", "tests", "bench"
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_ruff_format() -> None:
    result = _run(sys.executable, "-m", "ruff", "format", "--check", "src", "tests", "bench")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_mypy_strict() -> None:
    result = _run(sys.executable, "-m", "mypy", "src")
    assert result.returncode == 0, result.stdout + result.stderr
