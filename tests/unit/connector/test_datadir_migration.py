"""A data directory written by the previous schema (tests/fixtures/datadir-schema0: no schema_version)
is migrated by what the package's postinst runs on upgrade, and keeps its backends, registration and
secrets."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from caconnector.connector.link_settings import read_proxy, read_registration
from caconnector.connector.package_hooks import configure, migrate
from caconnector.connector.store import ConnectorStore

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "datadir-schema0"


def _copy(tmp_path: Path) -> Path:
    datadir = tmp_path / "datadir"
    shutil.copytree(FIXTURE, datadir)
    datadir.chmod(0o700)
    (datadir / "secret.key").chmod(0o600)  # git keeps no file modes but the executable bit
    return datadir


def test_the_fixture_is_of_the_previous_schema() -> None:
    assert "schema_version" not in tomllib.loads((FIXTURE / "config.toml").read_text())
    assert "schema_version" not in json.loads((FIXTURE / "secrets.json").read_text())
    assert ConnectorStore.SCHEMA_VERSION == 1


def test_the_upgrade_migrates_it_and_keeps_everything(tmp_path: Path) -> None:
    datadir = _copy(tmp_path)
    assert migrate(datadir) == f"data directory at schema {ConnectorStore.SCHEMA_VERSION}"
    assert tomllib.loads((datadir / "config.toml").read_text())["schema_version"] == 1
    assert json.loads((datadir / "secrets.json").read_text())["schema_version"] == 1

    snapshot = ConnectorStore(datadir).read()
    assert list(snapshot.backends) == ["LocalCA"]
    registration = read_registration(snapshot)
    assert registration is not None
    assert (registration.manager_url, registration.name) == (
        "https://manager.example.test:8443",
        "fixture-host",
    )
    proxy = read_proxy(snapshot)
    assert proxy is not None and proxy.password == "fixture-proxy-password"
    # The local CA still issues from its migrated state: the backend's own check.
    done = subprocess.run(
        [sys.executable, "-m", "caconnector.connector.cli", "backend", "test", "-name", "LocalCA",
         "-datadir", str(datadir), "-json"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "Available"


def test_configure_without_a_running_service_only_migrates(tmp_path: Path) -> None:
    datadir = _copy(tmp_path)
    assert configure(datadir) == ["data directory at schema 1"]
    assert not (datadir / "supervisor.pid").exists()
    assert migrate(tmp_path / "fresh") == "no configuration to migrate"
