"""The agent's workers: a fixed number of daemon threads taking jobs from a queue, and the jobs in
hand (`Workers`): which are running, each one's result recorded in the journal as it finishes.

Daemon threads, not a ThreadPoolExecutor, on purpose: the executor's threads are joined at interpreter
exit, so one job hanging in a CA call would keep a stopped agent alive past its stop timeout. The
journal makes an abandoned job safe (see `journal`).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable

from caconnector.connector.jobs import JobRunner
from caconnector.connector.journal import Journal
from caconnector.protocol.messages import JobMessage, JobOutcome

log = logging.getLogger("caconnector.connector.agent")


class WorkerPool:
    """A fixed set of daemon threads: a job that hangs past the stop timeout cannot keep the process."""

    def __init__(self, count: int, execute: Callable[[JobMessage], None]) -> None:
        self._execute = execute
        self._queue: queue.Queue[JobMessage | None] = queue.Queue()
        self._outstanding = 0
        self._changed = threading.Condition()
        self._threads = [
            threading.Thread(target=self._loop, name=f"ca-connector-worker-{i}", daemon=True)
            for i in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def _loop(self) -> None:
        while (job := self._queue.get()) is not None:
            try:
                self._execute(job)
            finally:
                with self._changed:
                    self._outstanding -= 1
                    self._changed.notify_all()

    def submit(self, job: JobMessage) -> None:
        with self._changed:
            self._outstanding += 1
        self._queue.put(job)

    def drain(self) -> list[JobMessage]:
        """Take back the jobs not started yet."""
        taken: list[JobMessage] = []
        with contextlib.suppress(queue.Empty):
            while True:
                job = self._queue.get_nowait()
                if job is not None:
                    taken.append(job)
        with self._changed:
            self._outstanding -= len(taken)
            self._changed.notify_all()
        return taken

    def wait_idle(self, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._outstanding == 0, timeout)

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=0.1)


class Workers:
    """The jobs in hand. Each runs on the pool; its result goes to the journal, then `wake` is set so
    the poller reports it. Counts finished jobs so the poller knows whether a report is owed."""

    def __init__(
        self,
        count: int,
        runner: JobRunner,
        journal: Journal,
        wake: threading.Event,
        monotonic: Callable[[], float],
    ) -> None:
        self.count = count
        self._runner = runner
        self._journal = journal
        self._wake = wake
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._running: set[str] = set()
        self._finished = 0  # jobs finished, and how many of them a report has covered
        self._finished_reported = 0
        self._pool = WorkerPool(count, self._execute)

    def running_ids(self) -> list[str]:
        with self._lock:
            return sorted(self._running)

    def free(self) -> int:
        return self.count - len(self.running_ids())

    def unreported(self) -> bool:
        """Whether a job finished since the last `mark_reported`."""
        return self._finished != self._finished_reported

    def mark_reported(self) -> None:
        self._finished_reported = self._finished

    def start(self, job: JobMessage) -> None:
        with self._lock:
            self._running.add(job.id)
        self._pool.submit(job)

    def _execute(self, job: JobMessage) -> None:
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
        duration = round(self._monotonic() - started, 3)
        request = job.payload.get("request_id")
        fields = {
            "backend": job.backend or "-",
            "job": job.id,
            "kind": job.kind.value,
            "request": request if isinstance(request, str) else "-",
            "outcome": result.outcome.value,
            "duration": duration,
        }
        # One line per job: connector (added by the log context), backend, job, request, outcome, duration.
        log.info(
            "job %s kind=%s backend=%s request=%s outcome=%s duration=%.3fs",
            job.id,
            job.kind.value,
            fields["backend"],
            fields["request"],
            outcome,
            duration,
            extra=fields,
        )

    def abandon_queued(self) -> None:
        """Give back the jobs not started yet: the journal forgets them, the manager delivers them again."""
        for job in self._pool.drain():
            self._journal.abandon(job.id)
            with self._lock:
                self._running.discard(job.id)

    def wait_idle(self, timeout: float) -> bool:
        return self._pool.wait_idle(timeout)

    def close(self) -> None:
        self._pool.close()
