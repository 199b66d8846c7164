"""Command-line start-up time: how long `ca-manager` and `ca-connector` take to answer `-h` and `version`.

Each command runs several times as a child process, as a user's shell would run it; the figure is the
wall-clock time from spawn to exit, and the CPU time (user + system) the child used, which a loaded
machine (other processes taking turns on the cores) disturbs much less. The baseline, `python -c pass`
with the same interpreter, is measured in the same run, so the ratios say what our imports cost on top
of the interpreter's own start-up. A figure, not a pass/fail (issue 9 asks for `-h` well under 0.3 s):

    .venv/bin/python bench/cli_startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
COMMANDS: list[tuple[str, list[str]]] = [
    ("python -c pass", [sys.executable, "-c", "pass"]),
    ("ca-manager -h", [str(BIN / "ca-manager"), "-h"]),
    ("ca-manager version", [str(BIN / "ca-manager"), "version"]),
    ("ca-connector -h", [str(BIN / "ca-connector"), "-h"]),
    ("ca-connector version", [str(BIN / "ca-connector"), "version"]),
]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _time(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall-clock seconds, CPU seconds) of one run."""
    cpu, start = _cpu(), time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, check=False)
    elapsed, used = time.perf_counter() - start, _cpu() - cpu
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.decode()[-500:]}")
    return elapsed, used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--runs", type=int, default=10, help="runs per command (default 10)")
    runs = parser.parse_args().runs
    # A data directory that exists nowhere: `version` must not need one, and nothing is written.
    env = {**os.environ, "CA_MANAGER_HOME": "/nonexistent/ca-manager", "CA_CONNECTOR_HOME": "/nonexistent/c"}
    # Interleaved rounds: a burst of load on the machine then falls on every command alike.
    wall: dict[str, list[float]] = {name: [] for name, _ in COMMANDS}
    cpu: dict[str, list[float]] = {name: [] for name, _ in COMMANDS}
    for _, command in COMMANDS:
        _time(command, env)  # warm the page cache and the bytecode cache before measuring
    for _ in range(runs):
        for name, command in COMMANDS:
            elapsed, used = _time(command, env)
            wall[name].append(elapsed)
            cpu[name].append(used)
    base_wall, base_cpu = min(wall[COMMANDS[0][0]]), min(cpu[COMMANDS[0][0]])
    print(
        f"{'command':<22} {'wall min s':>10} {'median s':>9} {'/ baseline':>10}   "
        f"{'CPU min s':>9} {'median s':>9} {'/ baseline':>10}"
    )
    for name, _ in COMMANDS:
        w, c = wall[name], cpu[name]
        print(
            f"{name:<22} {min(w):>10.3f} {statistics.median(w):>9.3f} {min(w) / base_wall:>10.1f}   "
            f"{min(c):>9.3f} {statistics.median(c):>9.3f} {min(c) / max(base_cpu, 1e-3):>10.1f}"
        )
    print(f"({runs} runs each, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
