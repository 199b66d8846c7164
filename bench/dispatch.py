"""Job dispatch latency: from a job's creation (its transaction committing) to the waiting long poll
receiving it, against a real uvicorn server in this process.

Prints p50, p99 and max over N jobs, and as a baseline measured in the same run the round trip of an
empty signed `hello` (one HTTP request with signature check and one transaction), so the dispatch figure
reads as "baseline plus the wake-up". On PostgreSQL it also measures jobs created through a second
runtime, which only NOTIFY can announce (the path between manager processes). A figure, not a pass/fail:

    .venv/bin/python -m bench.dispatch [--count N] [--database postgresql+psycopg://.../scratch_db]

Give --database a scratch database: the schema is migrated into it and a bench connector added, then
deleted again.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import delete
from tests.manager.connector_support import (
    FakeConnector,
    PollInBackground,
    add_job,
    registered,
    wait_until_parked,
)
from tests.manager.live import live_server

from caconnector.manager.app import create_app
from caconnector.manager.db.migrate import upgrade
from caconnector.manager.db.models import Connector
from caconnector.manager.runtime import Runtime, build_runtime
from caconnector.manager.settings import Settings

POLL_WAIT = 30.0


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _report(label: str, seconds: list[float]) -> None:
    ms = [s * 1000 for s in seconds]
    print(
        f"{label:<44} p50 {_percentile(ms, 0.50):7.2f} ms   p99 {_percentile(ms, 0.99):7.2f} ms   "
        f"max {max(ms):7.2f} ms   mean {statistics.fmean(ms):7.2f} ms   (n={len(ms)})"
    )


def _hello_round_trips(connector: FakeConnector, client: httpx.Client, count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        response = connector.hello(client)
        latencies.append(time.perf_counter() - started)
        response.raise_for_status()
    return latencies


def _dispatch_latencies(
    server_runtime: Runtime, creator: Runtime, connector: FakeConnector, client: httpx.Client, count: int
) -> list[float]:
    latencies = []
    for _ in range(count):
        poll = PollInBackground(connector, client, POLL_WAIT)
        wait_until_parked(server_runtime, connector)
        created = time.perf_counter()
        job_id = add_job(creator, connector)
        jobs = poll.result()["jobs"]
        if [job["id"] for job in jobs] != [job_id]:
            raise RuntimeError(f"the poll received {jobs!r}, not job {job_id}")
        latencies.append(poll.answered_at - created)
    return latencies


def _run(settings: Settings, count: int) -> None:
    runtime = build_runtime(settings)
    upgrade(runtime.engine)
    # On PostgreSQL, a second runtime on the same database stands for another manager process.
    other = build_runtime(settings) if runtime.engine.dialect.name == "postgresql" else None
    try:
        with live_server(create_app(settings, runtime=runtime)) as url, httpx.Client(base_url=url) as client:
            connector = registered(runtime, client, f"bench-{uuid.uuid4().hex[:8]}")
            try:
                _dispatch_latencies(runtime, runtime, connector, client, min(count, 10))  # warm-up
                _report("baseline: signed hello round trip", _hello_round_trips(connector, client, count))
                _report(
                    "job created -> waiting poll answered",
                    _dispatch_latencies(runtime, runtime, connector, client, count),
                )
                if other is not None:
                    _report(
                        "  ... created by another process (NOTIFY)",
                        _dispatch_latencies(runtime, other, connector, client, count),
                    )
            finally:
                with runtime.sessions.begin() as session:
                    session.execute(delete(Connector).where(Connector.id == connector.connector_id))
    finally:
        for each in (runtime, other):
            if each is not None:
                each.wakeups.close()
                each.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=200, help="jobs (and hello requests) to time")
    parser.add_argument("--database", help="SQLAlchemy URL of a scratch database (default: SQLite)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        settings = Settings(
            datadir=Path(workdir), database_url=args.database, poll_wait_seconds=POLL_WAIT, lease_seconds=600
        )
        print(f"database: {settings.effective_database_url.split('@')[-1]}   jobs: {args.count}")
        _run(settings, args.count)


if __name__ == "__main__":
    main()
