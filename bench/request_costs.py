"""The manager's CPU per certificate, by step, in process: no sockets, no other process, no waiting.

bench/throughput.py measures the whole system, and on this shared 2-core machine its rows vary by 10-20%
between runs: a change worth 5% of the manager's CPU does not show there. This measures the manager's
own work for one certificate, step by step, in one process and one client thread, with
`time.process_time()` (every thread of the process: the app runs in the TestClient's thread and its
thread pool), in alternating blocks so that drift in the machine's speed falls on every step alike:

- `enroll`: `POST /api/v1/certificates` with `wait: 0` (API key, profile, CSR checks, the certificate,
  its job and the audit event stored, the answer);
- `poll`: a signed poll that takes the queued jobs (8 a poll, as `ca-connector run -workers 8`);
- `results`: a signed poll carrying the 8 results (each certificate checked and stored, audited);
  the local CA's signing is done before it, outside the measured time;
- `look`: `GET /api/v1/certificates/{id}` of an issued certificate (what a waiting enrollment's
  answer reads).

Run against SQLite (durability full, the manager's default) in a temporary directory:

    .venv/bin/python -m bench.request_costs [--blocks 30] [--profile /tmp/costs.yappi]

`--calls` counts instead the Python and C function calls the manager makes per certificate, by step
(a profile function in every thread): deterministic where the CPU time is not, so it tells a change of
a few percent from this machine's noise (the time figures then include the counting's cost).

`--profile` records a yappi profile (CPU clock, all threads; `pip install yappi`) of the measured
blocks and prints the functions of ours and SQLAlchemy's that cost the most, inclusive.
A figure, not a test; compare `--baseline`-style by running another checkout's code with
`PYTHONPATH=<checkout>/src` in the same minute.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.throughput import machine
from fastapi.testclient import TestClient
from tests.manager.conftest import Caller, make_caller
from tests.manager.lifecycle_support import Lab, create_profile, make_csr, make_lab

from caconnector.manager.app import create_app
from caconnector.manager.db.migrate import upgrade
from caconnector.manager.roles import Role
from caconnector.manager.runtime import build_runtime
from caconnector.manager.settings import Settings

BATCH = 8  # jobs per poll, results per report: what `ca-connector run -workers 8` sends


class _CallCounter:
    """Counts function calls in every thread while `on` (a profile function set before the app's
    threads start). `itertools.count` advances atomically under the GIL, so no count is lost."""

    def __init__(self) -> None:
        self.on = False
        self._python = itertools.count()
        self._c = itertools.count()
        self.by_package: collections.Counter[str] = collections.Counter()

    def __call__(self, frame: Any, event: str, _arg: Any) -> None:
        if self.on:
            if event == "call":
                next(self._python)
                self.by_package[_package(frame.f_code.co_filename)] += 1  # may lose a few in a race
            elif event == "c_call":
                next(self._c)

    def install(self) -> None:
        sys.setprofile(self)
        threading.setprofile(self)

    def read(self) -> tuple[int, int]:
        return next(self._python), next(self._c)  # each read advances by one: negligible


_COUNTER: _CallCounter | None = None


def _package(filename: str) -> str:
    """`sqlalchemy`, `fastapi`, `caconnector/manager/db`, `asyncio`, ... of a code object's file."""
    for marker in ("site-packages/", "src/"):
        if marker in filename:
            parts = filename.split(marker, 1)[1].split("/")
            return "/".join(parts[:3]) if parts[0] == "caconnector" else parts[0]
    return filename.rsplit("/", 1)[-1].removesuffix(".py")


def _timed(step: Callable[[], None]) -> tuple[float, float]:
    """(CPU seconds, 0) of `step`; with --calls, (Python calls, C calls) instead."""
    if _COUNTER is not None:
        before = _COUNTER.read()
        _COUNTER.on = True
        step()
        _COUNTER.on = False
        after = _COUNTER.read()
        return float(after[0] - before[0]), float(after[1] - before[1])
    started = time.process_time()
    step()
    return time.process_time() - started, 0.0


@dataclass
class _Bench:
    """The manager in process with a lab connector (the real local CA) and a profile on it."""

    client: TestClient
    caller: Caller
    lab: Lab
    csrs: list[str]
    profile_id: str  # by id, as bench/throughput.py's clients name it
    costs: dict[str, list[tuple[float, float]]] = field(
        default_factory=lambda: {"enroll": [], "poll": [], "results": [], "look": []}
    )
    issued: list[str] = field(default_factory=list)

    def block(self, index: int, *, record: bool) -> None:
        """BATCH certificates through every step; each step's cost per certificate kept when `record`."""
        ids: list[str] = []
        jobs: list[dict[str, Any]] = []
        results: list[dict[str, Any]] = []
        spent = {"enroll": _timed(lambda: self._enroll(index, ids))}
        spent["poll"] = _timed(lambda: jobs.extend(self.lab.take(self.client, capacity=BATCH)))
        if len(jobs) != BATCH:
            raise SystemExit(f"a poll took {len(jobs)} jobs, not {BATCH}")
        results.extend(self.lab.answer(job) for job in jobs)  # the CA's work: not the manager's
        spent["results"] = _timed(lambda: self.lab.send(self.client, *results))
        spent["look"] = _timed(lambda: self._look(ids))
        if record:
            for step, (first, second) in spent.items():
                self.costs[step].append((first / BATCH, second / BATCH))
            self.issued.extend(ids)

    def _enroll(self, index: int, ids: list[str]) -> None:
        for i in range(BATCH):
            csr = self.csrs[(index * BATCH + i) % len(self.csrs)]
            body = {"profile": self.profile_id, "csr": csr, "wait": 0}
            response = self.client.post("/api/v1/certificates", json=body, headers=self.caller.headers)
            if response.status_code != 202:
                raise SystemExit(f"enroll: {response.status_code} {response.text}")
            ids.append(response.json()["id"])

    def _look(self, ids: list[str]) -> None:
        for certificate_id in ids:
            response = self.client.get(f"/api/v1/certificates/{certificate_id}", headers=self.caller.headers)
            if response.json()["status"] != "Issued":
                raise SystemExit(f"not issued: {response.text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=30, help=f"blocks of {BATCH} certificates measured")
    parser.add_argument("--calls", action="store_true", help="count function calls, not CPU time")
    parser.add_argument("--profile", type=Path, help="record a yappi profile of the measured blocks here")
    args = parser.parse_args()
    print(machine())
    global _COUNTER  # noqa: PLW0603  (one switch for the whole run, read by _timed)
    if args.calls:
        _COUNTER = _CallCounter()
        _COUNTER.install()
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        settings = Settings(
            datadir=directory / "manager-data",
            database_url=f"sqlite:///{directory / 'manager.db'}",
            public_url="http://127.0.0.1:8443",
            scheduler_interval_seconds=0.0,
        )
        runtime = build_runtime(settings)
        upgrade(runtime.engine)
        with TestClient(create_app(settings, runtime=runtime)) as client:
            lab = make_lab(runtime, client, directory)
            admin = make_caller(runtime, "admin", Role.ADMIN)
            profile = create_profile(client, admin, lab, name="bench", key_types=["ec-p256"])
            csrs = [make_csr(dns=[f"host{i}.bench.test"])[0] for i in range(BATCH * 4)]
            operator = make_caller(runtime, "bench", Role.OPERATOR)
            bench = _Bench(client, operator, lab, csrs, profile["id"])
            for index in range(3):  # warm: caches, compiled statements, the first connections
                bench.block(index, record=False)
            if _COUNTER is not None:
                _COUNTER.by_package.clear()  # the warm blocks' calls are not the measured ones
            profiler = _profiler(args.profile)
            if profiler is not None:
                profiler.start(builtins=False)
            for index in range(args.blocks):
                bench.block(index + 3, record=True)
            if profiler is not None:
                profiler.stop()
        runtime.engine.dispose()
    print(f"{args.blocks} blocks of {BATCH} certificates, SQLite, durability {settings.durability}")
    if args.calls:
        _print_calls(bench.costs, len(bench.issued))
    else:
        _print_times(bench.costs, len(bench.issued))
    if profiler is not None and args.profile is not None:
        _report(profiler, args.profile, len(bench.issued))


def _print_times(costs: dict[str, list[tuple[float, float]]], issued: int) -> None:
    total = 0.0
    for step, pairs in costs.items():
        values = [seconds for seconds, _ in pairs]
        median = statistics.median(values) * 1000
        total += median
        low = min(values) * 1000
        print(f"  {step:8} {median:6.2f} ms CPU per certificate (median of blocks; min {low:.2f})")
    print(f"  {'total':8} {total:6.2f} ms CPU per certificate ({issued} issued)")


def _print_calls(costs: dict[str, list[tuple[float, float]]], issued: int) -> None:
    totals = [0.0, 0.0]
    for step, pairs in costs.items():
        python = statistics.median(calls for calls, _ in pairs)
        c = statistics.median(calls for _, calls in pairs)
        totals[0] += python
        totals[1] += c
        print(f"  {step:8} {python:8.0f} Python calls {c:8.0f} C calls per certificate (median of blocks)")
    print(f"  {'total':8} {totals[0]:8.0f} Python calls {totals[1]:8.0f} C calls per certificate")
    print(f"  ({issued} certificates issued)")
    if _COUNTER is not None:
        print("  Python calls per certificate by package (all steps):")
        for package, calls in _COUNTER.by_package.most_common(16):
            print(f"    {calls / issued:8.0f}  {package}")


def _profiler(path: Path | None) -> Any:
    if path is None:
        return None
    import yappi  # noqa: PLC0415  (optional: only with --profile)

    yappi.set_clock_type("cpu")
    return yappi


def _report(yappi: Any, path: Path, certificates: int) -> None:
    stats = yappi.get_func_stats()
    stats.save(str(path), type="pstat")
    rows = [
        (s.ttot, s.tsub, s.ncall, f"{s.module.split('site-packages/')[-1].split('src/')[-1]}:{s.name}")
        for s in stats
        if "caconnector" in s.module or "sqlalchemy" in s.module
    ]
    print(f"profile (pstat) in {path}; inclusive ms per certificate, top 40 of ours and SQLAlchemy's:")
    for ttot, tsub, ncall, name in sorted(rows, reverse=True)[:40]:
        print(
            f"  {ttot * 1000 / certificates:7.3f} (own {tsub * 1000 / certificates:6.3f}) "
            f"{ncall / certificates:6.1f} calls  {name}"
        )


if __name__ == "__main__":
    main()
