"""The agent's workers: a fixed number of daemon threads taking jobs from a queue.

Daemon threads, not a ThreadPoolExecutor, on purpose: the executor's threads are joined at interpreter
exit, so one job hanging in a CA call would keep a stopped agent alive past its stop timeout. The
journal makes an abandoned job safe (see `journal`).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable

from caconnector.protocol.messages import Job


class WorkerPool:
    """A fixed set of daemon threads: a job that hangs past the stop timeout cannot keep the process."""

    def __init__(self, count: int, execute: Callable[[Job], None]) -> None:
        self._execute = execute
        self._queue: queue.Queue[Job | None] = queue.Queue()
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

    def submit(self, job: Job) -> None:
        with self._changed:
            self._outstanding += 1
        self._queue.put(job)

    def drain(self) -> list[Job]:
        """Take back the jobs not started yet."""
        taken: list[Job] = []
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
