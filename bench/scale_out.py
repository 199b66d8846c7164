"""Scale-out: one manager against two `ca-manager serve` processes on one PostgreSQL database, same run,
and proof afterwards that no job was delivered twice or lost. (The issue calls it bench/scale-out; a
Python module name cannot hold a dash, so it is bench/scale_out.py.)

    .venv/bin/python -m bench.scale_out [--seconds S] [--clients 8,32]
        [--database postgresql+psycopg://postgres@127.0.0.1:5432/bench_scale_out]

--database names a scratch database (trust auth): created through the `postgres` database when missing,
its schema dropped and migrated anew. Two connectors (`ca-connector run -workers 8`), each with its own
local CA backend (`-keytype ec-p256`) and a profile on it. The REST clients enroll with `wait` like
bench/throughput.py (its drive(): client processes with keep-alive threads, 201 Issued counted), each
request's profile picked at random from the two, so a job created through one manager is about half the
time for the connector that polls the other (the cross-process PostgreSQL NOTIFY path, both ways: the
job's wake-up to the poll and the issued certificate's wake-up to the waiting request).

- one manager: manager A; connectors X and Y1 both registered with A's URL; clients post to A.
- two managers: A and B (same database, same data directory for the key file); X registered with A,
  Y2 (a third connector home, registered with B's URL) instead of Y1; clients round robin over A and B.

Then, with every process stopped, the database is checked: every enroll certificate Issued, as many as
the 201s the clients saw; every enroll job done with attempts == 1 (a redelivery would show more); no
two certificates with the same (CA, serial) nor the same (issuer name, serial); every answer the
clients got naming a distinct certificate id. Printed as PASS/FAIL lines. The machine is shared: the
ratio two/one within this run is the figure (the issue's target: at least 1.6x).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import random
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from bench.throughput import (
    CLK_TCK,
    Row,
    Target,
    _cli,
    _pid,
    _reset_postgres,
    drive,
    local_ca_connector,
    machine,
)
from cryptography import x509
from tests.e2e.processes import BIN, Process, clean_env, wait_until
from tests.ports import free_port

DEFAULT_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:5432/bench_scale_out"
TARGET_RATIO = 1.6


def ensure_database(url: str) -> None:
    """CREATE DATABASE when it is missing (CREATE DATABASE runs outside a transaction)."""
    from sqlalchemy import create_engine, make_url, text  # noqa: PLC0415

    parsed = make_url(url.replace("postgresql://", "postgresql+psycopg://", 1))
    name = parsed.database
    if not name or not name.replace("_", "").isalnum():
        raise SystemExit(f"--database: {name!r} is not a plain database name")
    engine = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        exists = connection.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
        if exists is None:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()


@dataclass
class Lab:
    workdir: Path
    env: dict[str, str]
    api_key: str = ""
    managers: dict[str, tuple[str, Process]] = field(default_factory=dict)  # label -> (url, process)
    connectors: dict[str, tuple[Process, str]] = field(default_factory=dict)  # label -> (process, profile)

    def start_manager(self, label: str) -> str:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**self.env, "CA_MANAGER_PUBLIC_URL": url}
        process = Process(
            f"manager-{label}", [str(BIN / "ca-manager"), "serve", "-port", str(port)],
            self.workdir / f"manager-{label}.log", env,
        ).start()  # fmt: skip
        wait_until(lambda: httpx.get(f"{url}/healthz", trust_env=False).status_code == 200, 60, what=label)
        self.managers[label] = (url, process)
        return url

    def start_connector(self, label: str, manager: str, workers: int) -> str:
        """A connector home registered with `manager`'s URL, a local CA, running; returns its profile."""
        agent, profile = local_ca_connector(
            self.managers[manager][0], self.api_key, self.env,
            clean_env(CA_CONNECTOR_HOME=str(self.workdir / f"connector-{label}")),
            name=label, profile=f"bench-{label}", workers=workers,
            process=(f"connector-{label}", self.workdir / f"connector-{label}.log"),
        )  # fmt: skip
        self.connectors[label] = (agent, profile)
        return profile

    def stop_connector(self, label: str) -> None:
        self.connectors.pop(label)[0].stop()

    def pids(self) -> dict[str, int]:
        found = {f"manager {label}": _pid(process) for label, (_, process) in self.managers.items()}
        found.update({f"connector {label}": _pid(process) for label, (process, _) in self.connectors.items()})
        return found

    def stop_all(self) -> None:
        for label in list(self.connectors):
            self.stop_connector(label)
        for _, process in self.managers.values():
            process.stop()
        self.managers.clear()


@contextlib.contextmanager
def lab(workdir: Path, database: str) -> Iterator[Lab]:
    ensure_database(database)
    _reset_postgres(database)
    env = clean_env(CA_MANAGER_HOME=str(workdir / "manager"), CA_MANAGER_DATABASE_URL=database)
    manager_bin = str(BIN / "ca-manager")
    _cli([manager_bin, "db", "upgrade"], env)
    _cli([manager_bin, "admin", "create", "-username", "admin"], env)
    api_key = _cli([manager_bin, "apikey", "create", "-username", "admin", "-json"], env)["api_key"]
    setup = Lab(workdir, env, api_key)
    try:
        yield setup
    finally:
        setup.stop_all()


def enroll_target(setup: Lab, urls: list[str], profiles: list[str], ids_dir: Path) -> Target:
    """Enroll with wait, a random one of `profiles` each time; each 201's certificate id is appended to
    a file of the client process (an O_APPEND write of one line, whole even from several threads)."""

    def ok(response: httpx.Response) -> bool:
        if response.status_code != 201 or response.json().get("status") != "Issued":
            return False
        descriptor = os.open(ids_dir / f"ids-{os.getpid()}", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(descriptor, f"{response.json()['id']}\n".encode())
        finally:
            os.close(descriptor)
        return True

    return Target(
        f"{urls[0]}/api/v1/certificates",
        {"Authorization": f"Bearer {setup.api_key}"},
        lambda csr: {"profile": random.choice(profiles), "csr": csr, "wait": 30},
        ok,
        tuple(f"{url}/api/v1/certificates" for url in urls[1:]),
    )


# ---- the checks --------------------------------------------------------------------------------------


def settle(database: str, timeout: float = 60) -> int:
    """Wait until no enroll certificate is Requested or Pending (a client that gave up leaves its
    request to finish); returns how many are still not settled."""
    from sqlalchemy import create_engine, text  # noqa: PLC0415

    engine = create_engine(database)
    deadline = time.monotonic() + timeout
    try:
        while True:
            with engine.connect() as connection:
                open_ = int(connection.execute(text(
                    "SELECT count(*) FROM certificates WHERE source = 'enroll' "
                    "AND status IN ('Requested', 'Pending')"
                )).scalar_one())  # fmt: skip
            if open_ == 0 or time.monotonic() > deadline:
                return open_
            time.sleep(0.5)
    finally:
        engine.dispose()


def checks(database: str, answered: list[str], errors: int) -> list[tuple[bool, str]]:
    from sqlalchemy import create_engine, text  # noqa: PLC0415

    engine = create_engine(database)
    with engine.connect() as connection:

        def rows(sql: str) -> list[Any]:
            return list(connection.execute(text(sql)).all())

        by_status = dict(
            rows("SELECT status, count(*) FROM certificates WHERE source = 'enroll' GROUP BY status")
        )
        issued = {row[0]: row[1] for row in rows(
            "SELECT id, certificate_pem FROM certificates WHERE source = 'enroll' AND status = 'Issued'"
        )}  # fmt: skip
        jobs = dict(rows("SELECT status, count(*) FROM jobs WHERE kind = 'enroll' GROUP BY status"))
        redelivered = rows(
            "SELECT attempts, count(*) FROM jobs WHERE kind = 'enroll' AND attempts <> 1 GROUP BY attempts"
        )
        jobs_per_cert = rows(
            "SELECT certificate_id, count(*) FROM jobs WHERE kind = 'enroll' GROUP BY certificate_id "
            "HAVING count(*) <> 1"
        )
        per_connector = dict(rows(
            "SELECT c.name, count(*) FROM jobs j JOIN connectors c ON c.id = j.connector_id "
            "WHERE j.kind = 'enroll' GROUP BY c.name"
        ))  # fmt: skip
        same_serial = rows(
            "SELECT ca_id, serial, count(*) FROM certificates WHERE serial IS NOT NULL "
            "GROUP BY ca_id, serial HAVING count(*) > 1"
        )
    engine.dispose()
    names: dict[tuple[str, int], int] = {}
    for pem in issued.values():
        certificate = x509.load_pem_x509_certificate(pem.encode())
        key = (certificate.issuer.rfc4514_string(), certificate.serial_number)
        names[key] = names.get(key, 0) + 1
    same_name = sum(1 for n in names.values() if n > 1)
    distinct = set(answered)
    not_issued = {k: v for k, v in by_status.items() if k != "Issued"}
    return [
        (not not_issued, f"every enroll certificate Issued (by status: {by_status})"),
        (
            len(issued) == len(answered),
            f"Issued rows {len(issued)} == 201 answers the clients saw {len(answered)} "
            f"(client-side failures/time-outs: {errors})",
        ),
        (distinct <= set(issued), "every answered certificate id is an Issued row"),
        (len(distinct) == len(answered), f"answers name distinct certificate ids ({len(distinct)} distinct)"),
        (set(jobs) == {"done"}, f"every enroll job done (by status: {jobs})"),
        (not redelivered, f"every enroll job attempts == 1 (otherwise attempts: count {redelivered})"),
        (not jobs_per_cert, f"one enroll job per certificate ({len(jobs_per_cert)} certificates otherwise)"),
        (
            all(per_connector.get(name, 0) > 0 for name in ("X", "Y1", "Y2")),
            f"every connector got enroll jobs ({per_connector}; Y2 polls manager B, and about half of the "
            "jobs for it were created through A)",
        ),
        (not same_serial, f"no two certificates share (CA, serial) ({len(same_serial)} pairs)"),
        (not same_name, f"no two certificates share (issuer name, serial) ({same_name} pairs)"),
    ]


# ---- main --------------------------------------------------------------------------------------------


def machine_busy() -> float:
    """CPU seconds the whole machine spent not idle, from /proc/stat: shows when all cores are taken."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks[:8]) - idle) / CLK_TCK


def answered_ids(ids_dir: Path) -> list[str]:
    return [line for path in ids_dir.glob("ids-*") for line in path.read_text().splitlines() if line]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="measured time per row")
    parser.add_argument("--clients", default="8,32", help="client counts, comma separated")
    parser.add_argument("--database", default=DEFAULT_DATABASE, help="a scratch PostgreSQL URL")
    parser.add_argument("--workers", type=int, default=8, help="ca-connector run -workers")
    args = parser.parse_args()
    counts = [int(c) for c in args.clients.split(",")]
    database = args.database.replace("postgresql://", "postgresql+psycopg://", 1)
    print(machine(), flush=True)
    print(f"PostgreSQL; {args.seconds:g} s per row; P-256 local CAs; -workers {args.workers}", flush=True)
    rows: dict[tuple[int, int], Row] = {}
    errors = 0
    with (
        tempfile.TemporaryDirectory(prefix="bench-scale-out-") as scratch,
        lab(Path(scratch), database) as setup,
    ):
        ids_dir = Path(scratch) / "ids"
        ids_dir.mkdir()
        a = setup.start_manager("A")
        profiles = [
            setup.start_connector("X", "A", args.workers),
            setup.start_connector("Y1", "A", args.workers),
        ]
        urls = [a]
        for managers in (1, 2):
            if managers == 2:  # the second manager, and Y polling it instead of A
                setup.stop_connector("Y1")
                urls.append(setup.start_manager("B"))
                profiles = [profiles[0], setup.start_connector("Y2", "B", args.workers)]
            label = "one-manager" if managers == 1 else "two-managers"  # a CSR's host name takes label[:2]
            target = enroll_target(setup, urls, profiles, ids_dir)
            pids = setup.pids()
            errors += drive(label, target, 2, 1.0, pids).errors  # warm up: imports, first connections
            for clients in counts:
                busy0 = machine_busy()
                row = drive(label, target, clients, args.seconds, pids)
                busy = (machine_busy() - busy0) / row.seconds
                rows[managers, clients] = row
                errors += row.errors
                print(row.line(None, None), flush=True)
                total = sum(row.cpu_ms.values())
                print(
                    f"{'':<28} {total:.1f} ms CPU/cert over these processes; the whole machine "
                    f"(PostgreSQL and other users' work included) {busy:.2f} of {os.cpu_count()} cores busy",
                    flush=True,
                )
        left = settle(database)
        if left:
            print(f"{left} enroll certificates still Requested/Pending 60 s after the run", flush=True)
        answered = answered_ids(ids_dir)
    print("\nratios (same run):", flush=True)
    for clients in counts:
        one, two = rows[1, clients], rows[2, clients]
        ratio = two.rate / one.rate if one.rate else float("nan")
        print(
            f"  {clients} clients: one manager {one.rate:.1f}/s, two managers {two.rate:.1f}/s combined: "
            f"{ratio:.2f}x (target at least {TARGET_RATIO:g}x: "
            f"{'MET' if ratio >= TARGET_RATIO else 'NOT MET'})",
            flush=True,
        )
    print("\nchecks (every process stopped, the database read):", flush=True)
    # The warm-up rows' certificates are in the database and in the ids files alike.
    results = checks(database, answered, errors)
    for passed, text_ in results:
        print(f"  {'PASS' if passed else 'FAIL'}  {text_}", flush=True)
    print(f"({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; {machine().split(', load')[1].strip()})")


if __name__ == "__main__":
    main()
