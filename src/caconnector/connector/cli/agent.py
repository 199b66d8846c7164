"""Handlers of the commands that run and supervise the agent: run, status, service, uninstall."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import filelock

from caconnector.connector.agent import AGENT_LOCK, Agent, AgentOptions
from caconnector.connector.agent_state import read_state
from caconnector.connector.cli.common import CommandError, UsageError, datadir_of, store_of
from caconnector.connector.link_settings import read_proxy, read_registration
from caconnector.connector.service import ServiceError
from caconnector.connector.store import KEY_FILE_ENV
from caconnector.connector.supervisor import SUPERVISED_ENV


@contextlib.contextmanager
def _stop_on_signals(agent: Agent) -> Iterator[None]:
    """SIGTERM (systemd stop) and SIGINT (Ctrl-C) ask the agent to stop cleanly."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if agent.stopping and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: do not wait for running jobs
        agent.stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def cmd_run(args: argparse.Namespace) -> Any:
    options = AgentOptions(
        workers=args.workers,
        once=args.once,
        poll_wait=args.pollwait,
        # Under the supervised daemon stderr is a file: the log file has every line already.
        log_to_stderr=os.environ.get(SUPERVISED_ENV) != "1",
    )
    agent = Agent(store_of(args), options)
    with _stop_on_signals(agent):
        code = agent.run()
    state = agent.state
    if code != 0:
        raise CommandError(state.last_error or "the agent could not reach the manager")
    return state.view(), ""


def _service_view(datadir: Path) -> dict[str, Any]:
    from caconnector.connector.service_control import ConnectorService  # noqa: PLC0415

    try:
        return ConnectorService.for_datadir(datadir).status()
    except (OSError, ServiceError) as exc:
        return {"running": False, "error": str(exc)}


def cmd_status(args: argparse.Namespace) -> Any:
    datadir = datadir_of(args)
    snapshot = store_of(args).read()
    registration = read_registration(snapshot)
    proxy = read_proxy(snapshot)
    agent = read_state(datadir)
    agent_view: dict[str, Any] | None = None
    if agent is not None:
        agent_view = agent.view()
        # A state file left by a killed agent still says "connected": say whether its process lives.
        agent_view["process_running"] = agent.process_alive() and agent.state.value != "stopped"
    view: dict[str, Any] = {
        "datadir": str(datadir),
        "registered": registration is not None,
        "manager_url": registration.manager_url if registration else None,
        "connector_id": registration.connector_id if registration else None,
        "name": registration.name if registration else None,
        "registered_at": registration.registered_at.isoformat() if registration else None,
        "proxy": proxy.display() if proxy else None,
        "backends": [{"name": b.name, "type": b.type} for b in snapshot.backends.values()],
        "agent": agent_view,
        "service": _service_view(datadir),
    }
    return view, _status_text(view)


def _status_text(view: dict[str, Any]) -> str:
    lines = [f"data directory: {view['datadir']}"]
    if view["registered"]:
        lines.append(
            f"registered:     yes, as {view['name']} ({view['connector_id']}) on {view['registered_at']}"
        )
        lines.append(f"manager:        {view['manager_url']}")
    else:
        lines.append("registered:     no (run ca-connector register -token T -manager URL)")
    lines.append(f"proxy:          {view['proxy'] or 'none (direct connection)'}")
    backends = ", ".join(f"{b['name']} ({b['type']})" for b in view["backends"]) or "none"
    lines.append(f"backends:       {backends}")
    agent = view["agent"]
    if agent is None:
        lines.append("agent:          has not run here")
    else:
        running = "" if agent["process_running"] or agent["state"] == "stopped" else " (process gone)"
        lines.append(f"agent:          {agent['state']}{running}, pid {agent['pid']}")
        lines.append(f"last contact:   {agent['last_contact'] or 'never'}")
        if agent["last_error"]:
            lines.append(f"last error:     {agent['last_error']}")
    service = view["service"]
    if "error" in service:
        lines.append(f"service:        unknown ({service['error']})")
    else:
        state = (
            f"running, pid {service['pid']}, since {service['since']}" if service["running"] else "stopped"
        )
        lines.append(f"service:        {state} ({service['service']})")
    return "\n".join(lines)


def _service_call(action: str, args: argparse.Namespace) -> Any:
    from caconnector.connector.service_control import ConnectorService, status_text  # noqa: PLC0415

    service = ConnectorService.for_datadir(datadir_of(args))
    try:
        if action == "install":
            return service.install()
        if action == "uninstall":
            return service.uninstall()
        if action == "status":
            view = service.status()
            return view, status_text(view)
        return service.control(action)
    except ServiceError as exc:
        raise CommandError(str(exc)) from None


def cmd_service(args: argparse.Namespace) -> Any:
    return _service_call(args.service_command, args)


def _confirm_purge(args: argparse.Namespace, datadir: Any) -> None:
    if args.yes or args.silent:
        return
    if not sys.stdin.isatty():
        raise UsageError(f"-purge deletes {datadir} and everything in it: confirm with -yes")
    answer = input(
        f"Delete {datadir}: the registration, the backends with their credentials and CA keys, the journal "
        "and the logs? This cannot be undone. Type yes to confirm: "
    )
    if answer.strip().lower() != "yes":
        raise CommandError("nothing was deleted")


def cmd_uninstall(args: argparse.Namespace) -> Any:
    datadir = datadir_of(args)
    if args.purge:
        _confirm_purge(args, datadir)
    from caconnector.connector.service_control import ConnectorService  # noqa: PLC0415

    lines: list[str] = []
    try:
        view, text = ConnectorService.for_datadir(datadir).uninstall()
    except ServiceError as exc:
        raise CommandError(str(exc)) from None
    removed = bool(view["removed"])
    lines.append(text)
    purged = False
    if args.purge and datadir.exists():
        # An agent still running (not under systemd) would write into the directory being deleted.
        lock = filelock.FileLock(datadir / AGENT_LOCK, timeout=0)
        try:
            with lock:
                shutil.rmtree(datadir)
        except filelock.Timeout:
            raise CommandError(
                f"ca-connector run is still using {datadir}: stop it first, then run uninstall -purge again"
            ) from None
        except OSError as exc:
            raise CommandError(f"cannot delete {datadir}: {exc.strerror}") from None
        purged = True
        lines.append(f"deleted {datadir}")
        key_file = os.environ.get(KEY_FILE_ENV)
        if key_file:
            lines.append(
                f"the key file {key_file} ({KEY_FILE_ENV}) is kept: delete it if it is no longer needed"
            )
    lines.append("delete the connector in the manager too (Connectors, Delete) if it is not coming back")
    return {"service_removed": removed, "purged": purged}, "\n".join(lines)
