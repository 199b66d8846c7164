"""The connector as a systemd service: `ca-connector.service`, running `ca-connector run` for one data
directory. (The reference product's `sc start|stop|query SectigoCBCS` become `ca-connector service ...`.)

`render_unit` is pure, so the unit text is tested without installing it. Everything else calls
`systemctl`, and first checks that systemd is what runs this host (a container usually has no systemd:
then `service_control` runs the supervised daemon of `supervisor` instead).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from caconnector.connector.store import KEY_FILE_ENV

UNIT_NAME = "ca-connector.service"
UNIT_DIR = Path("/etc/systemd/system")
SYSTEMD_RUNTIME = Path("/run/systemd/system")  # exists exactly when systemd is the running init


class ServiceError(Exception):
    """A service command that cannot be done here; the message says why and what to do instead."""


def _quote(argument: str) -> str:
    """Quote one ExecStart argument for systemd: '%' is a specifier, whitespace and quotes need quoting."""
    escaped = argument.replace("%", "%%")
    if not escaped or any(c in escaped for c in " \t\"'\\;$"):
        escaped = '"' + escaped.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$") + '"'
    return escaped


UNIT_HEADER = "# Written by `ca-connector service install`; `ca-connector service uninstall` removes it."
PACKAGE_UNIT_HEADER = (
    "# Installed by the ca-connector package; `ca-connector service install` enables a copy in "
    "/etc/systemd/system."
)


def render_unit(
    datadir: Path,
    python: str | None = None,
    user: str | None = None,
    key_file: Path | None = None,
    header: str = UNIT_HEADER,
) -> str:
    """The unit file text: the agent for `datadir`, restarted on failure, stopped with SIGTERM.

    `key_file`: the store's key kept outside the data directory ($CA_CONNECTOR_KEY_FILE at install).
    """
    command = [python or sys.executable, "-m", "caconnector.connector.cli", "run", "-datadir", str(datadir)]
    lines = [
        header,
        "[Unit]",
        "Description=ca-connector: runs certificate jobs from ca-manager against local CA backends",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        f"ExecStart={' '.join(_quote(a) for a in command)}",
        # The agent finishes running jobs and says goodbye on SIGTERM; give it time before SIGKILL.
        "KillSignal=SIGTERM",
        "TimeoutStopSec=60",
        "Restart=on-failure",
        "RestartSec=10",
        "Environment=PYTHONUNBUFFERED=1",
        "UMask=0077",
        # Hardening: the agent needs its data directory and the network, nothing else of the system.
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "ProtectSystem=strict",
        f"ReadWritePaths={_quote(str(datadir))}",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectControlGroups=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
    ]
    if key_file is not None:
        lines.append(f"Environment={_quote(f'{KEY_FILE_ENV}={key_file}')}")
    if user:
        lines += [f"User={user}", f"Group={user}"]
    lines += ["", "[Install]", "WantedBy=multi-user.target", ""]
    return "\n".join(lines)


def _owner_name(datadir: Path) -> str | None:
    """The user owning the data directory, unless root (the package makes it `ca-connector`'s)."""
    import pwd  # noqa: PLC0415  (POSIX only; this module is imported on Windows too)

    try:
        uid = datadir.stat().st_uid
        return None if uid == 0 else pwd.getpwuid(uid).pw_name
    except (OSError, KeyError):
        return None


@dataclass(frozen=True)
class ServiceStatus:
    available: bool  # systemd runs this host
    installed: bool
    active: str  # systemctl is-active: active, inactive, failed, ... ("unknown" without systemd)
    enabled: str

    def view(self) -> dict[str, Any]:
        return {
            "systemd": self.available,
            "installed": self.installed,
            "active": self.active,
            "enabled": self.enabled,
        }


class SystemdService:
    """`systemctl` for ca-connector.service. Paths are parameters so tests can point them elsewhere."""

    def __init__(self, unit_dir: Path = UNIT_DIR, runtime_dir: Path = SYSTEMD_RUNTIME) -> None:
        self.unit_dir = unit_dir
        self.runtime_dir = runtime_dir

    @property
    def unit_path(self) -> Path:
        return self.unit_dir / UNIT_NAME

    def available(self) -> bool:
        return self.runtime_dir.is_dir() and shutil.which("systemctl") is not None

    def require(self, *, root: bool = False) -> None:
        if not self.available():
            raise ServiceError(
                f"systemd is not running on this host (no {self.runtime_dir}), so there is no service to "
                "manage; run `ca-connector run` under your own supervisor (a container's entry point, "
                "supervisord, ...)"
            )
        if root and os.geteuid() != 0:
            raise ServiceError("installing or removing the service needs root: run the command with sudo")

    def _systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(["systemctl", *args], capture_output=True, text=True, check=False, timeout=120)
        if check and done.returncode != 0:
            message = (done.stderr or done.stdout).strip() or f"exit code {done.returncode}"
            raise ServiceError(f"systemctl {' '.join(args)} failed: {message}")
        return done

    def install(self, datadir: Path) -> Path:
        """Write the unit, enable it and (re)start it. The agent runs as the data directory's owner."""
        self.require(root=True)
        key_file = os.environ.get(KEY_FILE_ENV)
        text = render_unit(
            datadir.absolute(),
            key_file=Path(key_file).absolute() if key_file else None,
            user=_owner_name(datadir),
        )
        try:
            self.unit_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.unit_path.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.chmod(0o644)
            tmp.replace(self.unit_path)
        except OSError as exc:
            raise ServiceError(f"cannot write {self.unit_path}: {exc.strerror}") from None
        self._systemctl("daemon-reload")
        self._systemctl("enable", UNIT_NAME)
        self._systemctl("restart", UNIT_NAME)
        return self.unit_path

    def uninstall(self) -> bool:
        """Stop, disable and remove the unit. False if it was not installed."""
        self.require(root=True)
        if not self.unit_path.exists():
            return False
        self._systemctl("disable", "--now", UNIT_NAME, check=False)
        try:
            self.unit_path.unlink()
        except OSError as exc:
            raise ServiceError(f"cannot remove {self.unit_path}: {exc.strerror}") from None
        self._systemctl("daemon-reload")
        return True

    def control(self, action: str) -> None:
        """start, stop or restart."""
        self.require()
        if not self.unit_path.exists():
            raise ServiceError("the service is not installed: run ca-connector service install")
        self._systemctl(action, UNIT_NAME)

    def status(self) -> ServiceStatus:
        if not self.available():
            return ServiceStatus(available=False, installed=False, active="unknown", enabled="unknown")
        active = self._systemctl("is-active", UNIT_NAME, check=False).stdout.strip() or "unknown"
        enabled = self._systemctl("is-enabled", UNIT_NAME, check=False).stdout.strip() or "unknown"
        return ServiceStatus(
            available=True, installed=self.unit_path.exists(), active=active, enabled=enabled
        )

    def show(self, *properties: str) -> dict[str, str]:
        """`systemctl show` of the unit's properties (MainPID, ActiveEnterTimestamp, ...)."""
        done = self._systemctl("show", UNIT_NAME, *(f"--property={p}" for p in properties), check=False)
        pairs = (line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
        return {key: value for key, value in pairs}  # noqa: C416 - pairs of a split
