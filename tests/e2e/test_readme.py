"""The README's commands, run as written: the block that keeps the quickstart serving (on a free port
instead of 8443, the one edit) and the REST session after it, with bash, curl, jq and openssl, in a
directory laid out as the repository is (`.venv/`, the demo's `quickstart-out/`). Every URL the
quickstart prints, and the one `connector add` puts in its install command, must answer."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.e2e.processes import BIN, clean_env, run
from tests.ports import free_port

REPOSITORY = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```bash test:(?P<name>[\w-]+)\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)


def readme_blocks() -> dict[str, str]:
    """The fenced blocks marked ```bash test:NAME, by name."""
    blocks = {m["name"]: m["body"] for m in FENCE.finditer((REPOSITORY / "README.md").read_text())}
    assert set(blocks) == {"serve", "session"}, f"the README's tested blocks changed: {sorted(blocks)}"
    return blocks


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A stand-in for the repository's top: the same .venv, a fresh quickstart-out."""
    (tmp_path / ".venv").symlink_to(BIN.parent)
    return tmp_path


@pytest.fixture
def quickstart(workdir: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """The README's `serve` block, on a free port; yields the process and what it printed."""
    command = readme_blocks()["serve"].strip()
    assert "-port 8443" in command, command
    command = command.replace("-port 8443", f"-port {free_port()}")
    process = subprocess.Popen(
        ["bash", "-c", f"exec {command}"],
        cwd=workdir,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    printed: list[str] = []
    try:
        deadline = time.monotonic() + 240
        assert process.stdout is not None
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break  # it exited: the assertion below shows what it said
            printed.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        assert printed and printed[-1].startswith("Press Ctrl-C"), "".join(printed)
        yield process, "".join(printed)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


@pytest.mark.slow
def test_the_readme_session_runs_as_written(
    quickstart: tuple[subprocess.Popen[str], str], workdir: Path
) -> None:
    process, _ = quickstart
    session = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", readme_blocks()["session"]],
        cwd=workdir,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert session.returncode == 0, session.stdout + session.stderr
    lines = session.stdout.splitlines()
    assert any(line.startswith("default-server ") for line in lines), session.stdout
    assert "Issued" in lines, session.stdout
    assert "web.pem: OK" in lines, session.stdout
    assert "Revoked done" in lines or "Issued leased" in lines or "Issued queued" in lines, session.stdout
    assert lines[-1] == "Revoked superseded", session.stdout
    assert process.poll() is None


@pytest.mark.slow
def test_every_printed_url_answers(quickstart: tuple[subprocess.Popen[str], str], workdir: Path) -> None:
    _, printed = quickstart
    urls = set(re.findall(r"https?://[^\s)]+", printed))
    base = re.search(r"REST API:\s+(http://\S+)/api/v1", printed)
    assert base is not None, printed
    added = run(
        [
            str(BIN / "ca-manager"),
            "connector",
            "add",
            "-name",
            "dc2",
            "-datadir",
            str(workdir / "quickstart-out"),
        ],
        clean_env(),
    )
    assert added.returncode == 0, added.stderr
    # The install command names the manager as connectors reach it: the port quickstart serves.
    assert f"-manager {base[1]}" in added.stdout, added.stdout
    urls |= set(re.findall(r"https?://[^\s)]+", added.stdout))
    assert {f"{base[1]}/api/v1", f"{base[1]}/api/v1/openapi.json", f"{base[1]}/api/v1/docs", base[1]} <= urls
    for url in sorted(urls):
        status = httpx.get(url, trust_env=False, timeout=10).status_code
        assert 200 <= status < 400, (url, status)
