"""The browser tests' shared parts: one live `ca-manager serve` over TLS, with an admin and an auditor,
and one headless Debian chromium driven by Playwright (never a browser Playwright downloads), for the
whole module. Screenshots go to test-artifacts/ui/ (gitignored)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, ViewportSize, sync_playwright
from tests.e2e.processes import (
    BIN,
    Process,
    TLSFiles,
    clean_env,
    healthy,
    make_tls,
    run,
    wait_until,
)
from tests.ports import free_port

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")  # scripts/bootstrap installs Debian's
AXE = REPO / ".venv" / "node" / "node_modules" / "axe-core" / "axe.min.js"  # scripts/bootstrap, from npm
ARTIFACTS = REPO / "test-artifacts" / "ui"
DESKTOP = ViewportSize(width=1280, height=800)
PHONE = ViewportSize(width=390, height=844)


@dataclass
class LiveManager:
    url: str
    env: dict[str, str]
    tls: TLSFiles
    passwords: dict[str, str]
    directory: Path
    process: Process

    def cli(self, *args: str) -> Any:
        done = run([str(BIN / "ca-manager"), *args, "-json"], self.env)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveManager]:
    directory = tmp_path_factory.mktemp("ui")
    tls = make_tls(directory / "tls")
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    env = clean_env(
        CA_MANAGER_HOME=str(directory / "manager"),
        CA_MANAGER_PUBLIC_URL=url,
        CA_MANAGER_POLL_WAIT_SECONDS="3",
        CA_MANAGER_HEARTBEAT_GRACE_SECONDS="2",
    )
    passwords = {}
    for username, role in (("admin", "admin"), ("audrey", "auditor")):
        made = run(
            [str(BIN / "ca-manager"), "admin", "create", "-username", username, "-role", role, "-json"], env
        )
        assert made.returncode == 0, made.stderr
        passwords[username] = json.loads(made.stdout)["password"]
    argv = [str(BIN / "ca-manager"), "serve", "-port", str(port),
            "-tls-cert", str(tls.cert_pem), "-tls-key", str(tls.key_pem)]  # fmt: skip
    process = Process("manager", argv, directory / "manager.log", env).start()
    try:
        wait_until(lambda: healthy(url, tls.ca_pem), 30, what="the manager to serve /healthz")
        yield LiveManager(url, env, tls, passwords, directory, process)
    finally:
        process.stop()
        log = process.log()
        assert "Traceback" not in log, log[-4000:]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), "Debian's chromium is missing: run scripts/bootstrap"
    assert AXE.exists(), "axe-core is missing: run scripts/bootstrap"
    with sync_playwright() as playwright:
        # --no-sandbox: the tests run as root in CI, where chromium's sandbox refuses to start.
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        yield launched
        launched.close()


def accessibility_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now. Evaluated through the
    DevTools protocol, so the page's Content-Security-Policy (no inline scripts) stays in force."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text())
    found: list[dict[str, Any]] = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ['violations']})).violations
            .filter(v => v.impact === 'serious' || v.impact === 'critical')
            .map(v => ({id: v.id, impact: v.impact, help: v.help,
                        nodes: v.nodes.slice(0, 5).map(n => n.target.join(' '))}))"""
    )
    return found


def capture(page: Page, name: str) -> None:
    """Full-page screenshots at desktop and phone width, each checked with axe-core first."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for width, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(viewport)
        violations = accessibility_violations(page)
        assert violations == [], f"{name} at {width} width: {json.dumps(violations, indent=1)}"
        page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)
    page.set_viewport_size(DESKTOP)
