"""bench/throughput.py's `ours` setup with a `sitecustomize` on the manager's PYTHONPATH that counts
something while signalled to (bench/statements.py: SQL statements; bench/live_calls.py: Python calls).

The hook starts its count at SIGUSR1, sent just before the measured period, and writes it as JSON to
the file named by its environment variable at SIGUSR2, sent just after.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from bench.throughput import Row, drive, machine, ours, ours_target


def sitecustomize(variable: str, body: str) -> str:
    """The hook's source: `body` (Python, defining `start()` and `payload()`) run in `ca-manager serve`
    only, when `variable` is set; SIGUSR1 calls `start()`, SIGUSR2 writes `payload()` as JSON to the
    file `variable` names (whole or not at all: written aside, then renamed)."""
    return f"""
import collections, json, os, re, signal, sys, threading, traceback

def _install():
{textwrap.indent(textwrap.dedent(body), "    ")}
    def _write(signum, frame):
        out = os.environ[{variable!r}]
        with open(out + ".part", "w") as handle:
            json.dump(payload(), handle)
        os.replace(out + ".part", out)

    signal.signal(signal.SIGUSR1, lambda signum, frame: start())
    signal.signal(signal.SIGUSR2, _write)

if "serve" in sys.argv[1:3] and os.environ.get({variable!r}):
    _install()
"""


def parser(doc: str) -> argparse.ArgumentParser:
    """The options every hooked bench takes; a bench adds its own."""
    arguments = argparse.ArgumentParser(description=doc.split("\n\n", maxsplit=1)[0])
    arguments.add_argument("--clients", type=int, default=8, help="concurrent clients")
    arguments.add_argument("--seconds", type=float, default=5.0, help="measured time")
    return arguments


def run_hooked(args: argparse.Namespace, *, sitecustomize: str, out_variable: str) -> tuple[Row, Any]:
    """Run `args.clients` enrolling clients for `args.seconds` against a manager started with the hook
    (on `args.database` when given, PostgreSQL; SQLite otherwise); return the row the clients saw and
    what the hook wrote. The machine the run is on is printed first."""
    print(machine(), flush=True)
    database, workers = getattr(args, "database", None), getattr(args, "workers", 8)
    clients, seconds = args.clients, args.seconds
    with tempfile.TemporaryDirectory(prefix="bench-hooked-") as scratch:
        workdir = Path(scratch)
        hook = workdir / "hook"
        hook.mkdir()
        (hook / "sitecustomize.py").write_text(sitecustomize)
        out = workdir / "count.json"
        # clean_env copies this process's environment: the manager (and the connector, where the hook
        # stays off) start with the hook on their path.
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))
        os.environ[out_variable] = str(out)
        with ours(workdir, database, workers, None) as setup:
            pids = {"manager": setup.manager_pid, "connector": setup.connector_pid}
            target = ours_target(setup)
            drive("warm-up", target, 2, 1.0, pids)
            os.kill(setup.manager_pid, signal.SIGUSR1)
            time.sleep(0.2)
            row = drive("ours", target, clients, seconds, pids)
            os.kill(setup.manager_pid, signal.SIGUSR2)
            deadline = time.monotonic() + 10
            while not out.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            return row, json.loads(out.read_text())
