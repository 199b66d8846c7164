"""Helpers shared by the tests: real material made the way an operator makes it."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# The console script installed beside the interpreter running the tests (the project's .venv).
EXECUTABLE = str(Path(sys.executable).parent / "ca-connector")


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def openssl_csr(
    directory: Path,
    name: str,
    *key_args: str,
    subj: str = "/CN=app.example.test",
    san: str = "DNS:app.example.test",
) -> Path:
    """A key and CSR made with `openssl req`, as an operator would."""
    csr = directory / f"{name}.csr"
    subprocess.run(
        [
            "openssl",
            "req",
            "-new",
            "-nodes",
            *key_args,
            "-keyout",
            str(directory / f"{name}.key"),
            "-subj",
            subj,
            "-addext",
            f"subjectAltName={san}",
            "-out",
            str(csr),
        ],
        check=True,
        capture_output=True,
    )
    return csr


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under root with its content hash, to prove a failed command changed nothing."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def all_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())
