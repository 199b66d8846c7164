"""The project's own checks run as tests, so CI fails on a lint, type or import-boundary error."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "caconnector"

# Which of our top-level modules and packages each one may import (architecture.md section 2). Every
# module and package directly under src/caconnector/ must be listed: an unlisted one fails the check, so
# a new module cannot slip past it. The root `caconnector` itself (its `__version__`) is open to all.
ALLOWED: dict[str, set[str]] = {
    "__init__": set(),
    "cliparse": set(),
    "cliexit": set(),
    "pki": set(),
    "protocol": {"pki"},
    "backends": {"pki", "protocol"},
    "connector": {"pki", "protocol", "backends", "cliparse", "cliexit"},
    "manager": {"pki", "protocol", "cliparse", "cliexit"},
    # The shared test builders (issue 11); listed whether or not the module exists yet.
    "testing": {"pki", "protocol", "backends"},
}
# The manager must never see a CA SDK either.
SDK_MODULES = {"boto3", "botocore", "google", "impacket", "certsrv", "acme", "josepy"}


def _module_name(path: Path, root: Path) -> list[str]:
    """`caconnector.manager.api.backends` for root/manager/api/backends.py, as parts; a package's
    __init__.py is the package itself."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return parts[:-1] if parts[-1] == "__init__" else parts


def _imports(path: Path, root: Path) -> set[str]:
    """Every module `path` imports, relative imports resolved against its place under `root`. For
    `from X import a`, `X.a` is counted too: `a` may be a module (`from caconnector import cliexit`)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = _module_name(path, root)
    package = here if path.name == "__init__.py" else here[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            if node.module:
                found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names if alias.name != "*")
    return found


def _top_level(root: Path) -> dict[str, list[Path]]:
    """Each top-level module or package under `root`, with its source files."""
    found: dict[str, list[Path]] = {}
    for entry in sorted(root.iterdir()):
        if entry.is_file() and entry.suffix == ".py":
            found[entry.stem] = [entry]
        elif entry.is_dir() and entry.name != "__pycache__" and any(entry.rglob("*.py")):
            found[entry.name] = sorted(entry.rglob("*.py"))
    return found


def _violations(root: Path = PACKAGE) -> list[str]:
    problems = []
    for name, paths in _top_level(root).items():
        if name not in ALLOWED:
            problems.append(f"{root.name}/{name} is not in test_quality.ALLOWED: add its import rule")
            continue
        for path in paths:
            shown = f"{root.name}/{path.relative_to(root)}"
            # One report per forbidden module or SDK a file reaches, naming the shortest import of it
            # (`from X import a` is counted as X and X.a).
            forbidden: dict[str, str] = {}
            for imported in sorted(_imports(path, root), key=len):
                parts = imported.split(".")
                target = parts[1] if parts[0] == root.name and len(parts) > 1 else None
                # A target not in the table is an attribute of the root package (`__version__`); an
                # unlisted module is reported above on its own.
                if target in ALLOWED and target not in {name, *ALLOWED[name]}:
                    forbidden.setdefault(target, f"{shown} imports {imported}")
                if name == "manager" and parts[0] in SDK_MODULES:
                    forbidden.setdefault(parts[0], f"{shown} imports the CA SDK {imported}")
            problems.extend(forbidden.values())
    return problems


def test_import_boundaries() -> None:
    assert _violations() == []


def _tree(root: Path, files: dict[str, str]) -> Path:
    package = root / "caconnector"
    for name, text in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return package


CLEAN = {
    "__init__.py": "__version__ = '0'\n",
    "cliexit.py": "",
    "pki/__init__.py": "",
    "pki/csr.py": "import cryptography\n",
    "protocol/__init__.py": "",
    "protocol/messages.py": "from caconnector.pki import csr\nfrom . import signing\n",
    "protocol/signing.py": "from ..pki.csr import load\n",
    "backends/__init__.py": "",
    "backends/local/__init__.py": "from .backend import LocalBackend\nfrom ...protocol import messages\n",
    "backends/local/backend.py": "import boto3\nfrom caconnector.pki import csr\n",
    "manager/__init__.py": "",
    "manager/cli.py": "from caconnector import __version__, cliexit\nfrom .api import backends\n",
    "manager/api/__init__.py": "",
    "manager/api/backends.py": "from caconnector.protocol.messages import Job\nfrom ..cli import main\n",
}


def test_boundary_check_passes_a_clean_tree(tmp_path: Path) -> None:
    assert _violations(_tree(tmp_path, CLEAN)) == []


@pytest.mark.parametrize(
    ("path", "text", "reported"),
    [
        (
            "manager/api/certificates.py",
            "from caconnector.backends.local import LocalBackendType\n",
            "caconnector/manager/api/certificates.py imports caconnector.backends.local",
        ),
        ("pki/chain.py", "import caconnector.protocol.messages\n", "imports caconnector.protocol.messages"),
        ("pki/chain.py", "from caconnector import protocol\n", "imports caconnector.protocol"),
        # Relative imports count: two levels up from manager/api/ is the root, then into backends.
        ("manager/api/cas.py", "from ...backends import registry\n", "imports caconnector.backends"),
        ("manager/api/cas.py", "from ... import backends\n", "imports caconnector.backends"),
        ("manager/services.py", "import boto3.session\n", "imports the CA SDK boto3.session"),
        ("manager/gcp.py", "from google.cloud import security\n", "imports the CA SDK google.cloud"),
        ("protocol/text.py", "from caconnector.testing import build\n", "imports caconnector.testing"),
        ("reports.py", "", "caconnector/reports is not in test_quality.ALLOWED"),
        ("webui/__init__.py", "", "caconnector/webui is not in test_quality.ALLOWED"),
    ],
)
def test_boundary_check_reports_a_violation(tmp_path: Path, path: str, text: str, reported: str) -> None:
    problems = _violations(_tree(tmp_path, {**CLEAN, path: text}))
    assert len(problems) == 1, problems
    assert reported in problems[0]


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
    # Without paths: mypy checks the files pyproject.toml lists (src and tests).
    result = _run(sys.executable, "-m", "mypy")
    assert result.returncode == 0, result.stdout + result.stderr
