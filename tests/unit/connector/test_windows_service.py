"""The Windows service (pywin32): what runs on any host is tested here; installing, starting and querying
through the Service Control Manager need Windows and are skipped elsewhere."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from caconnector.connector.service_control import ConnectorService
from caconnector.connector.windows_service import (
    WindowsService,
    WindowsServiceError,
    default_datadir,
    service_command_line,
    state_name,
)


def test_the_command_line_the_scm_starts_quotes_paths_with_spaces() -> None:
    line = service_command_line(r"C:\Program Files\Python311\python.exe", Path("D:/ca data"))
    assert line.startswith(
        '"C:\\Program Files\\Python311\\python.exe" -m caconnector.connector.windows_service'
    )
    assert line.endswith('-datadir "D:/ca data"') or line.endswith('-datadir "D:\\ca data"')


def test_scm_states_in_our_words() -> None:
    assert state_name(4) == "running" and state_name(1) == "stopped"
    assert state_name(3) == "stop pending" and state_name(99) == "unknown (99)"


def test_the_data_directory_is_under_programdata(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROGRAMDATA", r"C:\ProgramData")
    assert str(default_datadir()).endswith("ca-connector")


@pytest.mark.skipif(sys.platform == "win32", reason="checks the refusal where Windows is not")
def test_not_available_here_and_says_why(tmp_path: Path) -> None:
    assert not WindowsService.available()
    assert ConnectorService.for_datadir(tmp_path).kind in {"systemd", "daemon"}
    if importlib.util.find_spec("win32serviceutil") is None:
        with pytest.raises(WindowsServiceError, match="pip install pywin32"):
            WindowsService().status()


@pytest.mark.skipif(sys.platform != "win32", reason="installing a service needs Windows and pywin32")
def test_install_query_and_remove_on_windows(tmp_path: Path) -> None:  # pragma: no cover - Windows only
    service = WindowsService()
    service.install(tmp_path)
    try:
        assert service.status().installed
    finally:
        assert service.uninstall()
