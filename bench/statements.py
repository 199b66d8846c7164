"""SQL statements per certificate: what the manager asks its database for each enrollment, by statement.

The same setup as bench.throughput's `ours` rows (a real `ca-manager serve` and `ca-connector run -workers
8` with a local CA, `POST /api/v1/certificates {"wait": 30}`), with a `sitecustomize` put on the
manager's PYTHONPATH that counts every statement it sends (SQLAlchemy's `before_cursor_execute`) and
every commit. SIGUSR1 starts the count just before the measured period, SIGUSR2 writes it just after;
this prints each statement's count per certificate issued, the caller in our code that sent the most of
it, and the totals. A figure for finding work to save, not a test:

    .venv/bin/python -m bench.statements [--clients 8] [--seconds 5] [--database URL]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import time
from pathlib import Path

from bench.throughput import drive, machine, ours, ours_target

# Loaded by every Python process started with the directory on PYTHONPATH; counts only in the manager.
SITECUSTOMIZE = """
import collections, json, os, re, signal, sys, traceback

def _install():
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    counts = collections.Counter()
    callers = collections.defaultdict(collections.Counter)
    out = os.environ["BENCH_STATEMENTS_OUT"]

    @event.listens_for(Engine, "before_cursor_execute")
    def _statement(conn, cursor, statement, parameters, context, executemany):
        text = re.sub(r"\\s+", " ", statement).strip()[:90]
        counts[text] += 1
        ours = [f for f in traceback.extract_stack(limit=25) if "/caconnector/" in f.filename
                and "group_commit" not in f.filename]
        if ours:
            frame = ours[-1]
            callers[text][f"{frame.filename.rsplit('/caconnector/', 1)[1]}:{frame.lineno} {frame.name}"] += 1

    @event.listens_for(Engine, "commit")
    def _commit(conn):
        counts["(commit)"] += 1

    def _reset(signum, frame):
        counts.clear()
        callers.clear()

    def _write(signum, frame):
        rows = [[n, text, callers[text].most_common(1)[0][0] if callers[text] else ""]
                for text, n in counts.most_common()]
        with open(out + ".part", "w") as handle:
            json.dump(rows, handle)
        os.replace(out + ".part", out)

    signal.signal(signal.SIGUSR1, _reset)
    signal.signal(signal.SIGUSR2, _write)

if "serve" in sys.argv[1:3] and os.environ.get("BENCH_STATEMENTS_OUT"):
    _install()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time")
    parser.add_argument("--database", help="a scratch PostgreSQL URL (default: SQLite)")
    parser.add_argument("--workers", type=int, default=8, help="ca-connector run -workers")
    args = parser.parse_args()
    print(machine(), flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-statements-") as scratch:
        workdir = Path(scratch)
        hook = workdir / "hook"
        hook.mkdir()
        (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
        out = workdir / "statements.json"
        # clean_env copies this process's environment: the manager (and the connector, where the hook
        # stays off) start with the hook on their path.
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))
        os.environ["BENCH_STATEMENTS_OUT"] = str(out)
        with ours(workdir, args.database, args.workers, None) as setup:
            pids = {"manager": setup.manager_pid, "connector": setup.connector_pid}
            target = ours_target(setup)
            drive("warm-up", target, 2, 1.0, pids)
            os.kill(setup.manager_pid, signal.SIGUSR1)
            time.sleep(0.2)
            row = drive("ours", target, args.clients, args.seconds, pids)
            os.kill(setup.manager_pid, signal.SIGUSR2)
            deadline = time.monotonic() + 10
            while not out.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            rows = json.loads(out.read_text())
    issued = max(row.count, 1)
    kind = "PostgreSQL" if args.database else "SQLite"
    print(f"{kind}, {args.clients} clients, {args.seconds:g} s: {row.count} certificates issued", flush=True)
    print(f"{'per cert':>9}  statement (first 90 characters)  <- the caller in our code sending it most")
    for count, text, caller in rows:
        print(f"{count / issued:9.2f}  {text}" + (f"  <- {caller}" if caller else ""))
    statements = sum(count for count, text, _ in rows if text != "(commit)")
    commits = sum(count for count, text, _ in rows if text == "(commit)")
    print(f"total: {statements / issued:.1f} statements and {commits / issued:.2f} commits per certificate")


if __name__ == "__main__":
    main()
