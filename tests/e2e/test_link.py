"""Issue acceptance for the manager/connector link, with real processes on loopback: `ca-manager serve`
over TLS, `ca-connector register`/`run`, and tinyproxy requiring basic authentication."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.conftest import Manager
from tests.e2e.processes import BIN, Process, clean_env, healthy, run, tinyproxy, wait_until

from caconnector import __version__

pytestmark = pytest.mark.slow

CONNECTOR = str(BIN / "ca-connector")


def _connector_env(datadir: Path) -> dict[str, str]:
    return clean_env(CA_CONNECTOR_HOME=str(datadir))


def _cc(datadir: Path, *args: str) -> Any:
    return run([CONNECTOR, *args], _connector_env(datadir))


def _status(manager: Manager, connector_id: str) -> str:
    return str(manager.connector(connector_id)["status"])


def _agent(tmp_path: Path, datadir: Path, name: str) -> Process:
    return Process(name, [CONNECTOR, "run"], tmp_path / f"{name}.log", _connector_env(datadir)).start()


def test_register_connect_disconnect_restore_delete(manager: Manager, tmp_path: Path) -> None:
    added = manager.cli("connector", "add", "-name", "dc1", "-comments", "first site")
    assert added["status"] == "Pending"
    token, connector_id = added["token"], added["id"]
    home = tmp_path / "dc1"
    registered = _cc(
        home, "register", "-token", token, "-manager", manager.url, "-cacert", str(manager.tls.ca_pem)
    )
    assert registered.returncode == 0, registered.stderr
    # Registering counts as contact for a moment; let that pass so Connected below is the agent's doing.
    wait_until(lambda: _status(manager, connector_id) == "Disconnected", 10, what="Disconnected before run")

    agent = _agent(tmp_path, home, "agent1")
    try:
        # Measured from the agent's first line, not from the exec: what is bounded is the agent connecting
        # at once instead of on a timer, not how long Python takes to import it on a loaded machine.
        wait_until(lambda: "starting" in agent.log(), 30, what="the agent's first log line")
        started = time.monotonic()
        wait_until(lambda: _status(manager, connector_id) == "Connected", 10, what="Connected")
        connected_after = time.monotonic() - started
        print(f"connector showed Connected {connected_after:.2f}s after `run` started")
        assert connected_after < 2.0, agent.log()
        view = manager.connector(connector_id)
        assert view["version"] == __version__
        assert view["hostname"] == socket.gethostname()
        assert view["last_seen"] is not None
    finally:
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    wait_until(lambda: _status(manager, connector_id) == "Disconnected", 10, what="Disconnected after stop")

    # The same token a second time: refused, and nothing is stored on the second host.
    again = _cc(
        tmp_path / "other",
        "register",
        "-token",
        token,
        "-manager",
        manager.url,
        "-cacert",
        str(manager.tls.ca_pem),
    )
    assert again.returncode == 1
    assert "already used" in again.stderr
    assert "restore" in again.stderr

    # An expired token: issued with a 1-second lifetime, used after it ran out.
    short = manager.cli("connector", "add", "-name", "dc-late", env={"CA_MANAGER_TOKEN_TTL_SECONDS": "1"})
    time.sleep(1.5)
    late = _cc(
        tmp_path / "late",
        "register",
        "-token",
        short["token"],
        "-manager",
        manager.url,
        "-cacert",
        str(manager.tls.ca_pem),
    )
    assert late.returncode == 1
    assert "expired" in late.stderr

    # Restore: a new token, `register -token NEW -force` on the same host, and it connects again.
    restored = manager.cli("connector", "restore", "-name", "dc1")
    assert restored["token"] != token
    forced = _cc(home, "register", "-token", restored["token"], "-force")
    assert forced.returncode == 0, forced.stderr
    agent = _agent(tmp_path, home, "agent2")
    try:
        wait_until(lambda: _status(manager, connector_id) == "Connected", 10, what="Connected after restore")
        _backend_reported_and_checked(manager, home, connector_id)
        # Delete: the running connector's next request is refused, and it says so in its log and status.
        manager.cli("connector", "delete", "-name", "dc1")
        wait_until(lambda: "deleted" in agent.log(), 30, what="the agent to log the refusal")
        status = json.loads(_cc(home, "status", "-json").stdout)
        assert "refused" in json.dumps(status)
        assert "deleted" in json.dumps(status)
    finally:
        agent.stop()


def _backends(manager: Manager) -> list[dict[str, Any]]:
    with manager.api() as client:
        items: list[dict[str, Any]] = client.get("/backends").json()["items"]
        return items


def _backend_reported_and_checked(manager: Manager, home: Path, connector_id: str) -> None:
    """`backend add` on the host reaches the manager by itself (inventory), and a check job round-trips."""
    assert _cc(home, "backend", "add", "-name", "LocalCA", "-type", "local").returncode == 0
    wait_until(
        lambda: any(b["local_backend"] == "LocalCA" for b in _backends(manager)),
        15,
        what="the new backend in the manager's inventory",
    )
    backend = next(b for b in _backends(manager) if b["local_backend"] == "LocalCA")
    assert backend["type"] == "local"
    assert backend["status"] == "Available"
    assert backend["cas"][0]["subject"] == "CN=LocalCA Local CA"
    with manager.api() as client:
        job = client.post(f"/backends/{backend['id']}/check").json()["job"]

        def done() -> bool:
            return bool(client.get(f"/jobs/{job['id']}").json()["status"] == "done")

        wait_until(done, 15, what="the check job to finish")
        checked = client.get(f"/backends/{backend['id']}").json()
    assert checked["checked_at"] is not None
    assert checked["status"] == "Available"


def test_reconnects_after_the_manager_restarts(manager: Manager, tmp_path: Path) -> None:
    added = manager.cli("connector", "add", "-name", "patient")
    home = tmp_path / "patient"
    assert (
        _cc(
            home,
            "register",
            "-token",
            added["token"],
            "-manager",
            manager.url,
            "-cacert",
            str(manager.tls.ca_pem),
        ).returncode
        == 0
    )
    agent = _agent(tmp_path, home, "patient-agent")
    try:
        # Registering alone shows Connected for the heartbeat grace: wait for the agent itself.
        wait_until(lambda: "connected to" in agent.log(), 30, what="the agent to connect")
        wait_until(lambda: _status(manager, added["id"]) == "Connected", 10, what="Connected")
        manager.process.stop()
        time.sleep(4)  # the manager is down: the agent backs off instead of spinning
        lines_while_down = agent.log().count("\n")
        manager.process.start()
        try:
            wait_until(lambda: healthy(manager.url, manager.tls.ca_pem), 30, what="the manager back")
        except AssertionError as failure:  # say why it did not come back (its log has uvicorn's reason)
            raise AssertionError(f"{failure}\n{manager.process.log()[-3000:]}") from None
        wait_until(lambda: _status(manager, added["id"]) == "Connected", 90, what="Connected after restart")
        assert lines_while_down < 40, agent.log()  # a handful of back-off lines, not a busy loop
    finally:
        agent.stop()


def test_through_a_proxy_with_basic_authentication(manager: Manager, tmp_path: Path) -> None:
    added = manager.cli("connector", "add", "-name", "behind-proxy")
    home = tmp_path / "proxied"
    port = manager.url.rsplit(":", 1)[1]
    with tinyproxy(tmp_path / "proxy") as proxy:
        installed = _cc(
            home, "install", "-silent", "-noservice", "-token", added["token"], "-manager", manager.url,
            "-proxy", "1", "-proxyhost", "127.0.0.1", "-proxyport", str(proxy.port),
            "-proxyuser", proxy.user, "-proxypassword", proxy.password, "-cacert", str(manager.tls.ca_pem),
        )  # fmt: skip
        assert installed.returncode == 0, installed.stderr
        assert proxy.connections_to(int(port)) >= 1, "registration did not go through the proxy"

        checked = _cc(home, "test-connection")
        assert checked.returncode == 0, checked.stdout + checked.stderr

        agent = _agent(tmp_path, home, "proxied-agent")
        try:
            wait_until(lambda: _status(manager, added["id"]) == "Connected", 10, what="Connected via proxy")
        finally:
            agent.stop()
        log = proxy.log_path.read_text()
        assert f"CONNECT 127.0.0.1:{port}" in log
        assert log.count(f"CONNECT 127.0.0.1:{port}") >= 3  # registration, test-connection, polling

        wrong = _cc(
            home,
            "proxy",
            "set",
            "-proxyhost",
            "127.0.0.1",
            "-proxyport",
            str(proxy.port),
            "-proxyuser",
            proxy.user,
            "-proxypassword",
            "not-the-password",
        )
        assert wrong.returncode == 0, wrong.stderr
        refused = _cc(home, "test-connection")
        assert refused.returncode == 1
        assert "proxy refused authentication" in refused.stdout + refused.stderr

        outputs = installed.stdout + installed.stderr + checked.stdout + refused.stdout + refused.stderr
        assert proxy.password not in outputs
        shown = _cc(home, "proxy", "show", "-json").stdout
        assert proxy.password not in shown and "not-the-password" not in shown
    stored = b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())
    assert proxy.password.encode() not in stored
    assert b"not-the-password" not in stored


# The poll wait a real manager uses: without the cut-off, a deleted connector's parked poll would
# hold on for up to this long, so a refusal within CUT_OFF can only come from the cut-off.
@pytest.mark.parametrize("manager", [{"CA_MANAGER_POLL_WAIT_SECONDS": "30"}], indirect=True)
def test_a_deleted_connector_is_cut_off_at_once(manager: Manager, tmp_path: Path) -> None:
    added = manager.cli("connector", "add", "-name", "doomed")
    home = tmp_path / "doomed"
    registered = _cc(
        home,
        "register",
        "-token",
        added["token"],
        "-manager",
        manager.url,
        "-cacert",
        str(manager.tls.ca_pem),
    )
    assert registered.returncode == 0, registered.stderr
    agent = _agent(tmp_path, home, "doomed-agent")
    try:
        wait_until(lambda: _agent_state(home) == "connected", 10, what="the agent to connect")
        time.sleep(1.5)  # its inventory is sent and its long poll parked on the manager

        manager.cli("connector", "delete", "-name", "doomed")
        deleted = time.monotonic()
        took = wait_until(lambda: _agent_state(home) == "refused", 15, what="status to say refused")
        print(f"`ca-connector status` said refused {took:.2f}s after `connector delete` returned")
        assert time.monotonic() - deleted < CUT_OFF, agent.log()
        time.sleep(1.0)  # a repeated log line would come with the agent's next turns
        log = agent.log()
        refusals = [line for line in log.splitlines() if "connector_unknown" in line]
        assert len(refusals) == 1, log  # logged once
        # One sentence: what happened, then what to do, each said once.
        assert refusals[0].count("deleted") == 1 and refusals[0].count("register -token T -force") == 1
        status = json.loads(_cc(home, "status", "-json").stdout)
        assert status["agent"]["state"] == "refused"
        assert status["agent"]["last_error"].count("deleted") == 1
    finally:
        agent.stop()


CUT_OFF = 3.0  # the bound


def _agent_state(home: Path) -> str | None:
    """What `ca-connector status` shows as the agent's state, read from the file it reads (running the
    CLI each time would add its start-up to the measurement)."""
    try:
        state = json.loads((home / "agent-state.json").read_text())["state"]
    except (OSError, ValueError, KeyError):
        return None
    return str(state)
