"""The agent's conversation with the manager about jobs: the long poll, the short reports, and what
is done with an answer (acknowledged results forgotten, new jobs journaled and handed to the workers).

The long poll asks for as many jobs as there are free worker slots and carries the results ready and
the ids still running. While it is out, a job that finishes is reported at once with a short poll
(capacity 0, wait 0) rather than up to a poll-wait later: the manager may see two polls of one
connector overlap. With every worker busy there is no long poll at all: the poller waits for a slot
(bounded, so the running jobs' leases are still extended) and then reports.

The Link is an argument, not a field: the watcher replaces it when the registration or route changes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

from caconnector.connector.journal import Delivery, Journal
from caconnector.connector.link import Link, LinkError, PollReply
from caconnector.connector.workers import Workers
from caconnector.protocol.messages import PollRequest

log = logging.getLogger("caconnector.connector.agent")

LEASE_REFRESH = 15.0  # with every worker busy, report this often so running leases are extended
MAX_CAPACITY = 64  # PollRequest.capacity allows at most this
REPORT_GATHER = 0.01  # a result waits at most this long for the other running jobs' to share its report


class Poller:
    def __init__(
        self,
        journal: Journal,
        workers: Workers,
        *,
        run_id: str,
        wake: threading.Event,
        stop: threading.Event,
        on_contact: Callable[[], None],
    ) -> None:
        self._journal = journal
        self._workers = workers
        self._run_id = run_id
        self._wake = wake  # set by a finished job, a returned poll, or stop
        self._stop = stop
        self._on_contact = on_contact

    def poll(self, link: Link, wait: float) -> bool:
        """One poll; True if it brought jobs (or the workers are all busy: come back at once)."""
        free = self._workers.free()
        if free <= 0:
            # A long poll could bring nothing we could run: wait for a slot instead, then report.
            # Only a job finishing (or the lease refresh) is a reason to talk to the manager now.
            self._wake.clear()
            if not self._workers.unreported():
                self._wake.wait(LEASE_REFRESH)
            self._workers.mark_reported()
            self.report(link)
            return True
        request = PollRequest(
            results=self._journal.unacknowledged(),
            running=self._workers.running_ids(),
            capacity=min(free, MAX_CAPACITY),
            wait_seconds=wait,
        )
        reply = self._long_poll(link, request)
        if reply is None:
            return False
        self._handle(reply)
        return bool(reply.response.jobs or reply.unreadable)

    def _long_poll(self, link: Link, request: PollRequest) -> PollReply | None:
        """Run the poll on a helper thread so that finished jobs can be reported while it waits.

        Returns None if a stop came first: the poll is abandoned, and any job it brings stays with the
        manager until its lease expires.
        """
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
                self._gather()
                fresh = [r.job_id for r in self._journal.unacknowledged() if r.job_id not in reported]
                try:
                    # Not the results the long poll carries: the manager acknowledges those when it answers.
                    self.report(link, skip=reported)
                except LinkError as exc:
                    # The long poll decides whether the manager is reachable; the results stay queued.
                    log.debug("could not report results early: %s", exc.message)
                reported.update(fresh)
        return future.result()

    def _gather(self) -> None:
        """With other jobs still running, give them a moment to finish, so that one report carries
        several results: the manager stores a report's results in one transaction (one commit), and
        each request costs it a signature check and a replay record of its own."""
        deadline = time.monotonic() + REPORT_GATHER
        while self._workers.running_ids() and not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._wake.wait(left)
            self._wake.clear()

    def report(self, link: Link, skip: set[str] | frozenset[str] = frozenset()) -> None:
        """A short poll that only delivers results and extends the running jobs' leases."""
        results = [r for r in self._journal.unacknowledged() if r.job_id not in skip]
        running = self._workers.running_ids()
        if not results and not running:
            return
        self._handle(link.poll(PollRequest(results=results, running=running, capacity=0, wait_seconds=0)))

    def _handle(self, reply: PollReply) -> None:
        self._on_contact()
        self._journal.acknowledge(reply.response.acknowledged)
        for job_id, problem in reply.unreadable.items():
            log.warning("job %s: cannot read it (%s); answered not_supported", job_id, problem)
            self._journal.record_unreadable(job_id, problem)
        for job in reply.response.jobs:
            if self._stop.is_set():
                break  # stopping: take no job; its lease expires and the manager hands it out again
            decision = self._journal.begin(job, self._run_id)
            if decision is Delivery.RUN:
                self._workers.start(job)
            elif decision is Delivery.ANSWERED:
                log.info("job %s (%s) was delivered again: answered from the journal", job.id, job.kind.value)
