"""`ca-connector run`: the agent. Polls the manager, runs jobs on a few worker threads, reports results.

One loop turn:
 1. Re-read the data directory if config.toml or secrets.json changed (a `backend add`, `proxy set` or
    `register -force` in another process applies without a restart).
 2. Send the inventory on start, after the backends changed, and every inventory interval.
 3. Long-poll with capacity = free worker slots, carrying the results ready and the ids still running.
    While the long poll is out, a job that finishes is reported at once with a short poll (capacity 0,
    wait 0) rather than up to a poll-wait later: the manager may see two polls of one connector overlap.
    With every worker busy there is no long poll at all: the agent waits for a slot (bounded, so the
    running jobs' leases are still extended) and then reports.

Failures: an unreachable manager (or a proxy refusing its credentials) is retried with jittered
exponential back-off (`backoff`), never a busy loop. A refusal that ends the registration
(connector_unknown, connector_expired, protocol_version) is logged with its fix, written to the agent
state, and retried every 60 s, re-reading the registration each time. Stop (SIGTERM/SIGINT, or `stop()`):
take no more jobs, let the running ones finish (bounded), report their results, say goodbye, exit 0.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import filelock

from caconnector import __version__
from caconnector.connector.agent_state import AgentState, AgentStatus, write_state
from caconnector.connector.backoff import CAP, Backoff
from caconnector.connector.jobs import JobRunner
from caconnector.connector.journal import JOURNAL_FILE, Decision, Journal, JournalError
from caconnector.connector.link import Identity, Link, LinkError, LinkSettings, PollReply, Refused
from caconnector.connector.logs import Scrubber, agent_logging
from caconnector.connector.settings import ProxySettings, Registration, read_proxy, read_registration
from caconnector.connector.store import CONFIG_FILE, SECRETS_FILE, ConnectorStore, StoreError
from caconnector.connector.workers import WorkerPool
from caconnector.protocol.errors import FATAL_FOR_REGISTRATION
from caconnector.protocol.messages import Job, JobOutcome, PollRequest

log = logging.getLogger("caconnector.connector.agent")

AGENT_LOCK = "agent.lock"
REFUSED_RETRY = 60.0  # a refused registration needs a person; retry slowly
NOT_REGISTERED_RETRY = 10.0  # only reads local files: cheap, and `register` takes effect soon
LEASE_REFRESH = 15.0  # with every worker busy, report this often so running leases are extended
MIN_POLL_INTERVAL = 1.0  # at most one empty poll a second
PRUNE_EVERY = 3600.0
RELOG_EVERY = 600.0
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


def _files_fingerprint(store: ConnectorStore) -> str:
    digest = hashlib.sha256()
    for name in (CONFIG_FILE, SECRETS_FILE):
        try:
            digest.update((store.datadir / name).read_bytes())
        except OSError:
            digest.update(b"-")
        digest.update(b"\0")
    return digest.hexdigest()


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
        self._lock = threading.Lock()
        self._running: set[str] = set()
        self._finished = 0  # jobs finished by the workers, and how many of them a report has covered
        self._finished_reported = 0
        self._journal: Journal | None = None
        self._workers: WorkerPool | None = None
        # What was read from the data directory.
        self._fingerprint: str | None = None
        self._registration: Registration | None = None
        self._link_key: tuple[str, ProxySettings | None] | None = None
        self._link: Link | None = None
        self._backends_fp = ""
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
        try:
            with (
                agent_logging(datadir, self._scrubber, stderr=self.options.log_to_stderr),
                self._open_journal(datadir) as journal,
            ):
                self._journal = journal
                self._workers = WorkerPool(self.options.workers, self._execute)
                try:
                    return self._main()
                finally:
                    self._workers.close()
                    if self._link is not None:
                        self._link.close()
        finally:
            lock.release()

    def _open_journal(self, datadir: Path) -> Journal:
        path = datadir / JOURNAL_FILE
        try:
            return Journal(path, now=self._now)
        except (JournalError, sqlite3.Error, OSError) as exc:
            raise AgentError(
                f"cannot open the job journal {path} ({exc}); if it is damaged, move it aside and start "
                "again (the manager delivers unfinished jobs again)"
            ) from None

    def _main(self) -> int:
        log.info(
            "ca-connector %s starting: data directory %s, pid %d",
            __version__,
            self.store.datadir,
            os.getpid(),
        )
        self._set_state(AgentStatus.STARTING)
        while not self._stop.is_set():
            delay = self._turn()
            if self.options.once:
                break
            if delay > 0 and not self._stop.is_set():
                self._sleep(delay)
        self._shutdown()
        return 0 if self._contact_ok or not self.options.once else 1

    # ---- one turn -----------------------------------------------------------------------------------

    def _turn(self) -> float:
        """One cycle; returns how long to wait before the next."""
        try:
            self._refresh()
        except StoreError as exc:
            return self._trouble(AgentStatus.DISCONNECTED, str(exc), REFUSED_RETRY)
        if self._link is None:
            return self._trouble(
                AgentStatus.DISCONNECTED,
                "this connector is not registered: run ca-connector register -token T -manager URL",
                NOT_REGISTERED_RETRY,
            )
        started = self._monotonic()
        try:
            if self._inventory_due():
                self._send_inventory()
            took_jobs = self._poll()
        except LinkError as exc:
            return self._link_failed(exc)
        self._backoff.reset()
        self._maybe_prune()
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

    def _refresh(self) -> None:
        fingerprint = _files_fingerprint(self.store)
        if fingerprint == self._fingerprint:
            return
        snapshot = self.store.read()
        registration = read_registration(snapshot)
        proxy = read_proxy(snapshot)
        secrets = [s for b in snapshot.backends.values() for s in b.secrets.values()]
        if proxy is not None and proxy.password:
            secrets.append(proxy.password)
        if registration is not None:
            secrets.append(registration.private_key_pem)
        self._scrubber.update(secrets)

        link_key = (registration.fingerprint(), proxy) if registration else None
        if link_key != self._link_key:
            if self._link is not None:
                self._link.close()
                self._link = None
            self._registration = registration
            self._link_key = None
            if registration is not None:
                try:
                    settings = LinkSettings(registration.manager_url, registration.cacert_pem, proxy)
                    identity = Identity(registration.connector_id, registration.private_key())
                    self._link = Link(settings, identity)
                except ValueError as exc:
                    raise StoreError(
                        f"the stored registration cannot be used ({exc}); register again"
                    ) from None
                log.info(
                    "manager %s%s, connector %s (%s)",
                    registration.manager_url,
                    f" through proxy {proxy.display()}" if proxy else "",
                    registration.name,
                    registration.connector_id,
                )
            self._link_key = link_key
            self._inventory_fp = None  # a new registration or route: report the inventory again
            self._backoff.reset()

        backends = [
            [b.name, b.type, b.options, sorted(b.secrets.items())] for b in snapshot.backends.values()
        ]
        self._backends_fp = hashlib.sha256(json.dumps(backends, default=str).encode()).hexdigest()
        self._fingerprint = fingerprint

    # ---- inventory ----------------------------------------------------------------------------------

    def _inventory_due(self) -> bool:
        if self._inventory_fp != self._backends_fp:
            return True
        interval = self._registration.inventory_interval_seconds if self._registration else 0.0
        return self._monotonic() - self._inventory_at >= interval

    def _send_inventory(self) -> None:
        assert self._link is not None  # noqa: S101 - _turn checked it
        fingerprint = self._backends_fp
        report = self._runner.inventory()
        self._link.inventory(report)
        self._inventory_fp = fingerprint
        self._inventory_at = self._monotonic()
        self._contact()
        summary = ", ".join(f"{b.name} ({b.type}, {b.status})" for b in report.backends) or "no backend"
        log.info("inventory sent: %s", summary)

    # ---- polling ------------------------------------------------------------------------------------

    def _poll_wait(self) -> float:
        wait = self.options.poll_wait
        if wait is None:
            wait = self._registration.poll_wait_seconds if self._registration else 30.0
        return max(0.0, min(wait, MAX_POLL_WAIT))

    def _running_ids(self) -> list[str]:
        with self._lock:
            return sorted(self._running)

    def _poll(self) -> bool:
        """One poll; True if it brought jobs."""
        assert self._link is not None and self._journal is not None  # noqa: S101 - _turn checked it
        free = self.options.workers - len(self._running_ids())
        if free <= 0:
            # A long poll could bring nothing we could run: wait for a slot instead, then report.
            # Only a job finishing (or the lease refresh) is a reason to talk to the manager now.
            self._wake.clear()
            if self._finished == self._finished_reported:
                self._wake.wait(LEASE_REFRESH)
            self._finished_reported = self._finished
            self._report()
            return True  # not an empty poll: the workers are busy, come back at once
        request = PollRequest(
            results=self._journal.unacknowledged(),
            running=self._running_ids(),
            capacity=min(free, 64),
            wait_seconds=self._poll_wait(),
        )
        reply = self._long_poll(self._link, request)
        if reply is None:
            return False
        self._handle(reply)
        return bool(reply.response.jobs or reply.unreadable)

    def _long_poll(self, link: Link, request: PollRequest) -> PollReply | None:
        """Run the poll on a helper thread so that finished jobs can be reported while it waits.

        Returns None if a stop came first: the poll is abandoned, and any job it brings stays with the
        manager until its lease expires.
        """
        assert self._journal is not None  # noqa: S101
        future: Future[PollReply] = Future()

        def call() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(link.poll(request))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread, which re-raises
                future.set_exception(exc)

        self._wake.clear()
        future.add_done_callback(lambda _: self._wake.set())
        threading.Thread(target=call, name="ca-connector-poll", daemon=True).start()
        reported = {r.job_id for r in request.results}
        while not future.done():
            self._wake.wait(1.0)
            self._wake.clear()
            if self._stop.is_set():
                return None
            fresh = [r.job_id for r in self._journal.unacknowledged() if r.job_id not in reported]
            if fresh and not future.done():
                try:
                    # Not the results the long poll carries: the manager acknowledges those when it answers.
                    self._report(skip=reported)
                except LinkError as exc:
                    # The long poll decides whether the manager is reachable; the results stay queued.
                    log.debug("could not report results early: %s", exc.message)
                reported.update(fresh)
        return future.result()

    def _report(self, skip: set[str] | frozenset[str] = frozenset()) -> None:
        """A short poll that only delivers results and extends the running jobs' leases."""
        assert self._link is not None and self._journal is not None  # noqa: S101
        results = [r for r in self._journal.unacknowledged() if r.job_id not in skip]
        running = self._running_ids()
        if not results and not running:
            return
        self._handle(
            self._link.poll(PollRequest(results=results, running=running, capacity=0, wait_seconds=0))
        )

    def _handle(self, reply: PollReply) -> None:
        assert self._journal is not None and self._workers is not None  # noqa: S101
        self._contact()
        self._journal.acknowledge(reply.response.acknowledged)
        for job_id, problem in reply.unreadable.items():
            log.warning("job %s: cannot read it (%s); answered not_supported", job_id, problem)
            self._journal.record_unreadable(job_id, problem)
        for job in reply.response.jobs:
            if self._stop.is_set():
                break  # stopping: take no job; its lease expires and the manager hands it out again
            decision = self._journal.begin(job, self._run_id)
            if decision is Decision.RUN:
                with self._lock:
                    self._running.add(job.id)
                self._workers.submit(job)
            elif decision is Decision.ANSWERED:
                log.info("job %s (%s) was delivered again: answered from the journal", job.id, job.kind.value)

    # ---- workers ------------------------------------------------------------------------------------

    def _execute(self, job: Job) -> None:
        assert self._journal is not None  # noqa: S101
        started = self._monotonic()
        result = self._runner.run(job)
        try:
            self._journal.finish(result)
        except sqlite3.Error:
            log.exception("job %s: cannot record its result; the manager will deliver it again", job.id)
        finally:
            with self._lock:
                self._running.discard(job.id)
                self._finished += 1
            self._wake.set()
        outcome = result.outcome.value
        if result.outcome is JobOutcome.ERROR and result.error is not None:
            outcome = f"error code={result.error.code} message={result.error.message!r}"
        log.info(
            "job %s kind=%s backend=%s outcome=%s duration=%.3fs",
            job.id,
            job.kind.value,
            job.backend or "-",
            outcome,
            self._monotonic() - started,
        )

    # ---- state and housekeeping ---------------------------------------------------------------------

    def _contact(self) -> None:
        self._last_trouble = None
        if self._state.state is not AgentStatus.CONNECTED and self._registration is not None:
            log.info("connected to %s as %s", self._registration.manager_url, self._registration.name)
        self._contact_ok = True
        self._set_state(AgentStatus.CONNECTED, contact=True)

    def _set_state(self, status: AgentStatus, *, error: str | None = None, contact: bool = False) -> None:
        now = self._now()
        self._state = AgentState(
            pid=os.getpid(),
            state=status,
            last_contact=now if contact else self._state.last_contact,
            last_error=error if error is not None else (None if contact else self._state.last_error),
            manager_url=self._registration.manager_url if self._registration else None,
            updated_at=now,
        )
        try:
            write_state(self.store.datadir, self._state)
        except OSError as exc:
            log.warning("cannot write the agent state file: %s", exc.strerror)

    def _maybe_prune(self) -> None:
        assert self._journal is not None  # noqa: S101
        now = self._monotonic()
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        try:
            removed = self._journal.prune()
        except sqlite3.Error as exc:
            log.warning("cannot prune the job journal: %s", exc)
            return
        if removed:
            log.info("journal: pruned %d old result(s)", removed)

    def _shutdown(self) -> None:
        assert self._journal is not None and self._workers is not None  # noqa: S101
        if self._stop.is_set():
            for job in self._workers.drain():
                self._journal.abandon(job.id)
                with self._lock:
                    self._running.discard(job.id)
        if not self._workers.wait_idle(self.options.stop_timeout):
            log.warning(
                "%d job(s) still running after %.0f s; their results will be sent by the next run",
                len(self._running_ids()),
                self.options.stop_timeout,
            )
        if self._link is not None and self._contact_ok:
            try:
                self._report()
                self._link.goodbye()
            except LinkError as exc:
                log.warning("could not say goodbye to the manager: %s", exc.message)
        self._set_state(AgentStatus.STOPPED, error=self._state.last_error)
        log.info("ca-connector stopped")
