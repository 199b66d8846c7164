"""Issuance throughput, side by side in one run: the raw `cryptography` limit, CFSSL's `cfssl serve`, and
ours end to end (a real `ca-manager serve` and `ca-connector run` with a local CA, P-256 CA key, enrolled
with `wait` through the REST API), at 1, 8 and 32 clients, on SQLite and, with --database, PostgreSQL.

Every system is driven the same way: client processes (several, so the client is not the bottleneck),
each with a few threads holding one keep-alive HTTP connection apiece, posting CSRs made beforehand for
a fixed time. Printed per row: certificates per second, p50/p95/p99 latency, CPU ms per certificate of
each server process (from /proc/<pid>/stat before and after) and of the clients, and the ratios to
CFSSL and to the raw limit measured in this same run. The machine is shared: compare ratios, not
figures from different runs. A figure, not a pass/fail:

    .venv/bin/python -m bench.throughput [--seconds S] [--clients 1,8,32] [--baseline CHECKOUT]
        [--database postgresql+psycopg://127.0.0.1/scratch_db]

--database takes a scratch PostgreSQL database (trust auth): its schema is dropped and migrated anew.
CFSSL comes from the Debian package golang-cfssl, installed with apt-get when `cfssl` is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import itertools
import json
import multiprocessing as mp
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tests.e2e.processes import BIN, Process, clean_env, run, wait_until
from tests.ports import free_port

CLK_TCK = os.sysconf("SC_CLK_TCK")
CLIENT_PROCESSES = 4  # at most; each runs clients/processes threads
CSR_POOL = 400  # distinct CSRs per client process (reused round robin: each enrollment is new anyway)


# ---- measuring ---------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (its threads included), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


@dataclass
class Row:
    system: str
    clients: int
    count: int
    seconds: float
    latencies: list[float]
    cpu_ms: dict[str, float]  # process label -> CPU ms per certificate
    errors: int = 0

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def line(self, cfssl: float | None, raw: float | None) -> str:
        ms = [s * 1000 for s in self.latencies]
        cpu = " ".join(f"{k}={v:.2f}" for k, v in self.cpu_ms.items())
        ratios = []
        if cfssl:
            ratios.append(f"x{self.rate / cfssl:.2f} cfssl")
        if raw:
            ratios.append(f"x{self.rate / raw:.3f} raw")
        errors = f" errors={self.errors}" if self.errors else ""
        return (
            f"{self.system:<28} {self.clients:>3} clients {self.rate:8.1f}/s  "
            f"p50 {percentile(ms, 0.5):6.1f} p95 {percentile(ms, 0.95):6.1f} "
            f"p99 {percentile(ms, 0.99):6.1f} ms"
            f"  cpu ms/cert: {cpu}  {' '.join(ratios)}{errors}"
        )


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{platform.node()}: {model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, load average {load} (shared machine: compare ratios)"
    )


# ---- CSRs and a P-256 CA -----------------------------------------------------------------------------


def csr_pems(count: int, tag: str) -> list[str]:
    pems = []
    for index in range(count):
        key = ec.generate_private_key(ec.SECP256R1())
        name = f"h{index}-{tag}.bench.test"
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256())
        )
        pems.append(csr.public_bytes(serialization.Encoding.PEM).decode())
    return pems


def make_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench CA")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, certificate


# ---- the raw limit -----------------------------------------------------------------------------------


def raw_limit(seconds: float) -> Row:
    """Parse and verify a CSR, build and sign its certificate: one thread, in process."""
    key, ca = make_ca()
    pems = [p.encode() for p in csr_pems(200, "raw")]
    latencies: list[float] = []
    started = time.perf_counter()
    cpu_before = time.process_time()
    index = 0
    while time.perf_counter() - started < seconds:
        t0 = time.perf_counter()
        csr = x509.load_pem_x509_csr(pems[index % len(pems)])
        if not csr.is_signature_valid:
            raise SystemExit("a bench CSR does not verify")
        now = dt.datetime.now(dt.UTC)
        (
            x509.CertificateBuilder()
            .subject_name(csr.subject)
            .issuer_name(ca.subject)
            .public_key(csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=90))
            .add_extension(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value, False)
            .sign(key, hashes.SHA256())
            .public_bytes(serialization.Encoding.DER)
        )
        latencies.append(time.perf_counter() - t0)
        index += 1
    elapsed = time.perf_counter() - started
    cpu = (time.process_time() - cpu_before) * 1000 / index
    return Row("raw cryptography (1 thread)", 1, index, elapsed, latencies, {"self": cpu})


# ---- clients -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """How a client posts one CSR: URL, headers, and the JSON body around the CSR."""

    url: str
    headers: dict[str, str]
    body: Callable[[str], dict[str, Any]]
    ok: Callable[[httpx.Response], bool]
    # Further URLs of the same service (bench/scale_out.py's two managers): each client thread's
    # requests go round robin over `url` and these.
    more_urls: tuple[str, ...] = ()


def _client_process(  # noqa: PLR0917  (a multiprocessing target takes positional arguments)
    target: Target, threads: int, tag: str, start: Any, stop_at: Any, out: Any, ready: Any
) -> None:
    pems = csr_pems(CSR_POOL, tag)
    results: list[tuple[float, bool]] = []
    lock = threading.Lock()

    def loop(offset: int) -> None:
        local: list[tuple[float, bool]] = []
        urls = (target.url, *target.more_urls)
        with httpx.Client(timeout=60, trust_env=False, headers=target.headers) as client:
            start.wait()
            index = offset
            while time.time() < stop_at.value:
                t0 = time.perf_counter()
                url = urls[index % len(urls)]
                try:
                    ok = target.ok(client.post(url, json=target.body(pems[index % len(pems)])))
                except httpx.HTTPError:
                    ok = False
                local.append((time.perf_counter() - t0, ok))
                index += 1
        with lock:
            results.extend(local)

    ready.release()
    workers = [threading.Thread(target=loop, args=(i * 97,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    out.put((results, time.process_time()))


def drive(system: str, target: Target, clients: int, seconds: float, servers: dict[str, int]) -> Row:
    """`clients` concurrent clients for `seconds`, spread over up to CLIENT_PROCESSES processes."""
    context = mp.get_context("fork")
    processes = min(clients, CLIENT_PROCESSES)
    start = context.Event()
    ready = context.Semaphore(0)
    stop_at = context.Value("d", 0.0)
    out: Any = context.Queue()
    split = [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]
    children = [
        context.Process(target=_client_process, args=(target, n, f"{system[:2]}{clients}-{i}", start, stop_at,
                                                      out, ready))
        for i, n in enumerate(split)
    ]  # fmt: skip
    for child in children:
        child.start()
    for _ in children:
        ready.acquire()
    time.sleep(0.3)  # the threads open their clients
    before = {label: cpu_seconds(pid) for label, pid in servers.items()}
    stop_at.value = time.time() + seconds
    started = time.perf_counter()
    start.set()
    gathered = [out.get() for _ in children]
    elapsed = time.perf_counter() - started
    after = {label: cpu_seconds(pid) for label, pid in servers.items()}
    for child in children:
        child.join()
    samples = [sample for results, _ in gathered for sample in results]
    good = [latency for latency, ok in samples if ok]
    count = max(len(good), 1)
    cpu_ms = {label: (after[label] - before[label]) * 1000 / count for label in servers}
    cpu_ms["clients"] = sum(cpu for _, cpu in gathered) * 1000 / count
    return Row(system, clients, len(good), elapsed, good, cpu_ms, errors=len(samples) - len(good))


# ---- CFSSL -------------------------------------------------------------------------------------------


def cfssl_binary() -> str:
    found = shutil.which("cfssl")
    if found:
        return found
    print("installing golang-cfssl (Debian) ...", flush=True)
    subprocess.run(["apt-get", "install", "-y", "-q", "golang-cfssl"], check=True, stdout=subprocess.DEVNULL)
    found = shutil.which("cfssl")
    if not found:
        raise SystemExit("golang-cfssl installed no cfssl binary")
    return found


@contextlib.contextmanager
def cfssl_serve(workdir: Path) -> Iterator[tuple[str, int]]:
    key, ca = make_ca()
    (workdir / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (workdir / "ca-key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    config = {"signing": {"default": {"expiry": "2160h", "usages": ["digital signature", "server auth"]}}}
    (workdir / "config.json").write_text(json.dumps(config))
    port = free_port()
    argv = [cfssl_binary(), "serve", "-address", "127.0.0.1", "-port", str(port),
            "-ca", str(workdir / "ca.pem"), "-ca-key", str(workdir / "ca-key.pem"),
            "-config", str(workdir / "config.json"), "-loglevel", "5"]  # fmt: skip
    process = Process("cfssl", argv, workdir / "cfssl.log", clean_env()).start()
    url = f"http://127.0.0.1:{port}/api/v1/cfssl/sign"
    try:
        wait_until(lambda: _listening(port), 20, what="cfssl to listen")
        yield url, _pid(process)
    finally:
        process.stop()


def _pid(process: Process) -> int:
    if process.popen is None:
        raise SystemExit(f"{process.name} did not start")
    return process.popen.pid


def _listening(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/", trust_env=False, timeout=1)
    except httpx.HTTPError:
        return False
    return True


def cfssl_target(url: str) -> Target:
    return Target(
        url,
        {},
        lambda csr: {"certificate_request": csr},
        lambda r: r.status_code == 200 and bool(r.json().get("success")),
    )


# ---- ours --------------------------------------------------------------------------------------------


@dataclass
class Ours:
    url: str
    api_key: str
    profile_id: str
    manager_pid: int
    connector_pid: int


def _cli(argv: list[str], env: dict[str, str]) -> Any:
    done = run(argv, env, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:3])} failed: {done.stderr}")
    return json.loads(done.stdout) if done.stdout.strip().startswith(("{", "[")) else done.stdout


def _reset_postgres(url: str) -> None:
    from sqlalchemy import create_engine, text  # noqa: PLC0415

    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def local_ca_connector(
    url: str,
    api_key: str,
    manager_env: dict[str, str],
    connector_env: dict[str, str],
    *,
    name: str,
    profile: str,
    workers: int,
    process: tuple[str, Path],
) -> tuple[Process, str]:
    """A connector added to the manager at `url` and registered with it, with a local CA (P-256 key),
    running (`process`: its label and log), and a profile `profile` on that CA once the manager lists it.
    Returns the agent's process and the profile's id; the agent is stopped again when that fails."""
    manager_bin, connector_bin = str(BIN / "ca-manager"), str(BIN / "ca-connector")
    added = _cli([manager_bin, "connector", "add", "-name", name, "-json"], manager_env)
    _cli([connector_bin, "register", "-token", added["token"], "-manager", url], connector_env)
    _cli([connector_bin, "backend", "add", "-name", "LocalCA", "-type", "local", "-keytype", "ec-p256"],
         connector_env)  # fmt: skip
    label, log = process
    agent = Process(label, [connector_bin, "run", "-workers", str(workers)], log, connector_env).start()
    try:
        headers = {"Authorization": f"Bearer {api_key}"}
        with httpx.Client(base_url=f"{url}/api/v1", headers=headers, trust_env=False, timeout=30) as api:

            def backend() -> dict[str, Any] | None:
                for item in api.get("/backends").json()["items"]:
                    if item["connector"] == added["id"] and item["status"] == "Available" and item["cas"]:
                        return dict(item)
                return None

            wait_until(lambda: backend() is not None, 60, what=f"{name}'s local CA in the manager")
            found = backend() or {}
            created = api.post("/profiles", json={
                "name": profile, "backend": found["id"], "ca": found["cas"][0]["id"], "cert_type": "server",
                "terms_days": [90], "key_types": ["ec-p256"],
            })  # fmt: skip
            created.raise_for_status()
    except BaseException:
        agent.stop()
        raise
    return agent, str(created.json()["id"])


@contextlib.contextmanager
def ours(workdir: Path, database: str | None, workers: int, source: Path | None) -> Iterator[Ours]:
    manager_bin = str(BIN / "ca-manager")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # --baseline: the same entry points, importing another checkout's code first.
    code = {"PYTHONPATH": str(source / "src")} if source is not None else {}
    env = clean_env(CA_MANAGER_HOME=str(workdir / "manager"), CA_MANAGER_PUBLIC_URL=url, **code)
    if database:
        _reset_postgres(database)
        env["CA_MANAGER_DATABASE_URL"] = database
    _cli([manager_bin, "db", "upgrade"], env)
    _cli([manager_bin, "admin", "create", "-username", "admin"], env)
    api_key = _cli([manager_bin, "apikey", "create", "-username", "admin", "-json"], env)["api_key"]
    manager = Process(
        "manager", [manager_bin, "serve", "-port", str(port)], workdir / "manager.log", env
    ).start()
    connector_env = clean_env(CA_CONNECTOR_HOME=str(workdir / "connector"), **code)
    agent: Process | None = None
    try:
        wait_until(
            lambda: httpx.get(f"{url}/healthz", trust_env=False).status_code == 200, 60, what="manager"
        )
        agent, profile_id = local_ca_connector(
            url, api_key, env, connector_env, name="bench", profile="bench", workers=workers,
            process=("agent", workdir / "agent.log"),
        )  # fmt: skip
        yield Ours(url, api_key, profile_id, _pid(manager), _pid(agent))
    finally:
        if agent is not None:
            agent.stop()
        manager.stop()


def signed_requests(workdir: Path, database: str | None) -> int:
    """How many signed requests the connector made so far: each leaves its id in seen_requests."""
    from sqlalchemy import create_engine, text  # noqa: PLC0415

    url = database or f"sqlite:///{workdir / 'manager' / 'manager.db'}"
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as connection:
        count = int(connection.execute(text("SELECT count(*) FROM seen_requests")).scalar_one())
    engine.dispose()
    return count


def ours_target(setup: Ours) -> Target:
    profile = setup.profile_id
    return Target(
        f"{setup.url}/api/v1/certificates",
        {"Authorization": f"Bearer {setup.api_key}"},
        lambda csr: {"profile": profile, "csr": csr, "wait": 30},
        lambda r: r.status_code == 201 and r.json().get("status") == "Issued",
    )


@contextlib.contextmanager
def profiled(
    where: Path | None, label: str, clients: int, pids: dict[str, int], seconds: float
) -> Iterator[None]:
    """py-spy record of each process for the row (py-spy from PyPI, in the same environment)."""
    if where is None:
        yield
        return
    where.mkdir(parents=True, exist_ok=True)
    spy = str(BIN / "py-spy")
    tag = label.replace(", ", "-").lower()
    recorders = [
        subprocess.Popen([spy, "record", "--gil", "-f", "raw", "-r", "200", "-d", str(int(seconds + 1)),
                          "-p", str(pid),
                          "-o", str(where / f"{name}-{tag}-{clients}.txt")], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
        for name, pid in pids.items()
    ]  # fmt: skip
    time.sleep(1.0)
    try:
        yield
    finally:
        for recorder in recorders:
            recorder.wait(30)


# ---- main --------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="measured time per row")
    parser.add_argument("--clients", default="1,8,32", help="client counts, comma separated")
    parser.add_argument("--database", help="a scratch PostgreSQL URL: also measure ours on PostgreSQL")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another checkout (e.g. `git worktree add /tmp/base main`): measure its code too, same run",
    )
    parser.add_argument("--workers", type=int, default=8, help="ca-connector run -workers")
    parser.add_argument(
        "--py-spy", type=Path, help="record py-spy profiles (collapsed stacks) of our processes here"
    )
    args = parser.parse_args()
    counts = [int(c) for c in args.clients.split(",")]
    print(machine(), flush=True)
    print(
        f"{args.seconds:g} s per row; clients over up to {CLIENT_PROCESSES} processes; P-256 CA key",
        flush=True,
    )
    rows: list[Row] = []
    raw = raw_limit(args.seconds)
    rows.append(raw)
    print(raw.line(None, None), flush=True)
    cfssl_rates: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as scratch:
        workdir = Path(scratch)
        (workdir / "cfssl").mkdir()
        with cfssl_serve(workdir / "cfssl") as (url, pid):
            for clients in counts:
                row = drive("cfssl serve", cfssl_target(url), clients, args.seconds, {"cfssl": pid})
                cfssl_rates[clients] = row.rate
                rows.append(row)
                print(row.line(None, raw.rate), flush=True)
        databases: list[tuple[str, str | None]] = [("SQLite", None)]
        if args.database:
            databases.append(("PostgreSQL", args.database))
        sources: list[tuple[str, Path | None]] = [("ours", None)]
        if args.baseline:
            sources.insert(0, ("baseline", args.baseline))
        for (name, source), (kind, database) in itertools.product(sources, databases):
            label = f"{name}, {kind}"
            where = workdir / f"{name}-{kind.lower()}"
            where.mkdir()
            with ours(where, database, args.workers, source) as setup:
                pids = {"manager": setup.manager_pid, "connector": setup.connector_pid}
                target = ours_target(setup)
                drive(label, target, 2, 1.0, pids)  # warm up: imports, first connections
                for clients in counts:
                    before = signed_requests(where, database)
                    with profiled(args.py_spy, label, clients, pids, args.seconds):
                        row = drive(label, target, clients, args.seconds, pids)
                    rows.append(row)
                    print(row.line(cfssl_rates.get(clients), raw.rate), flush=True)
                    per_cert = (signed_requests(where, database) - before) / max(row.count, 1)
                    print(
                        f"{'':<28} {per_cert:.2f} signed connector requests (polls) per certificate",
                        flush=True,
                    )
    print("\nratios (same run):", flush=True)
    for row in rows[1:]:
        if row.system.startswith(("ours", "baseline")):
            cfssl = cfssl_rates.get(row.clients)
            server_cpu = row.cpu_ms.get("manager", 0) + row.cpu_ms.get("connector", 0)
            print(
                f"  {row.system}, {row.clients} clients: "
                f"{row.rate / cfssl if cfssl else float('nan'):.2f}x CFSSL, "
                f"{row.rate / raw.rate:.3f}x raw, {server_cpu:.2f} ms CPU/cert (manager+connector), "
                f"p50 {statistics.median(row.latencies) * 1000 if row.latencies else float('nan'):.1f} ms",
                flush=True,
            )


if __name__ == "__main__":
    sys.exit(main())
