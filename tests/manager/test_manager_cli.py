"""`ca-manager` in process (SQLite in a data directory, and `-database` on both databases), and `serve`
as a real process."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select
from tests.ports import free_port

from caconnector import __version__
from caconnector.manager import public_url
from caconnector.manager.app import create_app
from caconnector.manager.cli import main
from caconnector.manager.db.migrate import current_revision, head_revision
from caconnector.manager.db.models import AuditEvent
from caconnector.manager.runtime import build_runtime
from caconnector.manager.services.users import find_user, verify_password
from caconnector.manager.settings import Settings


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing may fall back to the user's own data directory or database.
    monkeypatch.setenv("CA_MANAGER_HOME", str(tmp_path / "home-default"))
    monkeypatch.delenv("CA_MANAGER_DATABASE_URL", raising=False)
    monkeypatch.delenv("CA_MANAGER_PUBLIC_URL", raising=False)
    monkeypatch.delenv("CA_MANAGER_KEY_FILE", raising=False)


class Cli:
    """Runs `ca-manager` with fixed global options and returns (exit code, stdout, stderr)."""

    def __init__(self, capsys: pytest.CaptureFixture[str], *global_options: str) -> None:
        self.capsys = capsys
        self.global_options = global_options

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main([*self.global_options, *args])
        out, err = self.capsys.readouterr()
        return code, out, err

    def json(self, *args: str) -> Any:
        code, out, err = self(*args, "-json")
        assert code == 0, err
        return json.loads(out)


@pytest.fixture
def datadir(tmp_path: Path) -> Path:
    return tmp_path / "datadir"


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], datadir: Path) -> Cli:
    return Cli(capsys, "-datadir", str(datadir))


@pytest.fixture
def db_cli(capsys: pytest.CaptureFixture[str], datadir: Path, database_url: str) -> Cli:
    return Cli(capsys, "-datadir", str(datadir), "-database", database_url)


def test_db_upgrade_migrates_and_is_idempotent(cli: Cli, datadir: Path) -> None:
    first = cli.json("db", "upgrade")
    assert first == {"from": None, "to": head_revision(), "head": head_revision()}
    assert (datadir / "manager.db").exists()
    assert cli.json("db", "upgrade")["from"] == head_revision()
    code, out, _ = cli("db", "upgrade")
    assert code == 0
    assert "already at" in out


def test_admin_and_api_key(cli: Cli, datadir: Path) -> None:
    code, out, _ = cli("admin", "create", "-username", "alice", "-role", "operator")
    assert code == 0
    password = out.rsplit(": ", 1)[1].strip()
    assert out.count(password) == 1
    settings = Settings(datadir=datadir)
    runtime = build_runtime(settings)
    try:
        with runtime.sessions.begin() as session:
            user = find_user(session, "alice")
            assert user is not None
            assert user.role == "operator"
            assert verify_password(user, password)
            assert not verify_password(user, password + "x")
            actors = set(session.scalars(select(AuditEvent.actor)))
    finally:
        runtime.engine.dispose()
    assert len(actors) == 1
    assert actors.pop().startswith("cli:")

    created = cli.json("apikey", "create", "-username", "alice")
    key = created["api_key"]
    app = create_app(settings)
    try:
        with TestClient(app) as client:
            headers = {"Authorization": f"Bearer {key}"}
            assert client.get("/api/v1/connectors", headers=headers).status_code == 200
            assert client.post("/api/v1/connectors", json={"name": "x"}, headers=headers).status_code == 403
    finally:
        app.state.runtime.engine.dispose()


def test_admin_create_refuses_a_duplicate_and_a_bad_role(cli: Cli) -> None:
    assert cli("admin", "create", "-username", "bob")[0] == 0
    code, _, err = cli("admin", "create", "-username", "bob")
    assert code == 1
    assert "'bob' already exists" in err
    code, _, err = cli("admin", "create", "-username", "carol", "-role", "root")
    assert code == 2
    assert "-role" in err
    assert "root" in err


def test_apikey_for_an_unknown_user(cli: Cli) -> None:
    code, _, err = cli("apikey", "create", "-username", "nobody")
    assert code == 1
    assert "no user 'nobody'" in err
    assert "ca-manager admin create -username nobody" in err


def test_connector_commands(db_cli: Cli) -> None:
    added = db_cli.json("connector", "add", "-name", "dc1", "-comments", "rack 4")
    token = added["token"]
    assert added["status"] == "Pending"
    assert added["install_command"] == f"ca-connector install -token {token} -manager http://127.0.0.1:8443"

    listed = db_cli.json("connector", "list")
    assert [(c["name"], c["status"]) for c in listed] == [("dc1", "Pending")]
    assert "token" not in listed[0]

    shown = db_cli.json("connector", "show", "-name", "dc1")
    assert (shown["id"], shown["comments"], shown["token"]) == (added["id"], "rack 4", token)

    edited = db_cli.json("connector", "edit", "-name", "dc1", "-newname", "dc-paris", "-comments", "rack 5")
    assert (edited["name"], edited["comments"]) == ("dc-paris", "rack 5")

    restored = db_cli.json("connector", "restore", "-name", "dc-paris")
    assert restored["token"] != token
    assert db_cli.json("connector", "show", "-name", "dc-paris")["token"] == restored["token"]

    assert db_cli.json("connector", "delete", "-name", "dc-paris") == {
        "id": added["id"],
        "name": "dc-paris",
        "deleted": True,
    }
    assert db_cli.json("connector", "list") == []


def test_connector_text_output(db_cli: Cli) -> None:
    code, out, _ = db_cli("connector", "add", "-name", "dc1")
    assert code == 0
    assert "ca-connector install -token cat_" in out
    code, out, _ = db_cli("connector", "list")
    assert out.splitlines()[0].split()[:2] == ["NAME", "STATUS"]
    assert "dc1" in out
    assert "Pending" in out
    code, out, _ = db_cli("connector", "restore", "-name", "dc1")
    assert code == 0
    assert "cat_" in out


def test_public_url_goes_into_the_install_command(db_cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    added = db_cli.json("connector", "add", "-name", "dc1", "-public-url", "https://manager.example.com/")
    assert added["install_command"].endswith("-manager https://manager.example.com")
    monkeypatch.setenv("CA_MANAGER_PUBLIC_URL", "https://env.example.com")
    shown = db_cli.json("connector", "show", "-name", "dc1")
    assert shown["install_command"].endswith("-manager https://env.example.com")
    code, _, err = db_cli("connector", "add", "-name", "dc2", "-public-url", "http://manager.example.com")
    assert code == 2
    assert "-public-url" in err
    assert "https://" in err


def test_the_recorded_public_url_is_used_until_overridden(db_cli: Cli, datadir: Path) -> None:
    # What serve or quickstart records in the data directory (tests/e2e runs them for real).
    public_url.record(datadir, "http://127.0.0.1:18443")
    added = db_cli.json("connector", "add", "-name", "dc1")
    assert added["install_command"].endswith("-manager http://127.0.0.1:18443")
    restored = db_cli.json("connector", "restore", "-name", "dc1")
    assert restored["install_command"].endswith("-manager http://127.0.0.1:18443")
    given = db_cli.json("connector", "show", "-name", "dc1", "-public-url", "https://m.example.com")
    assert given["install_command"].endswith("-manager https://m.example.com")
    public_url.record(datadir, "http://manager.example.com:8443")  # refused as a connector would refuse it
    code, _, err = db_cli("connector", "show", "-name", "dc1")
    assert code == 2
    assert "-public-url" in err


def test_users_and_api_keys_are_listed_and_revoked(cli: Cli, datadir: Path) -> None:
    assert cli.json("admin", "list") == []
    cli.json("admin", "create", "-username", "alice")
    cli.json("admin", "create", "-username", "bob", "-role", "auditor")
    users = cli.json("admin", "list")
    assert [(u["username"], u["role"]) for u in users] == [("alice", "admin"), ("bob", "auditor")]
    assert all("password" not in u for u in users)
    first = cli.json("apikey", "create", "-username", "alice")
    second = cli.json("apikey", "create", "-username", "bob")
    listed = cli.json("apikey", "list")
    assert {k["id"] for k in listed} == {first["id"], second["id"]}
    assert first["api_key"] not in json.dumps(listed)
    assert [k["id"] for k in cli.json("apikey", "list", "-username", "bob")] == [second["id"]]
    code, out, _ = cli("apikey", "list")
    assert code == 0
    assert first["prefix"] in out
    assert "never" in out  # not used yet

    settings = Settings(datadir=datadir)
    app = create_app(settings)
    try:
        with TestClient(app) as client:
            headers = {"Authorization": f"Bearer {first['api_key']}"}
            assert client.get("/api/v1/profiles", headers=headers).status_code == 200
            revoked = cli.json("apikey", "revoke", "-prefix", first["prefix"])
            assert revoked["revoked_at"] is not None
            # Refused at once, by the running app, on its next request.
            assert client.get("/api/v1/profiles", headers=headers).status_code == 401
    finally:
        app.state.runtime.engine.dispose()
    assert [k["id"] for k in cli.json("apikey", "list")] == [second["id"]]
    assert {k["id"] for k in cli.json("apikey", "list", "-all")} == {first["id"], second["id"]}
    cli.json("apikey", "revoke", "-id", second["id"])
    code, _, err = cli("apikey", "revoke", "-id", "nope")
    assert code == 1
    assert "no API key with id 'nope'" in err
    assert cli("apikey", "revoke")[0] == 2
    code, _, err = cli("apikey", "list", "-username", "nobody")
    assert code == 1
    assert "ca-manager admin list" in err


HEAVY = ("fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "pydantic", "httpx", "argon2")
# argv: the modules to look for (comma-separated), a module to import first ("-" for none), the command.
PROBE = """
import importlib, sys
heavy, first, argv = set(sys.argv[1].split(",")), sys.argv[2], sys.argv[3:]
if first != "-":
    importlib.import_module(first)
from caconnector.manager.cli import main
try:
    main(argv)
except SystemExit:  # -h and --version exit through argparse
    pass
print(sorted({name.split(".")[0] for name in sys.modules} & heavy), file=sys.stderr)
"""


def _loaded(first: str, argv: list[str]) -> tuple[str, str]:
    """(what `ca-manager ARGV` printed, the heavy modules loaded by then)."""
    command = [sys.executable, "-c", PROBE, ",".join(HEAVY), first, *argv]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    *_, loaded = done.stderr.strip().splitlines()
    return done.stdout + done.stderr, loaded


@pytest.mark.parametrize("argv", [[], ["-h"], ["version"], ["--version"], ["help", "apikey", "list"]])
def test_help_and_version_do_not_load_the_web_app_or_the_database(argv: list[str]) -> None:
    # Structural, not timed (bench/cli_startup.py times it): what -h and version never need stays unloaded.
    printed, loaded = _loaded("-", argv)
    assert loaded == "[]", printed
    assert "ca-manager" in printed
    # The probe sees them when they are loaded: the app, imported first, brings them.
    _, loaded = _loaded("caconnector.manager.app", argv)
    assert "fastapi" in loaded
    assert "sqlalchemy" in loaded


def test_unknown_connector_names_it_and_how_to_list(db_cli: Cli) -> None:
    for command in ("show", "restore", "delete"):
        code, out, err = db_cli("connector", command, "-name", "ghost")
        assert code == 1, command
        assert out == ""
        assert "'ghost'" in err
        assert "ca-manager connector list" in err
    code, _, err = db_cli("connector", "edit", "-name", "ghost", "-comments", "x")
    assert code == 1
    assert "'ghost'" in err


def test_connector_errors(db_cli: Cli) -> None:
    assert db_cli("connector", "add", "-name", "dc1")[0] == 0
    code, _, err = db_cli("connector", "add", "-name", "dc1")
    assert (code, "'dc1' already exists" in err) == (1, True)
    code, _, err = db_cli("connector", "add", "-name", "bad/name")
    assert (code, "invalid connector name" in err) == (1, True)
    code, _, err = db_cli("connector", "edit", "-name", "dc1")
    assert (code, "-newname" in err) == (2, True)


def test_settings_come_from_the_environment(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CA_MANAGER_TOKEN_TTL_SECONDS", "60")
    added = cli.json("connector", "add", "-name", "dc1")
    created = dt.datetime.fromisoformat(added["token_expires_at"])
    assert created - dt.datetime.now(dt.UTC) <= dt.timedelta(seconds=60)
    monkeypatch.setenv("CA_MANAGER_TOKEN_TTL_SECONDS", "a day")
    code, _, err = cli("connector", "list")
    assert code == 1
    assert "token_ttl_seconds" in err


def test_usage_errors_exit_2_and_name_the_option(cli: Cli) -> None:
    code, out, err = cli("connector", "add", "-name", "dc1", "-bogus", "1")
    assert (code, out) == (2, "")
    assert "-bogus" in err
    code, _, err = cli("connector", "add")
    assert code == 2
    assert "-name" in err
    code, _, err = cli("connector", "add", "-nam", "dc1")  # no abbreviations, and the typo is named
    assert code == 2
    assert "unrecognized arguments: -nam " in err
    code, _, err = cli("serve", "-port", "99999")
    assert code == 2
    assert "-port" in err
    code, _, err = cli("serve", "-tls-cert", "cert.pem")
    assert code == 2
    assert "-tls-key" in err
    code, _, err = cli("frobnicate")
    assert code == 2
    assert "frobnicate" in err


def test_double_dash_options_work_too(capsys: pytest.CaptureFixture[str], datadir: Path) -> None:
    cli = Cli(capsys, "--datadir", str(datadir))
    assert cli.json("connector", "add", "--name", "dc1")["name"] == "dc1"
    assert cli.json("connector", "show", "--name", "dc1")["name"] == "dc1"


def test_help_version_and_quickstart_options(cli: Cli) -> None:
    code, out, _ = cli("help")
    assert code == 0
    for command in ("serve", "db", "admin", "apikey", "connector", "quickstart"):
        assert command in out
    code, out, _ = cli("help", "connector", "add")
    assert code == 0
    assert "-comments" in out
    assert cli("help", "nothing")[0] == 2
    assert cli.json("version") == {"version": __version__}
    # The quickstart itself runs in tests/e2e; here only its refusal to serve plain HTTP off loopback.
    code, _, err = cli("quickstart", "-host", "0.0.0.0")  # noqa: S104  (the address it must refuse)
    assert code == 2
    assert "-host must be a loopback address" in err


def test_a_database_of_a_newer_version_is_refused(cli: Cli, datadir: Path) -> None:
    datadir.mkdir()
    engine = create_engine(f"sqlite:///{datadir / 'manager.db'}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        connection.exec_driver_sql("INSERT INTO alembic_version VALUES ('0000')")
    engine.dispose()
    code, _, err = cli("connector", "list")
    assert code == 1
    assert "0000" in err
    assert "newer version" in err


def test_a_foreign_database_is_not_touched(cli: Cli, datadir: Path) -> None:
    datadir.mkdir()
    engine = create_engine(f"sqlite:///{datadir / 'manager.db'}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE invoices (id INTEGER)")
    engine.dispose()
    code, _, err = cli("connector", "list")
    assert code == 1
    assert "no ca-manager schema" in err


# ---- serve, as a real process ------------------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path, Path]]:
    datadir = tmp_path / "served"
    log = tmp_path / "serve.log"
    port = free_port()
    env = {**os.environ, "CA_MANAGER_HOME": str(datadir)}
    env.pop("CA_MANAGER_DATABASE_URL", None)
    command = [str(Path(sys.executable).parent / "ca-manager"), "serve", "-port", str(port)]
    with log.open("wb") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        yield process, port, datadir, log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


@pytest.mark.slow
def test_serve_migrates_an_empty_database_and_stops_on_sigterm(
    server: tuple[subprocess.Popen[bytes], int, Path, Path],
) -> None:
    process, port, datadir, log = server
    url = f"http://127.0.0.1:{port}/healthz"
    deadline = time.monotonic() + 15
    status = None
    while time.monotonic() < deadline and process.poll() is None:
        try:
            status = httpx.get(url, timeout=1).status_code
        except httpx.TransportError:
            status = None
        if status == 200:
            break
        time.sleep(0.1)
    assert status == 200, log.read_text()

    engine = create_engine(f"sqlite:///{datadir / 'manager.db'}")
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=15) == 0, log.read_text()
    output = log.read_text()
    assert f"serving on http://127.0.0.1:{port}" in output
    assert "stopped (SIGTERM)" in output
