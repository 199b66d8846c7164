"""The service where systemd is not running (containers, minimal hosts): a supervised daemon.

`start` double-forks a supervisor process (setsid, detached from the terminal) that writes
`<datadir>/supervisor.pid`, runs `ca-connector run` for the data directory as a child, and starts it again
when it dies, with a back-off that doubles from 1 s to 30 s (reset once a child has run for a minute), so a
crash loop cannot spin. SIGTERM to the supervisor (what `stop` sends) is passed on to the agent, which
finishes its jobs and says goodbye; the supervisor then removes its pid file and exits.

When root starts it for a data directory owned by another user (the package's `ca-connector` user), the
agent runs as that user: the same account systemd's unit names.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from caconnector.connector.ownership import hand_over

PID_FILE = "supervisor.pid"
SUPERVISOR_LOG = "supervisor.log"
FIRST_DELAY = 1.0
MAX_DELAY = 30.0
HEALTHY_RUN = 60.0  # a child that ran this long was not crash-looping: the back-off starts over
STOP_TIMEOUT = 70.0  # the agent waits up to 30 s for jobs, then reports and says goodbye
START_TIMEOUT = 10.0
SUPERVISED_ENV = "CA_CONNECTOR_SUPERVISED"
SUPERVISOR_LOG_MAX = 5_000_000  # supervisor.log is moved to supervisor.log.1 past this, at start


class SupervisorError(Exception):
    """The daemon cannot be started or stopped as asked; the message says why."""


@dataclass(frozen=True)
class DaemonStatus:
    running: bool
    pid: int | None = None  # the supervisor's
    agent_pid: int | None = None
    since: dt.datetime | None = None  # when the supervisor started
    restarts: int = 0

    def view(self) -> dict[str, Any]:
        return {
            "manager": "daemon",
            "running": self.running,
            "pid": self.pid,
            "agent_pid": self.agent_pid,
            "since": self.since.isoformat() if self.since else None,
            "restarts": self.restarts,
        }


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not: an init that reaps slowly leaves them)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own child not reaped yet) still answers kill 0; /proc tells.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


class Supervisor:
    """The supervised daemon of one data directory."""

    def __init__(self, datadir: Path, agent_command: list[str] | None = None) -> None:
        self.datadir = datadir.absolute()
        self.agent_command = agent_command or [
            sys.executable,
            "-m",
            "caconnector.connector.cli",
            "run",
            "-datadir",
            str(self.datadir),
        ]

    @property
    def pid_file(self) -> Path:
        return self.datadir / PID_FILE

    # ---- what others read ---------------------------------------------------------------------------

    def _record(self) -> dict[str, Any] | None:
        try:
            document = json.loads(self.pid_file.read_text())
        except (OSError, ValueError):
            return None
        return document if isinstance(document, dict) and isinstance(document.get("pid"), int) else None

    def status(self) -> DaemonStatus:
        record = self._record()
        if record is None or not alive(record["pid"]):
            return DaemonStatus(running=False)
        agent_pid = record.get("agent_pid")
        since = record.get("since")
        return DaemonStatus(
            running=True,
            pid=record["pid"],
            agent_pid=agent_pid if isinstance(agent_pid, int) and alive(agent_pid) else None,
            since=dt.datetime.fromisoformat(since) if isinstance(since, str) else None,
            restarts=int(record.get("restarts", 0)),
        )

    # ---- control ------------------------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> DaemonStatus:
        """Start the daemon (nothing to do if it runs) and return once its agent has been started."""
        current = self.status()
        if current.running:
            return current
        try:
            self.datadir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise SupervisorError(
                f"cannot create the data directory {self.datadir}: {exc.strerror}"
            ) from None
        self.pid_file.unlink(missing_ok=True)  # a stale one: its process is gone
        first = os.fork()
        if first == 0:  # the intermediate child: a new session, then the daemon, then exit
            try:
                os.setsid()
                if os.fork() == 0:
                    self._daemon_main()
            finally:
                os._exit(0)
        os.waitpid(first, 0)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status()
            if status.running and status.agent_pid is not None:
                return status
            time.sleep(0.05)
        raise SupervisorError(
            f"the service did not start within {timeout:.0f} s; see {self.datadir / 'logs' / SUPERVISOR_LOG}"
        )

    def stop(self, timeout: float = STOP_TIMEOUT) -> bool:
        """Stop the daemon and its agent; False if it was not running."""
        status = self.status()
        if not status.running or status.pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        try:
            os.kill(status.pid, signal.SIGTERM)
        except ProcessLookupError:
            return False
        except PermissionError:
            raise SupervisorError(
                f"the service (pid {status.pid}) belongs to another user: run as root"
            ) from None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not alive(status.pid):
                self.pid_file.unlink(missing_ok=True)
                return True
            time.sleep(0.05)
        raise SupervisorError(f"the service (pid {status.pid}) did not stop within {timeout:.0f} s")

    # ---- the daemon ---------------------------------------------------------------------------------

    def _daemon_main(self) -> None:
        """Runs in the detached grandchild; never returns."""
        code = 1
        try:
            self._detach_stdio()
            code = _Loop(self).run()
        finally:
            os._exit(code)

    def _detach_stdio(self) -> None:
        logs = self.datadir / "logs"
        logs.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.umask(0o077)
        os.chdir("/")
        log = logs / SUPERVISOR_LOG
        if log.exists() and log.stat().st_size > SUPERVISOR_LOG_MAX:
            log.replace(log.with_name(f"{SUPERVISOR_LOG}.1"))
        null = os.open(os.devnull, os.O_RDONLY)
        out = os.open(logs / SUPERVISOR_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(null)
        os.close(out)

    def write_record(self, document: dict[str, Any]) -> None:
        tmp = self.pid_file.with_name(f".{PID_FILE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(document) + "\n")
        tmp.chmod(0o644)
        tmp.replace(self.pid_file)


def _owner_ids(datadir: Path) -> tuple[int, int] | None:
    """The (uid, gid) the agent runs as when root supervises another user's data directory."""
    if os.geteuid() != 0:
        return None
    info = datadir.stat()
    return None if info.st_uid == 0 else (info.st_uid, info.st_gid)


class _Loop:
    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.stopping = False
        self.child: subprocess.Popen[bytes] | None = None
        self.record: dict[str, Any] = {"pid": os.getpid(), "since": _now().isoformat(), "restarts": 0}

    def _on_term(self, signum: int, frame: object) -> None:
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.child.send_signal(signal.SIGTERM)

    def _stopped(self) -> bool:
        return self.stopping  # a method, so type narrowing does not assume a signal cannot set it

    def _say(self, message: str) -> None:
        print(f"{_now().isoformat()} supervisor: {message}", flush=True)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        ids = _owner_ids(self.supervisor.datadir)
        delay = FIRST_DELAY
        self._say(f"started, pid {os.getpid()}, for {self.supervisor.datadir}")
        try:
            while not self._stopped():
                started = time.monotonic()
                hand_over(self.supervisor.datadir)  # what root wrote since (install, backend add)
                self.child = subprocess.Popen(
                    self.supervisor.agent_command,
                    stdin=subprocess.DEVNULL,
                    user=ids[0] if ids else None,
                    group=ids[1] if ids else None,
                    extra_groups=[] if ids else None,
                    # The agent's log lines go to its rotating file only; what still reaches stderr
                    # (a crash's traceback) lands in supervisor.log.
                    env={**os.environ, "PYTHONUNBUFFERED": "1", SUPERVISED_ENV: "1"},
                )
                self.record["agent_pid"] = self.child.pid
                self.supervisor.write_record(self.record)
                code = self._wait_child()
                if self._stopped():
                    break
                ran = time.monotonic() - started
                delay = FIRST_DELAY if ran >= HEALTHY_RUN else delay
                self._say(
                    f"the agent (pid {self.child.pid}) exited with {code}; starting it in {delay:.0f} s"
                )
                self.record["restarts"] += 1
                self.record["agent_pid"] = None
                self.supervisor.write_record(self.record)
                self._sleep(delay)
                delay = min(delay * 2, MAX_DELAY)
        finally:
            self._say("stopped")
            with contextlib.suppress(OSError):
                self.supervisor.pid_file.unlink()
        return 0

    def _wait_child(self) -> int:
        """Wait for the agent; once stopping, make sure it got SIGTERM, and SIGKILL it if it hangs."""
        child = self.child
        assert child is not None  # noqa: S101 - set by the caller
        signalled_at: float | None = None
        while True:
            try:
                return child.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
            if not self.stopping:
                continue
            if signalled_at is None:
                signalled_at = time.monotonic()
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signal.SIGTERM)
            elif time.monotonic() - signalled_at > STOP_TIMEOUT - 10:
                self._say(f"the agent (pid {child.pid}) did not stop: killing it")
                with contextlib.suppress(ProcessLookupError):
                    child.kill()

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(0.1)
