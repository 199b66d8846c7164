"""The Debian package on this machine, as the reference document's install, update and uninstall go:
build it (scripts/build-deb), `dpkg -i`, `ca-connector install -silent` against a live manager, the
connector Connected while the supervised daemon runs the agent, the agent killed and started again,
`service stop` / `status` / `start`, `ca-connector update` to the newer package the manager serves with
the backends and the registration kept, `dpkg -r` keeping the data directory, and `dpkg -P` leaving
nothing behind.

It installs into the real system (/opt/ca-connector, /usr/bin/ca-connector, /var/lib/ca-connector, the
`ca-connector` user), so it runs only as root, and purges the package whatever happens.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.conftest import Manager, available_backend
from tests.e2e.processes import clean_env, run, wait_until

from caconnector.connector.service import SystemdService
from caconnector.connector.supervisor import alive

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = "/usr/bin/ca-connector"
DATADIR = Path("/var/lib/ca-connector")
ACCOUNT = "ca-connector"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="installs a Debian package into the system: needs root"),
    pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb is not installed (dpkg-dev)"),
    pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="the package needs Debian's python3"),
    pytest.mark.skipif(
        SystemdService().available(), reason="this flow tests the supervised daemon; systemd runs here"
    ),
]


@dataclass(frozen=True)
class Debs:
    old: Path
    old_version: str
    new: Path
    new_version: str


def _build(*args: str) -> Path:
    done = subprocess.run(
        [str(ROOT / "scripts" / "build-deb"), *args], capture_output=True, text=True, check=False, timeout=900
    )
    assert done.returncode == 0, done.stderr
    return ROOT / done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def debs() -> Debs:
    """Two builds: the project's version (no -version: the default) and one a step newer."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    old = _build("-compress", "none")  # the default version; uncompressed: built and installed faster
    newer = f"{project}.1"
    new = _build("-version", newer, "-compress", "none")
    assert old.name.startswith(f"ca-connector_{project}_") and old.suffix == ".deb"
    return Debs(old, project, new, newer)


def _purge() -> None:
    subprocess.run(["dpkg", "-P", "ca-connector"], capture_output=True, check=False, timeout=300)


@pytest.fixture
def installed_system() -> Iterator[None]:
    """A system without the package before and after the test, even when it fails midway."""
    _purge()
    try:
        yield
    finally:
        pid_file = DATADIR / "supervisor.pid"
        pid = json.loads(pid_file.read_text())["pid"] if pid_file.exists() else None
        _purge()
        if pid is not None and Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)


def _env() -> dict[str, str]:
    env = clean_env()
    for name in ("CA_CONNECTOR_HOME", "CA_CONNECTOR_KEY_FILE"):
        env.pop(name, None)
    return env


def connector(*args: str, timeout: float = 120) -> Any:
    done = run([PROGRAM, *args, "-json"], _env(), timeout=timeout)
    assert done.returncode == 0, f"ca-connector {' '.join(args)}: {done.stderr}"
    return json.loads(done.stdout)


def _uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")


def _dpkg_install(deb: Path) -> str:
    # unsafe-io: no fsync per file (thousands of them); `update` itself runs a plain dpkg -i.
    done = subprocess.run(
        ["dpkg", "--force-unsafe-io", "-i", str(deb)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_install_run_supervise_update_and_purge(debs: Debs, manager: Manager, installed_system: None) -> None:
    # 1. The package: the program, its user, the data directory with logs/.
    _dpkg_install(debs.old)
    assert connector("version")["version"] == debs.old_version
    account = pwd.getpwnam(ACCOUNT)
    assert DATADIR.stat().st_uid == account.pw_uid and (DATADIR / "logs").is_dir()
    unit = Path("/lib/systemd/system/ca-connector.service")
    assert "User=ca-connector\n" in unit.read_text()
    if shutil.which("systemd-analyze"):  # installed (not running) here: the packaged unit is valid
        verified = subprocess.run(
            ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
        )
        assert verified.returncode == 0 and "ca-connector.service" not in verified.stderr, verified.stderr

    # 2. The silent install: registered, the service started, where configuration and logs live.
    added = manager.cli("connector", "add", "-name", "debhost")
    token = added["token"]
    installed = connector("install", "-silent", "-token", token, "-manager", manager.url,
                          "-cacert", str(manager.tls.ca_pem))  # fmt: skip
    assert installed["service"]["service"] == "daemon" and installed["service"]["running"]
    assert installed["config"] == str(DATADIR / "config.toml")
    assert installed["logs"] == str(DATADIR / "logs")
    connector_id = installed["registration"]["connector_id"]
    wait_until(lambda: manager.connector(connector_id)["status"] == "Connected", 30, what="Connected")
    wait_until(lambda: connector("service", "status")["last_contact"], 30, what="the agent's first contact")

    status = connector("service", "status")
    assert status["running"] is True and isinstance(status["pid"], int)
    assert _uid_of(status["pid"]) == account.pw_uid  # the agent runs as the package's user
    assert status["since"] and status["last_contact"]

    # A backend added as root is handed to the service's user and reported to the manager.
    assert connector("backend", "add", "-name", "LocalCA", "-type", "local")["name"] == "LocalCA"
    with manager.api() as api:
        available_backend(api, connector_id, "LocalCA")

    # 3. The agent killed: the supervisor starts it again within seconds.
    os.kill(status["pid"], signal.SIGKILL)

    def restarted() -> bool:
        now = connector("service", "status")
        return bool(now["running"] and now["pid"] not in (None, status["pid"]))

    took = wait_until(restarted, 15, interval=0.3, what="the supervisor to start the agent again")
    assert took < 15
    assert connector("service", "status")["restarts"] == 1

    # 4. stop / status / start.
    connector("service", "stop")
    assert connector("status")["service"]["running"] is False
    assert connector("service", "status")["running"] is False
    assert not (DATADIR / "supervisor.pid").exists()
    assert connector("service", "start")["running"] is True
    wait_until(lambda: manager.connector(connector_id)["status"] == "Connected", 30, what="Connected again")

    # 5. The manager serves the newer package; the connector is outdated until `update` installs it.
    downloads = manager.datadir / "downloads"
    downloads.mkdir(exist_ok=True)
    shutil.copy(debs.new, downloads)  # which of several is newest: tests/manager/test_downloads.py
    wait_until(lambda: manager.connector(connector_id)["outdated"] is True, 10, what="outdated")
    assert connector("update", "-check")["offered"] == debs.new_version
    updated = connector("update", timeout=300)
    assert updated == updated | {"updated": True, "current": debs.old_version, "offered": debs.new_version}
    assert connector("version")["version"] == debs.new_version
    after = connector("status")
    assert after["connector_id"] == connector_id and after["service"]["running"] is True
    assert [b["name"] for b in after["backends"]] == ["LocalCA"]

    def reports_new_version() -> bool:
        seen = manager.connector(connector_id)
        return bool(seen["status"] == "Connected" and seen["version"] == debs.new_version)

    wait_until(reports_new_version, 30, what="the manager to show the new version")
    assert manager.connector(connector_id)["outdated"] is False
    assert connector("update")["updated"] is False  # up to date now

    # 6. The logs name no secret used here.
    logs = b"".join(p.read_bytes() for p in (DATADIR / "logs").iterdir() if p.is_file())
    assert b"connected to" in logs
    for secret in (token, manager.api_key):
        assert secret.encode() not in logs

    # 7. Remove: the program and the service go, the data directory stays; installing again finds it.
    supervisor_pid = connector("service", "status")["supervisor_pid"]
    done = subprocess.run(["dpkg", "-r", "ca-connector"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert not Path(PROGRAM).exists() and not Path("/opt/ca-connector").exists()
    assert not alive(supervisor_pid)
    assert (DATADIR / "config.toml").exists() and pwd.getpwnam(ACCOUNT)
    _dpkg_install(debs.new)
    assert connector("status")["connector_id"] == connector_id
    assert connector("service", "start")["running"] is True
    wait_until(lambda: connector("service", "status")["agent_state"] == "connected", 30, what="connected")

    # 8. Purge: no program, no process, no pid file, no data directory, no user.
    supervisor_pid = connector("service", "status")["supervisor_pid"]
    done = subprocess.run(["dpkg", "-P", "ca-connector"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert not Path(PROGRAM).exists() and not Path("/opt/ca-connector").exists()
    assert not DATADIR.exists()
    assert not alive(supervisor_pid)
    with pytest.raises(KeyError):
        pwd.getpwnam(ACCOUNT)
