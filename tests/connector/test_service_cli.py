"""The systemd unit as rendered, the service commands where systemd is not running, `proxy` commands with
the password masked everywhere, and `uninstall -purge`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.connector.peers import FakeManager
from tests.support import Result, all_bytes

from caconnector.connector.service import ServiceError, SystemdService, render_unit

Run = Callable[..., Result]
PASSWORD = "Pr0xy-s3cret:@%/é"


def test_the_unit_runs_this_interpreter_on_the_data_directory() -> None:
    unit = render_unit(Path("/var/lib/ca-connector"))
    assert (
        f"ExecStart={sys.executable} -m caconnector.connector.cli run -datadir /var/lib/ca-connector\n"
        in unit
    )
    for line in ("KillSignal=SIGTERM", "Restart=on-failure", "WantedBy=multi-user.target", "Type=simple"):
        assert f"{line}\n" in unit
    assert "After=network-online.target" in unit


def test_the_unit_quotes_awkward_paths() -> None:
    unit = render_unit(Path("/srv/ca connector/100%"), python="/opt/py/bin/python3", key_file=Path("/k/e y"))
    assert 'run -datadir "/srv/ca connector/100%%"\n' in unit
    assert 'Environment="CA_CONNECTOR_KEY_FILE=/k/e y"\n' in unit


def test_systemd_service_says_systemd_is_not_running(tmp_path: Path) -> None:
    assert not SystemdService(runtime_dir=tmp_path / "no-systemd").available()
    with pytest.raises(ServiceError, match="systemd is not running"):
        SystemdService(runtime_dir=tmp_path / "no-systemd").install(tmp_path)


def test_the_unit_is_hardened_and_runs_as_the_data_directory_user() -> None:
    unit = render_unit(Path("/var/lib/ca-connector"), user="ca-connector")
    for line in (
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "ReadWritePaths=/var/lib/ca-connector",
        "User=ca-connector",
        "Group=ca-connector",
        "Restart=on-failure",
    ):
        assert f"{line}\n" in unit


def test_proxy_set_show_clear_mask_the_password_everywhere(cli: Run, datadir: Path) -> None:
    result = cli("proxy", "set", "-proxyhost", "proxy.corp", "-proxyport", "3128",
                 "-proxyuser", "svc", "-proxypassword", PASSWORD)  # fmt: skip
    assert result.code == 0, result.err
    assert result.out.strip() == "proxy set: http://svc:********@proxy.corp:3128"
    shown = json.loads(cli("proxy", "show", "-json").out)
    assert shown == {"host": "proxy.corp", "port": 3128, "username": "svc", "password": "********"}
    status = json.loads(cli("status", "-json").out)
    assert status["proxy"] == "http://svc:********@proxy.corp:3128"
    outputs = result.out + result.err + cli("proxy", "show").out + cli("status").out
    assert PASSWORD not in outputs
    assert PASSWORD.encode() not in all_bytes(datadir)  # logs, config.toml, secrets.json: all of it

    assert cli("proxy", "clear").code == 0
    assert json.loads(cli("proxy", "show", "-json").out) == {"proxy": None}


def test_proxy_set_validation(cli: Run) -> None:
    assert cli("proxy", "set", "-proxyhost", "p").code == 2
    result = cli("proxy", "set", "-proxyhost", "p", "-proxyport", "1", "-proxyuser", "u")
    assert result.code == 2 and "-proxyuser and -proxypassword go together" in result.err
    result = cli("proxy", "set", "-proxyhost", "user@p", "-proxyport", "1")
    assert result.code == 2 and "-proxyhost" in result.err


def test_the_agent_log_never_holds_the_proxy_password(cli: Run, datadir: Path, manager: FakeManager) -> None:
    assert cli("register", "-token", manager.add_token(), "-manager", manager.url).code == 0
    # A proxy nobody listens on: the agent logs its failure, naming the proxy but not the password.
    assert cli("proxy", "set", "-proxyhost", "127.0.0.1", "-proxyport", "9",
               "-proxyuser", "svc", "-proxypassword", PASSWORD).code == 0  # fmt: skip
    result = cli("run", "-once")
    assert result.code == 1
    log = (datadir / "logs" / "ca-connector.log").read_text()
    assert "127.0.0.1:9" in log
    assert PASSWORD not in log + result.err


def test_uninstall_purge_asks_first_then_deletes(cli: Run, datadir: Path) -> None:
    assert cli("backend", "add", "-name", "LocalCA", "-type", "local").code == 0
    refused = cli("uninstall", "-purge")
    assert refused.code == 2 and "confirm with -yes" in refused.err
    assert datadir.exists()
    done = cli("uninstall", "-purge", "-yes")
    assert done.code == 0, done.err
    assert f"deleted {datadir}" in done.out
    assert not datadir.exists()


def test_uninstall_without_purge_keeps_the_data(cli: Run, datadir: Path) -> None:
    assert cli("backend", "add", "-name", "LocalCA", "-type", "local").code == 0
    result = cli("uninstall")
    assert result.code == 0
    assert "the supervised daemon was not running" in result.out
    assert (datadir / "config.toml").exists()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    unit = tmp_path / "ca-connector.service"
    unit.write_text(render_unit(tmp_path / "data", user="root"))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False, timeout=60
    )
    problems = [line for line in done.stderr.splitlines() if "ca-connector.service" in line]
    assert done.returncode == 0 and not problems, done.stderr
