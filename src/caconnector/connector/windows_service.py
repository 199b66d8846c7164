"""The connector as a Windows service (the reference product's `sc start|stop|query SectigoCBCS`), through
pywin32. `ConnectorService` uses it where `available()`: on Windows with pywin32 installed.

What runs on any host (and is tested on Linux): the service's names, the command line the Service Control
Manager starts, and the mapping of SCM states to our words. What needs Windows: installing, starting and
querying through `win32serviceutil`, and the service class itself (`service_class()`), whose `SvcDoRun`
runs the agent until `SvcStop` asks it to stop, as SIGTERM does on Linux.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SERVICE_NAME = "ca-connector"
DISPLAY_NAME = "ca-connector (CA connector agent)"
DESCRIPTION = "Runs certificate jobs from ca-manager against the configured CA backends."
DATADIR_ENV = "CA_CONNECTOR_HOME"

# win32service's SERVICE_* state constants, so the mapping is testable without pywin32.
STATES = {
    1: "stopped",
    2: "start pending",
    3: "stop pending",
    4: "running",
    5: "continue pending",
    6: "pause pending",
    7: "paused",
}


class WindowsServiceError(Exception):
    """A Windows service operation that failed or cannot be done here; the message says why."""


def default_datadir() -> Path:
    """C:\\ProgramData\\ca-connector: where the reference product keeps configuration and logs too."""
    return Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData")) / SERVICE_NAME


def service_command_line(python: str, datadir: Path) -> str:
    """What the SCM starts: this interpreter running the service host for the data directory."""
    return subprocess.list2cmdline(
        [python, "-m", "caconnector.connector.windows_service", "-datadir", str(datadir)]
    )


def state_name(code: int) -> str:
    return STATES.get(code, f"unknown ({code})")


def _win32() -> tuple[Any, Any]:
    try:
        return importlib.import_module("win32serviceutil"), importlib.import_module("win32service")
    except ImportError:
        raise WindowsServiceError(
            "the Windows service needs pywin32: pip install pywin32 (Windows only)"
        ) from None


@dataclass(frozen=True)
class WindowsStatus:
    installed: bool
    state: str
    pid: int | None

    @property
    def running(self) -> bool:
        return self.state == "running"


class WindowsService:
    """`win32serviceutil` for the ca-connector service."""

    @staticmethod
    def available() -> bool:
        return sys.platform == "win32" and importlib.util.find_spec("win32serviceutil") is not None

    def install(self, datadir: Path) -> str:
        util, service = _win32()
        cls = service_class()
        util.InstallService(
            f"{cls.__module__}.{cls.__name__}",
            SERVICE_NAME,
            DISPLAY_NAME,
            startType=service.SERVICE_AUTO_START,
            exeName=sys.executable,
            exeArgs=service_command_line(sys.executable, datadir).split(" ", 1)[1],
            description=DESCRIPTION,
        )
        util.StartService(SERVICE_NAME)
        return SERVICE_NAME

    def uninstall(self) -> bool:
        util, _ = _win32()
        if not self.status().installed:
            return False
        if self.status().running:
            util.StopService(SERVICE_NAME)
        util.RemoveService(SERVICE_NAME)
        return True

    def control(self, action: str) -> None:
        util, _ = _win32()
        call = {"start": util.StartService, "stop": util.StopService, "restart": util.RestartService}[action]
        try:
            call(SERVICE_NAME)
        except Exception as exc:  # noqa: BLE001 - pywintypes.error: its message is the operator's answer
            raise WindowsServiceError(f"{action} {SERVICE_NAME}: {exc}") from None

    def status(self) -> WindowsStatus:
        util, _ = _win32()
        try:
            status = util.QueryServiceStatus(SERVICE_NAME)
        except Exception:  # noqa: BLE001 - pywintypes.error: the service does not exist
            return WindowsStatus(installed=False, state="stopped", pid=None)
        return WindowsStatus(installed=True, state=state_name(status[1]), pid=None)


def service_class() -> type:
    """The pywin32 service class (built on first use: it subclasses win32serviceutil.ServiceFramework)."""
    util, service = _win32()
    servicemanager = importlib.import_module("servicemanager")

    class ConnectorWindowsService(util.ServiceFramework):  # type: ignore[misc,name-defined]
        _svc_name_ = SERVICE_NAME
        _svc_display_name_ = DISPLAY_NAME
        _svc_description_ = DESCRIPTION

        def __init__(self, args: Any) -> None:
            super().__init__(args)
            self.agent: Any = None

        def SvcStop(self) -> None:  # noqa: N802 - pywin32's name
            self.ReportServiceStatus(service.SERVICE_STOP_PENDING)
            if self.agent is not None:
                self.agent.stop()  # finishes the running jobs, says goodbye

        def SvcDoRun(self) -> None:  # noqa: N802 - pywin32's name
            from caconnector.connector.agent import Agent, AgentOptions  # noqa: PLC0415
            from caconnector.connector.store import ConnectorStore  # noqa: PLC0415

            datadir = Path(os.environ.get(DATADIR_ENV) or default_datadir())
            servicemanager.LogInfoMsg(f"{SERVICE_NAME}: starting for {datadir}")
            self.agent = Agent(ConnectorStore(datadir), AgentOptions(log_to_stderr=False))
            self.agent.run()

    return ConnectorWindowsService


def main(argv: list[str]) -> int:
    """The SCM's entry point: `python -m caconnector.connector.windows_service -datadir D`."""
    if len(argv) == 2 and argv[0] in {"-datadir", "--datadir"}:
        os.environ[DATADIR_ENV] = argv[1]
    _win32()  # the message naming pywin32, rather than servicemanager's ImportError
    servicemanager = importlib.import_module("servicemanager")
    servicemanager.Initialize()
    servicemanager.PrepareToHostSingle(service_class())
    servicemanager.StartServiceCtrlDispatcher()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
