"""Idle connectors: the manager's memory and CPU while it holds N connectors' parked long polls.

A real `ca-manager serve` (HTTP on 127.0.0.1; SQLite, or PostgreSQL with --database) and a load process
that keeps one poll parked per connector, re-polling as each is answered after its wait, every poll
signed anew (a fresh JWT, a fresh jti) as `ca-connector` signs it. Measured from /proc: the manager's
RSS (VmRSS) and CPU (utime+stime) with no polls (the baseline, over the same period) and with N parked.
Printed: RSS, RSS growth per parked poll (KiB), cores used (CPU seconds / wall seconds), manager CPU ms
per poll cycle (a poll answered after its wait and re-opened; net of the idle baseline), and the cores
projected at the agent's 30 s wait, against the issue's targets (5,000 idle connectors in under 500 MB
and under 0.2 cores). A figure, not a pass/fail of the test suite:

    .venv/bin/python -m bench.idle [--connectors 1000,5000] [--wait 30] [--seconds S]
        [--database postgresql+psycopg://postgres@127.0.0.1:5432/scratch_db] [--py-spy DIR]

How the connectors are made: `ca-manager connector add` and `ca-connector register` are one process
start each (about a second), too slow for 5,000. So the bench process calls the manager's own service
functions against the same database before the server starts: `services.connectors.add_connector` (the
row and its one-time token, as the CLI makes them) and `services.connector_registration.
register_connector` with a `RegisterRequest` carrying the token and a fresh Ed25519 public key (what
`POST /connector/v1/register` runs). From then on everything goes over HTTP: the load process signs
each poll with `caconnector.protocol.signing.sign_request` and speaks HTTP/1.1 on raw asyncio streams,
one keep-alive connection per connector (httpx would cost the shared 2 cores more than the manager).

The connectors start spread evenly over one wait (as real agents would be); the period is measured
once all polls are out and as many have been answered as there are connectors, so its cycles are
steady-state ones. A manager answering fewer polls a second than N / wait is saturated: printed so,
its "parked" polls then partly wait in its queue, and the projection is the figure. The manager is
started with `-max-connections` and `-max-channel-requests` above N: its defaults (2,048 and 1,024)
would answer polls beyond them 503. RLIMIT_NOFILE is raised to its hard limit in the bench, which the
manager and the load process inherit (set on the manager once more with prlimit). --database takes a
scratch PostgreSQL database (trust auth): created when missing, its schema dropped and migrated anew.
--py-spy DIR records the manager during each measured period (`pip install py-spy` into the venv) and
prints where the samples fall most.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime as dt
import json
import multiprocessing as mp
import resource
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from bench.scale_out import ensure_database
from bench.throughput import _reset_postgres, cpu_seconds, machine, profiled
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from tests.e2e.processes import BIN, Process, clean_env, run, wait_until
from tests.ports import free_port

from caconnector.protocol import messages
from caconnector.protocol.signing import generate_connector_key, public_key_pem, sign_request

AGENT_WAIT = 30.0  # the agent's poll wait (the manager's default poll_wait_seconds)
TARGET_CONNECTORS = 5000
TARGET_MB = 500.0
TARGET_CORES = 0.2
BATCH = 500  # connectors per transaction when making them


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise SystemExit(f"no VmRSS for process {pid}")


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# ---- the connectors ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    connector_id: str
    key: bytes  # raw Ed25519 private key (the load process rebuilds the key from it)


def make_connectors(env: dict[str, str], count: int) -> list[Identity]:
    """Add and register `count` connectors through the manager's service functions (see the docstring)."""
    from caconnector.manager.runtime import build_runtime  # noqa: PLC0415  (after `db upgrade`)
    from caconnector.manager.services.connector_registration import register_connector  # noqa: PLC0415
    from caconnector.manager.services.connectors import add_connector  # noqa: PLC0415
    from caconnector.manager.settings import Settings  # noqa: PLC0415

    runtime = build_runtime(Settings.from_env(env))
    made: list[Identity] = []
    try:
        for start in range(0, count, BATCH):
            with runtime.sessions.begin() as session:
                for index in range(start, min(count, start + BATCH)):
                    now = runtime.now()
                    _, token = add_connector(
                        session, f"idle-{index}", "", now=now, settings=runtime.settings,
                        box=runtime.box, actor="bench",
                    )  # fmt: skip
                    key = generate_connector_key()
                    request = messages.RegisterRequest(
                        token=token, public_key=public_key_pem(key), hostname=f"idle-{index}.bench.test",
                        version="0.1.0",
                    )  # fmt: skip
                    connector = register_connector(session, request, now, runtime.settings)
                    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
                    made.append(Identity(connector.id, raw))
    finally:
        runtime.close_wakeups()
        runtime.engine.dispose()
    return made


# ---- the load process --------------------------------------------------------------------------------


@dataclass
class Counters:
    """Shared with the load process (it writes, the bench reads): plain integers, no lock needed."""

    cycles: Any  # polls answered 200
    parked: Any  # polls sent and not yet answered
    errors: Any  # answers other than 200, and broken connections
    pid: int = 0  # the load process, whose CPU is printed to show it is not the bottleneck

    @classmethod
    def make(cls, context: Any) -> Counters:
        return cls(*(context.Value("q", 0, lock=False) for _ in range(3)))


async def _one_connector(
    identity: Identity, port: int, wait: float, delay: float, counters: Counters
) -> None:
    key = ed25519.Ed25519PrivateKey.from_private_bytes(identity.key)
    body = json.dumps({"wait_seconds": wait, "capacity": 4, "results": [], "running": []}).encode()
    await asyncio.sleep(delay)
    writer: asyncio.StreamWriter | None = None
    while True:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            token = sign_request(key, identity.connector_id, "POST", messages.POLL_PATH)
            writer.write(
                b"POST " + messages.POLL_PATH.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Authorization: Bearer " + token.encode() + b"\r\nContent-Type: application/json\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
            counters.parked.value += 1
            try:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                status = int(lines[0].split()[1])
                fields = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
                fields = {k.strip().lower(): v.strip().lower() for k, v in fields.items()}
                await reader.readexactly(int(fields.get("content-length", "0")))
            finally:
                counters.parked.value -= 1
            if status == 200:
                counters.cycles.value += 1
            else:
                counters.errors.value += 1
                await asyncio.sleep(1.0)  # a refused poll is not retried in a tight loop (nor is an agent's)
            if fields.get("connection") == "close":
                writer.close()
                writer = None
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            counters.errors.value += 1
            if writer is not None:
                writer.close()
                writer = None
            await asyncio.sleep(1.0)


def _load_process(identities: list[Identity], port: int, wait: float, counters: Counters) -> None:
    async def main() -> None:
        spread = wait / max(len(identities), 1)
        await asyncio.gather(*(
            _one_connector(identity, port, wait, index * spread, counters)
            for index, identity in enumerate(identities)
        ))  # fmt: skip

    asyncio.run(main())


@contextlib.contextmanager
def load(identities: list[Identity], port: int, wait: float) -> Iterator[Counters]:
    context = mp.get_context("fork")
    counters = Counters.make(context)
    child = context.Process(target=_load_process, args=(identities, port, wait, counters), daemon=True)
    child.start()
    counters.pid = child.pid or 0
    try:
        yield counters
    finally:
        child.terminate()  # its sockets close with it: the manager ends those polls on the disconnect
        child.join(10)


# ---- measuring ---------------------------------------------------------------------------------------


@dataclass
class Period:
    seconds: float
    cpu: float  # manager CPU seconds in the period
    rss: int  # KiB, the highest sample in the period
    cycles: int = 0
    parked_min: int = 0
    parked_mean: float = 0.0
    errors: int = 0
    load_cores: float = 0.0

    @property
    def cores(self) -> float:
        return self.cpu / self.seconds


def measure(pid: int, seconds: float, counters: Counters | None) -> Period:
    cycles0 = counters.cycles.value if counters else 0
    errors0 = counters.errors.value if counters else 0
    parked: list[int] = []
    rss = 0
    cpu0 = cpu_seconds(pid)
    load0 = cpu_seconds(counters.pid) if counters else 0.0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        rss = max(rss, rss_kib(pid))
        if counters:
            parked.append(counters.parked.value)
        time.sleep(min(0.5, max(seconds - elapsed, 0.01)))
    wall = time.perf_counter() - started
    period = Period(wall, cpu_seconds(pid) - cpu0, max(rss, rss_kib(pid)))
    if counters:
        period.cycles = counters.cycles.value - cycles0
        period.errors = counters.errors.value - errors0
        period.parked_min = min(parked)
        period.parked_mean = sum(parked) / len(parked)
        period.load_cores = (cpu_seconds(counters.pid) - load0) / wall
    return period


ROOTS = ("caconnector/manager/cli.py", "caconnector/cliexit.py", "caconnector/manager/serve.py")


def hot_spots(path: Path, top: int = 12) -> list[str]:
    """Where a py-spy raw (collapsed stacks, --gil) profile's samples fall: our functions inclusive (the
    command-line and serve roots left out), then the package each sample's innermost frame is in."""
    if not path.exists():
        return [f"(no profile at {path}: is py-spy installed in the venv?)"]
    ours: collections.Counter[str] = collections.Counter()
    leaf: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = stack.split(";")
        for frame in set(frames):
            if "(caconnector/" in frame and not any(root in frame for root in ROOTS):
                name, _, where = frame.partition(" (")
                ours[f"{name} ({where.rsplit(':', 1)[0]})"] += samples
        where = frames[-1].partition(" (")[2]
        leaf[where.split("/", 1)[0] if "/" in where else where.rsplit(":", 1)[0]] += samples
    share = max(total, 1) / 100
    lines = [f"{n / share:5.1f}%  {name}" for name, n in ours.most_common(top)]
    lines.append("innermost frame by package: " + ", ".join(
        f"{name} {n / share:.0f}%" for name, n in leaf.most_common(8)
    ))  # fmt: skip
    return lines


# ---- main --------------------------------------------------------------------------------------------


def _cli(argv: list[str], env: dict[str, str]) -> None:
    done = run(argv, env, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:3])} failed: {done.stderr}")


def main() -> None:  # noqa: PLR0912, PLR0915  (one straight-line run, printed as it goes)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connectors", default="1000,5000", help="idle connector counts, comma separated")
    parser.add_argument("--wait", type=float, default=AGENT_WAIT, help="the polls' wait_seconds (<= 60)")
    parser.add_argument(
        "--seconds", type=float, help="measured time per row (default: twice the wait, at least 20 s)"
    )
    parser.add_argument("--database", help="a scratch PostgreSQL URL (default: SQLite in a temporary dir)")
    parser.add_argument("--py-spy", type=Path, help="record py-spy profiles of the manager here")
    args = parser.parse_args()
    counts = [int(c) for c in args.connectors.split(",")]
    if not counts or min(counts) < 1 or not 0 < args.wait <= 60:
        raise SystemExit("--connectors takes positive counts and --wait 0 < seconds <= 60")
    seconds = args.seconds or max(20.0, 2 * args.wait)
    nofile = raise_nofile()
    if nofile < max(counts) * 2 + 100:
        raise SystemExit(f"RLIMIT_NOFILE's hard limit {nofile} is too low for {max(counts)} connections")
    print(machine(), flush=True)
    kind = "PostgreSQL" if args.database else "SQLite"
    print(f"{kind}; wait {args.wait:g} s; {seconds:g} s measured per row; RLIMIT_NOFILE {nofile}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as scratch:
        workdir = Path(scratch)
        manager_bin = str(BIN / "ca-manager")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = clean_env(CA_MANAGER_HOME=str(workdir / "manager"), CA_MANAGER_PUBLIC_URL=url)
        if args.wait > AGENT_WAIT:
            env["CA_MANAGER_POLL_WAIT_SECONDS"] = str(args.wait)  # the manager caps a poll's wait at it
        if args.database:
            ensure_database(args.database)
            _reset_postgres(args.database)
            env["CA_MANAGER_DATABASE_URL"] = args.database
        _cli([manager_bin, "db", "upgrade"], env)
        started = time.perf_counter()
        identities = make_connectors(env, max(counts))
        print(
            f"made {len(identities)} registered connectors in {time.perf_counter() - started:.1f} s "
            "(the manager's service functions, in the bench process)",
            flush=True,
        )
        limit = str(max(counts) + 256)
        manager = Process(
            "manager",
            [
                manager_bin,
                "serve",
                "-port",
                str(port),
                "-max-connections",
                limit,
                "-max-channel-requests",
                limit,
            ],
            workdir / "manager.log",
            env,
        ).start()
        try:
            wait_until(
                lambda: httpx.get(f"{url}/healthz", trust_env=False).status_code == 200, 60, what="manager"
            )
            pid = manager.popen.pid if manager.popen else 0
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (nofile, nofile))
            time.sleep(3.0)  # start-up work (the scheduler's first pass) out of the baseline
            base = measure(pid, seconds, None)
            print(
                f"baseline, 0 polls: RSS {base.rss / 1024:.1f} MiB, {base.cores:.4f} cores "
                f"({base.cpu * 1000:.0f} ms CPU in {base.seconds:.1f} s)",
                flush=True,
            )
            rows: list[tuple[int, Period]] = []
            for count in counts:
                with load(identities[:count], port, args.wait) as counters:
                    # Steady state before measuring: all polls out, then as many answered as there are
                    # connectors (each has been round once). A manager that cannot keep up gets there
                    # late (its queue drains at its pace) or not at all: then it is measured as it is.
                    deadline = time.monotonic() + args.wait * 3 + count * 0.04 + 60
                    while counters.parked.value < 0.95 * count and time.monotonic() < deadline:
                        time.sleep(0.2)
                    while counters.cycles.value < count and time.monotonic() < deadline:
                        time.sleep(0.2)
                    ramp = time.monotonic() - deadline + args.wait * 3 + count * 0.04 + 60
                    print(f"  ({count} connectors: {ramp:.0f} s to steady state)", flush=True)
                    with profiled(args.py_spy, f"idle-{kind}", count, {"manager": pid}, seconds):
                        period = measure(pid, seconds, counters)
                rows.append((count, period))
                net = period.cpu - base.cores * period.seconds
                per_cycle = net * 1000 / period.cycles if period.cycles else float("nan")
                growth = (period.rss - base.rss) / max(period.parked_mean, 1)
                print(
                    f"{count} connectors: parked mean {period.parked_mean:.0f} (min {period.parked_min}), "
                    f"RSS {period.rss / 1024:.1f} MiB (+{growth:.1f} KiB per parked poll), "
                    f"{period.cores:.3f} cores, {period.cycles} poll cycles "
                    f"({period.cycles / period.seconds:.1f}/s), {per_cycle:.2f} ms manager CPU per cycle "
                    f"(net of the baseline), errors {period.errors}; "
                    f"the load process {period.load_cores:.3f} cores",
                    flush=True,
                )
                expected = count / args.wait
                if period.cycles / period.seconds < 0.9 * expected:
                    print(
                        f"  the manager did not keep up: {period.cycles / period.seconds:.1f} polls answered "
                        f"per second of the {expected:.0f} that {count} connectors at a {args.wait:g} s wait "
                        "make; the rest waited in its queue (for its CPU, its threadpool), not parked",
                        flush=True,
                    )
                if args.py_spy:
                    profile = args.py_spy / f"manager-idle-{kind.lower()}-{count}.txt"
                    print(f"  py-spy {profile} (share of GIL-holding samples):", flush=True)
                    for line in hot_spots(profile):
                        print(f"    {line}", flush=True)
                time.sleep(3.0)  # the previous load's polls end on their disconnects
        finally:
            manager.stop()
    print("\nprojected and targets (same run):", flush=True)
    for count, period in rows:
        net = period.cpu - base.cores * period.seconds
        per_cycle = net / period.cycles if period.cycles else float("nan")
        projected = base.cores + count * per_cycle / AGENT_WAIT
        print(
            f"  {count} connectors at the agent's {AGENT_WAIT:g} s wait: {projected:.3f} cores projected "
            f"(idle {base.cores:.4f} + {count} x {per_cycle * 1000:.2f} ms / {AGENT_WAIT:g} s); "
            f"RSS {period.rss / 1024:.0f} MiB; 1 core saturates near "
            f"{AGENT_WAIT / per_cycle if per_cycle > 0 else float('nan'):,.0f} idle connectors",
            flush=True,
        )
        if count == TARGET_CONNECTORS:
            mb = period.rss / 1024 * 1.048576  # KiB -> MB
            print(
                f"  target {TARGET_CONNECTORS} idle connectors under {TARGET_MB:g} MB: "
                f"{'MET' if mb < TARGET_MB else 'NOT MET'} ({mb:.0f} MB)",
                flush=True,
            )
            print(
                f"  target {TARGET_CONNECTORS} idle connectors under {TARGET_CORES:g} cores: "
                f"{'MET' if projected < TARGET_CORES else 'NOT MET'} ({projected:.3f} cores at "
                f"{AGENT_WAIT:g} s)",
                flush=True,
            )
    print(f"({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; {machine().split(', load')[1].strip()})")


if __name__ == "__main__":
    main()
