"""`ca-connector run`: the agent. Polls the manager, runs jobs on a few worker threads, reports results.

This module wires three parts and drives them: the `watcher` (the data directory and the Link), the
`poller` (the long poll and what is done with its answer) and the `workers` (the jobs in hand, run by
`jobs.JobRunner`). One loop turn:
 1. Re-read the data directory if config.toml or secrets.json changed (the watcher).
 2. Send the inventory on start, after the backends changed, and every inventory interval.
 3. Poll (the poller): capacity = free worker slots, carrying the results ready and the ids running.

Failures: an unreachable manager (or a proxy refusing its credentials) is retried with jittered
exponential back-off (`backoff`), never a busy loop. A refusal that ends the registration
(connector_unknown, connector_expired, protocol_version) is logged with its fix, written to the agent
state, and retried every 60 s, re-reading the registration each time. Stop (SIGTERM/SIGINT, or `stop()`):
take no more jobs, let the running ones finish (bounded), report their results, say goodbye, exit 0.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import filelock

from caconnector import __version__
from caconnector.connector.agent_state import AgentState, AgentStatus, write_state
from caconnector.connector.backoff import CAP, Backoff
from caconnector.connector.jobs import JobRunner
from caconnector.connector.journal import JOURNAL_FILE, Journal, JournalError
from caconnector.connector.link import LinkError, Refused
from caconnector.connector.logs import LOG_SECTION, LogContext, LogSettings, Scrubber, agent_logging
from caconnector.connector.poller import Poller
from caconnector.connector.store import ConnectorStore, StoreError
from caconnector.connector.watcher import Connection, Watcher
from caconnector.connector.workers import Workers
from caconnector.protocol.errors import FATAL_FOR_REGISTRATION

log = logging.getLogger("caconnector.connector.agent")

AGENT_LOCK = "agent.lock"
REFUSED_RETRY = 60.0  # a refused registration needs a person; retry slowly
NOT_REGISTERED_RETRY = 10.0  # only reads local files: cheap, and `register` takes effect soon
MIN_POLL_INTERVAL = 1.0  # at most one empty poll a second
PRUNE_EVERY = 3600.0
RELOG_EVERY = 600.0
# The state file (`ca-connector status`) is rewritten on contact at most this often while Connected:
# writing it (atomically, with fsync) on every poll cost more than the poll itself.
CONTACT_RESOLUTION = dt.timedelta(seconds=1)
MAX_POLL_WAIT = 60.0  # PollRequest.wait_seconds allows at most this


class AgentError(Exception):
    """The agent cannot start; the message says why."""


@dataclass(frozen=True)
class AgentOptions:
    workers: int = 4
    once: bool = False  # one turn (inventory, one poll, its jobs, their results), then stop
    poll_wait: float | None = None  # override the manager's long-poll wait (tests, diagnostics)
    stop_timeout: float = 30.0  # how long a stop waits for running jobs
    log_to_stderr: bool = True


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Agent:
    def __init__(
        self,
        store: ConnectorStore,
        options: AgentOptions | None = None,
        *,
        sleep: Callable[[float], object] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        now: Callable[[], dt.datetime] = _utcnow,
        backoff: Backoff | None = None,
        hostname: str | None = None,
    ) -> None:
        self.store = store
        self.options = options or AgentOptions()
        if self.options.workers < 1:
            raise AgentError("-workers must be at least 1")
        self._stop = threading.Event()
        self._wake = threading.Event()  # a job finished, a poll returned, or stop
        # Every wait between turns goes through `sleep` (tests count them on a fake clock); the default
        # returns early on stop.
        self._sleep = sleep or self._stop.wait
        self._monotonic = monotonic
        self._now = now
        self._backoff = backoff or Backoff()
        self._runner = JobRunner(store, hostname or socket.gethostname())
        self._run_id = uuid.uuid4().hex
        self._scrubber = Scrubber()
        self._watcher = Watcher(store, self._scrubber)
        self._log_context = LogContext()
        # What was sent.
        self._inventory_fp: str | None = None
        self._inventory_at = 0.0
        self._pruned_at: float | None = None
        self._state = AgentState(pid=os.getpid(), state=AgentStatus.STARTING)
        self._contact_ok = False
        self._last_trouble: str | None = None
        self._last_trouble_at = 0.0

    # ---- control ------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the agent to stop (safe from a signal handler or another thread)."""
        self._stop.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def state(self) -> AgentState:
        return self._state

    def run(self) -> int:
        """Run until stopped (or one turn with `once`). Returns the exit code."""
        datadir = self.store.datadir
        try:
            datadir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise AgentError(f"cannot create the data directory {datadir}: {exc.strerror}") from None
        lock = filelock.FileLock(datadir / AGENT_LOCK, timeout=0, mode=0o600)
        try:
            lock.acquire()
        except filelock.Timeout:
            raise AgentError(
                f"another ca-connector run is already using data directory {datadir}; "
                "stop it first (ca-connector service stop), or give this one another -datadir"
            ) from None
        log_settings, log_problems = self._log_settings()
        try:
            with (
                agent_logging(
                    datadir,
                    self._scrubber,
                    stderr=self.options.log_to_stderr,
                    settings=log_settings,
                    context=self._log_context,
                ),
                self._open_journal(datadir) as journal,
            ):
                workers = Workers(self.options.workers, self._runner, journal, self._wake, self._monotonic)
                poller = Poller(
                    journal,
                    workers,
                    run_id=self._run_id,
                    wake=self._wake,
                    stop=self._stop,
                    on_contact=self._contact,
                )
                for problem in log_problems:
                    log.warning("config.toml: %s; using the default", problem)
                try:
                    return self._main(journal, workers, poller)
                finally:
                    workers.close()
                    self._watcher.close()
        finally:
            lock.release()

    def _log_settings(self) -> tuple[LogSettings, list[str]]:
        try:
            return LogSettings.from_section(self.store.read().section(LOG_SECTION))
        except StoreError as exc:
            return LogSettings(), [str(exc)]

    def _open_journal(self, datadir: Path) -> Journal:
        path = datadir / JOURNAL_FILE
        try:
            return Journal(path, now=self._now)
        except (JournalError, sqlite3.Error, OSError) as exc:
            raise AgentError(
                f"cannot open the job journal {path} ({exc}); if it is damaged, move it aside and start "
                "again (the manager delivers unfinished jobs again)"
            ) from None

    def _main(self, journal: Journal, workers: Workers, poller: Poller) -> int:
        log.info(
            "ca-connector %s starting: data directory %s, pid %d",
            __version__,
            self.store.datadir,
            os.getpid(),
        )
        self._set_state(AgentStatus.STARTING)
        while not self._stop.is_set():
            delay = self._turn(journal, poller)
            if self.options.once:
                break
            if delay > 0 and not self._stop.is_set():
                self._sleep(delay)
        self._shutdown(workers, poller)
        return 0 if self._contact_ok or not self.options.once else 1

    # ---- one turn -----------------------------------------------------------------------------------

    def _turn(self, journal: Journal, poller: Poller) -> float:
        """One cycle; returns how long to wait before the next."""
        try:
            if self._watcher.refresh():
                self._inventory_fp = None  # a new registration or route: report the inventory again
                self._backoff.reset()
        except StoreError as exc:
            return self._trouble(AgentStatus.DISCONNECTED, str(exc), REFUSED_RETRY)
        connection = self._watcher.connection
        if connection is None:
            return self._trouble(
                AgentStatus.DISCONNECTED,
                "this connector is not registered: run ca-connector register -token T -manager URL",
                NOT_REGISTERED_RETRY,
            )
        started = self._monotonic()
        try:
            if self._inventory_due(connection):
                self._send_inventory(connection)
            took_jobs = poller.poll(connection.link, self._poll_wait(connection))
        except LinkError as exc:
            return self._link_failed(exc)
        self._backoff.reset()
        self._maybe_prune(journal)
        if took_jobs:
            return 0.0
        # A manager that answers at once with nothing (a wait of 0, a misbehaving proxy) must not turn
        # the loop into a busy loop.
        return max(0.0, MIN_POLL_INTERVAL - (self._monotonic() - started))

    def _link_failed(self, exc: LinkError) -> float:
        if isinstance(exc, Refused) and exc.code in FATAL_FOR_REGISTRATION:
            return self._trouble(AgentStatus.REFUSED, exc.message, REFUSED_RETRY)
        # Anything else (unreachable, proxy credentials, a signature refused for clock skew, a replay):
        # back off and try again; the settings are re-read before each try.
        delay = self._backoff.next_delay()
        retry_after = getattr(exc, "retry_after", None)
        if retry_after:
            delay = max(delay, min(float(retry_after), CAP))
        return self._trouble(AgentStatus.DISCONNECTED, exc.message, delay)

    def _trouble(self, status: AgentStatus, message: str, delay: float) -> float:
        self._contact_ok = False
        now = self._monotonic()
        # The same trouble is logged again only now and then: an unregistered agent checks every 10 s.
        if message != self._last_trouble or now - self._last_trouble_at >= RELOG_EVERY:
            level = logging.ERROR if status is AgentStatus.REFUSED else logging.WARNING
            retry = "" if self.options.once else f"; retrying in {delay:.1f} s"
            log.log(level, "%s%s", message, retry)
            self._last_trouble, self._last_trouble_at = message, now
        self._set_state(status, error=message)
        return delay

    # ---- inventory ----------------------------------------------------------------------------------

    def _inventory_due(self, connection: Connection) -> bool:
        if self._inventory_fp != self._watcher.backends_fingerprint:
            return True
        interval = connection.registration.inventory_interval_seconds
        return self._monotonic() - self._inventory_at >= interval

    def _send_inventory(self, connection: Connection) -> None:
        fingerprint = self._watcher.backends_fingerprint
        report = self._runner.inventory()
        connection.link.inventory(report)
        self._inventory_fp = fingerprint
        self._inventory_at = self._monotonic()
        self._contact()
        summary = ", ".join(f"{b.name} ({b.type}, {b.status})" for b in report.backends) or "no backend"
        log.info("inventory sent: %s", summary)

    def _poll_wait(self, connection: Connection) -> float:
        wait = self.options.poll_wait
        if wait is None:
            wait = connection.registration.poll_wait_seconds
        return max(0.0, min(wait, MAX_POLL_WAIT))

    # ---- state and housekeeping ---------------------------------------------------------------------

    def _contact(self) -> None:
        self._last_trouble = None
        registration = self._watcher.registration
        if registration is not None:
            self._log_context.connector = registration.name
        if self._state.state is not AgentStatus.CONNECTED and registration is not None:
            log.info("connected to %s as %s", registration.manager_url, registration.name)
        self._contact_ok = True
        last = self._state.last_contact
        if (
            self._state.state is AgentStatus.CONNECTED
            and last is not None
            and self._now() - last < CONTACT_RESOLUTION
        ):
            return  # `status` shows the last contact to the second: no file rewrite per poll
        self._set_state(AgentStatus.CONNECTED, contact=True)

    def _set_state(self, status: AgentStatus, *, error: str | None = None, contact: bool = False) -> None:
        now = self._now()
        registration = self._watcher.registration
        self._state = AgentState(
            pid=os.getpid(),
            state=status,
            last_contact=now if contact else self._state.last_contact,
            last_error=error if error is not None else (None if contact else self._state.last_error),
            manager_url=registration.manager_url if registration else None,
            updated_at=now,
        )
        try:
            write_state(self.store.datadir, self._state)
        except OSError as exc:
            log.warning("cannot write the agent state file: %s", exc.strerror)

    def _maybe_prune(self, journal: Journal) -> None:
        now = self._monotonic()
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        try:
            removed = journal.prune()
        except sqlite3.Error as exc:
            log.warning("cannot prune the job journal: %s", exc)
            return
        if removed:
            log.info("journal: pruned %d old result(s)", removed)

    def _shutdown(self, workers: Workers, poller: Poller) -> None:
        if self._stop.is_set():
            workers.abandon_queued()
        if not workers.wait_idle(self.options.stop_timeout):
            log.warning(
                "%d job(s) still running after %.0f s; their results will be sent by the next run",
                len(workers.running_ids()),
                self.options.stop_timeout,
            )
        connection = self._watcher.connection
        if connection is not None and self._contact_ok:
            try:
                poller.report(connection.link)
                connection.link.goodbye()
            except LinkError as exc:
                log.warning("could not say goodbye to the manager: %s", exc.message)
        self._set_state(AgentStatus.STOPPED, error=self._state.last_error)
        log.info("ca-connector stopped")
