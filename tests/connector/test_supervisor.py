"""The supervised daemon (no systemd here): `service start|stop|restart|status` through the real CLI in
its own processes, the agent started again after it is killed, and `uninstall -purge` stopping it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from caconnector.connector.service import SystemdService
from caconnector.connector.supervisor import PID_FILE, Supervisor, alive

pytestmark = pytest.mark.skipif(SystemdService().available(), reason="systemd runs here: the unit is used")


def _cli(datadir: Path, *args: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "caconnector.connector.cli", *args, "-datadir", str(datadir), "-json"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _wait(predicate: Any, timeout: float) -> float:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, "timed out"
        time.sleep(0.1)
    return time.monotonic() - started


@pytest.fixture
def datadir(tmp_path: Path) -> Iterator[Path]:
    datadir = tmp_path / "data"
    try:
        yield datadir
    finally:
        status = Supervisor(datadir).status()
        if status.running and status.pid:
            os.kill(status.pid, signal.SIGKILL)
        if status.agent_pid:
            os.kill(status.agent_pid, signal.SIGKILL)


def test_start_kill_restart_stop(datadir: Path) -> None:
    assert _cli(datadir, "service", "status")["running"] is False
    started = _cli(datadir, "service", "start")
    assert started["running"] is True and started["service"] == "daemon"
    agent_pid, supervisor_pid = started["pid"], started["supervisor_pid"]
    assert agent_pid != supervisor_pid and started["since"]
    record = json.loads((datadir / PID_FILE).read_text())
    assert (record["pid"], record["agent_pid"]) == (supervisor_pid, agent_pid)
    # The supervisor is detached: another session than this test's, and not its leader (no terminal).
    assert os.getsid(supervisor_pid) not in (os.getsid(0), supervisor_pid)
    assert _cli(datadir, "service", "start")["supervisor_pid"] == supervisor_pid  # already running

    os.kill(agent_pid, signal.SIGKILL)
    took = _wait(lambda: Supervisor(datadir).status().agent_pid not in (None, agent_pid), 10)
    assert took < 10
    status = _cli(datadir, "service", "status")
    assert status["restarts"] == 1 and status["supervisor_pid"] == supervisor_pid

    restarted = _cli(datadir, "service", "restart")
    assert restarted["running"] and restarted["supervisor_pid"] != supervisor_pid

    stopped = _cli(datadir, "service", "stop")
    assert stopped["running"] is False
    assert not (datadir / PID_FILE).exists()
    assert not alive(restarted["supervisor_pid"]) and not alive(restarted["pid"])
    # The agent was stopped, not killed: it wrote its last state.
    assert _cli(datadir, "status")["agent"]["state"] == "stopped"


def test_uninstall_purge_stops_the_daemon_first(datadir: Path) -> None:
    started = _cli(datadir, "service", "start")
    done = _cli(datadir, "uninstall", "-purge", "-yes")
    assert done == {"service_removed": True, "purged": True}
    assert not datadir.exists()
    assert not alive(started["supervisor_pid"])


def _hook(action: str, datadir: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "caconnector.connector.package_hooks", action, str(datadir)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_an_upgrade_stops_the_service_and_starts_it_again(datadir: Path) -> None:
    first = _cli(datadir, "service", "start")
    assert "stopped for the upgrade" in _hook("before-upgrade", datadir)
    assert not alive(first["supervisor_pid"]) and (datadir / ".restart-after-upgrade").exists()
    assert "started again" in _hook("configure", datadir)
    again = _cli(datadir, "service", "status")
    assert again["running"] and again["supervisor_pid"] != first["supervisor_pid"]
    assert not (datadir / ".restart-after-upgrade").exists()
    assert "the supervised daemon was stopped" in _hook("before-remove", datadir)
    assert _cli(datadir, "service", "status")["running"] is False
    # Not running before the upgrade: not started after it.
    assert "not running" in _hook("before-upgrade", datadir)
    assert "started again" not in _hook("configure", datadir)
