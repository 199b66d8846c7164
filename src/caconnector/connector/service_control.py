"""`ca-connector service install|uninstall|start|stop|restart|status`: one set of commands whatever runs
the agent. systemd's unit where systemd is the running init; elsewhere (containers, this project's CI) the
supervised daemon of `supervisor`. `status` answers like the reference document's `sc query`: running or
stopped, the pid, since when, and the last contact with the manager (from the agent's state file).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from caconnector.connector.agent_state import read_state
from caconnector.connector.service import UNIT_NAME, ServiceError, SystemdService
from caconnector.connector.supervisor import Supervisor, SupervisorError
from caconnector.connector.windows_service import WindowsService, WindowsServiceError


@dataclass
class ConnectorService:
    datadir: Path
    systemd: SystemdService
    daemon: Supervisor

    @classmethod
    def for_datadir(cls, datadir: Path) -> ConnectorService:
        return cls(datadir, SystemdService(), Supervisor(datadir))

    @property
    def kind(self) -> str:
        if WindowsService.available():
            return "windows"
        return "systemd" if self.systemd.available() else "daemon"

    def install(self) -> tuple[dict[str, Any], str]:
        """Install and start: the unit enabled at boot, or the daemon started now."""
        if self.kind == "windows":
            name = self._windows(lambda: WindowsService().install(self.datadir))
            return {"service": "windows", "name": name}, f"Windows service {name} installed and started"
        if self.kind == "systemd":
            unit = self._systemd(lambda: self.systemd.install(self.datadir))
            return {"service": "systemd", "unit": str(unit)}, f"{UNIT_NAME} installed and started ({unit})"
        status = self._daemon(self.daemon.start)
        return (
            {"service": "daemon", **status.view()},
            f"systemd is not running on this host: the supervised daemon runs the agent (pid {status.pid})",
        )

    def uninstall(self) -> tuple[dict[str, Any], str]:
        if self.kind == "windows":
            removed = self._windows(WindowsService().uninstall)
            return {"service": "windows", "removed": removed}, "removed" if removed else "not installed"
        if self.kind == "systemd":
            removed = self._systemd(self.systemd.uninstall)
            text = f"{UNIT_NAME} stopped and removed" if removed else f"{UNIT_NAME} was not installed"
            return {"service": "systemd", "removed": removed}, text
        stopped = self._daemon(self.daemon.stop)
        text = "the supervised daemon was stopped" if stopped else "the supervised daemon was not running"
        return {"service": "daemon", "removed": stopped}, text

    def control(self, action: str) -> tuple[dict[str, Any], str]:
        """start, stop or restart."""
        if self.kind == "windows":
            self._windows(lambda: WindowsService().control(action))
        elif self.kind == "systemd":
            self._systemd(lambda: self.systemd.control(action))
        elif action == "stop":
            self._daemon(self.daemon.stop)
        else:
            if action == "restart":
                self._daemon(self.daemon.stop)
            self._daemon(self.daemon.start)
        view = self.status()
        return {"action": action, **view}, f"{action}: done\n{status_text(view)}"

    def running(self) -> bool:
        return bool(self.status()["running"])

    def status(self) -> dict[str, Any]:
        agent = read_state(self.datadir)
        view: dict[str, Any] = {"service": self.kind}
        if self.kind == "windows":
            windows = self._windows(WindowsService().status)
            view.update(running=windows.running, state=windows.state, pid=windows.pid, since=None)
        elif self.kind == "systemd":
            view.update(self._systemd_status())
        else:
            daemon = self.daemon.status()
            view.update(
                running=daemon.running,
                pid=daemon.agent_pid,
                supervisor_pid=daemon.pid,
                since=daemon.since.isoformat() if daemon.since else None,
                restarts=daemon.restarts,
            )
        view["agent_state"] = agent.state.value if agent else None
        view["last_contact"] = agent.last_contact.isoformat() if agent and agent.last_contact else None
        view["last_error"] = agent.last_error if agent else None
        return view

    def _systemd_status(self) -> dict[str, Any]:
        status = self.systemd.status()
        details = self.systemd.show("MainPID", "ActiveEnterTimestamp")
        pid = int(details.get("MainPID") or 0)
        return {
            "running": status.active == "active",
            "active": status.active,
            "installed": status.installed,
            "enabled": status.enabled,
            "pid": pid or None,
            "since": details.get("ActiveEnterTimestamp") or None,
        }

    @staticmethod
    def _systemd(call: Any) -> Any:
        try:
            return call()
        except ServiceError:
            raise
        except OSError as exc:
            raise ServiceError(str(exc)) from None

    @staticmethod
    def _windows(call: Any) -> Any:
        try:
            return call()
        except WindowsServiceError as exc:
            raise ServiceError(str(exc)) from None

    @staticmethod
    def _daemon(call: Any) -> Any:
        try:
            return call()
        except SupervisorError as exc:
            raise ServiceError(str(exc)) from None


def status_text(view: dict[str, Any]) -> str:
    """`sc query` in our words: STATE, PID, since, last contact."""
    state = "RUNNING" if view["running"] else "STOPPED"
    lines = [f"SERVICE_NAME:  ca-connector ({view['service']})", f"STATE:         {state}"]
    if view["running"]:
        lines.append(f"PID:           {view.get('pid') or '-'}")
        lines.append(f"SINCE:         {view.get('since') or '-'}")
        if view.get("restarts"):
            lines.append(f"RESTARTS:      {view['restarts']}")
    lines.append(f"LAST CONTACT:  {view.get('last_contact') or 'never'}")
    if view.get("agent_state"):
        lines.append(f"AGENT:         {view['agent_state']}")
    if view.get("last_error") and view.get("agent_state") != "connected":
        lines.append(f"LAST ERROR:    {view['last_error']}")
    return "\n".join(lines)


def stop_quietly(datadir: Path) -> None:
    """Stop whatever runs the agent of `datadir` (uninstall -purge, the package's removal)."""
    with contextlib.suppress(ServiceError):
        ConnectorService.for_datadir(datadir).uninstall()
