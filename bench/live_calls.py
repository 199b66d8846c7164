"""Python calls per certificate in a running manager, by the function of ours nearest to them.

The setup of bench/throughput.py's `ours` rows (a real `ca-manager serve` and `ca-connector run -workers
8` with a local CA, `POST /api/v1/certificates {"wait": 30}` from 8 clients), with a `sitecustomize` on
the manager's PYTHONPATH that installs a profile function in every thread: SIGUSR1 starts the count
just before the measured period, SIGUSR2 writes it just after. Each call into code not ours (SQLAlchemy,
FastAPI, asyncio, ...) is counted against the nearest caller of ours on the stack. The count slows the
manager down several times, so its throughput means nothing here, but the calls per certificate repeat
to within a few percent, on a machine whose CPU timings do not:

    .venv/bin/python -m bench.live_calls [--seconds 5] [--clients 8]
    PYTHONPATH=/tmp/tp-base/src .venv/bin/python -m bench.live_calls    # another checkout's code
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import tempfile
import time
from pathlib import Path

from bench.throughput import drive, machine, ours, ours_target

# Loaded by every Python process started with the directory on PYTHONPATH; counts only in the manager.
SITECUSTOMIZE = r"""
import collections, json, os, signal, sys, threading

def _install():
    under = collections.Counter()
    total = [0]
    on = [False]
    names = {}

    def where(code):
        known = names.get(code)
        if known is None:
            path = code.co_filename
            known = names[code] = ("/caconnector/" in path, path.split("src/")[-1] + ":" + code.co_name)
        return known

    def profile(frame, event, arg):
        if not on[0] or event != "call":
            return
        total[0] += 1
        if where(frame.f_code)[0]:
            return
        caller = frame.f_back
        while caller is not None:
            ours, name = where(caller.f_code)
            if ours:
                under[name] += 1
                return
            caller = caller.f_back
        under["(no function of ours on the stack)"] += 1

    sys.setprofile(profile)
    threading.setprofile(profile)

    def start(signum, frame):
        under.clear()
        total[0] = 0
        on[0] = True

    def stop(signum, frame):
        on[0] = False
        out = os.environ["BENCH_CALLS_OUT"]
        with open(out + ".part", "w") as handle:
            json.dump({"total": total[0], "under": under.most_common()}, handle)
        os.replace(out + ".part", out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)

if "serve" in sys.argv[1:3] and os.environ.get("BENCH_CALLS_OUT"):
    _install()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time")
    parser.add_argument("--top", type=int, default=25, help="functions of ours to print")
    args = parser.parse_args()
    print(machine(), flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-calls-") as scratch:
        workdir = Path(scratch)
        hook = workdir / "hook"
        hook.mkdir()
        (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
        out = workdir / "calls.json"
        # clean_env copies this process's environment: the manager starts with the hook on its path.
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))
        os.environ["BENCH_CALLS_OUT"] = str(out)
        with ours(workdir, None, 8, None) as setup:
            pids = {"manager": setup.manager_pid}
            target = ours_target(setup)
            drive("warm-up", target, 2, 1.0, pids)
            os.kill(setup.manager_pid, signal.SIGUSR1)
            time.sleep(0.2)
            row = drive("ours", target, args.clients, args.seconds, pids)
            os.kill(setup.manager_pid, signal.SIGUSR2)
            deadline = time.monotonic() + 10
            while not out.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            data = json.loads(out.read_text())
    issued = max(row.count, 1)
    print(f"SQLite, {args.clients} clients, {args.seconds:g} s: {row.count} certificates issued")
    print(f"{data['total'] / issued:.0f} Python calls per certificate in the manager; of those outside our")
    print("code, per certificate, by the nearest function of ours on the stack:")
    grouped = collections.Counter(dict(data["under"]))
    for name, calls in grouped.most_common(args.top):
        print(f"  {calls / issued:8.1f}  {name}")


if __name__ == "__main__":
    main()
