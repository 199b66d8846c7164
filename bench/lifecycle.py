"""End-to-end enrollment through real processes: `ca-manager serve` (SQLite) and `ca-connector run` with a
local CA, driven over the REST API. Prints latency percentiles of enroll-with-wait one at a time, the
throughput with several clients at once, and, as a baseline measured in the same run, the local CA
signing the same kind of CSR directly (no manager, no connector). A figure, not a pass/fail:

    .venv/bin/python -m bench.lifecycle [--count N] [--clients C]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from tests.e2e.processes import BIN, Process, clean_env, run, wait_until
from tests.ports import free_port

from caconnector.backends.base import BackendContext, EnrollRequest
from caconnector.backends.configs import LocalConfig
from caconnector.backends.local import LocalBackendType
from caconnector.pki.csr import load_csr
from caconnector.testing import make_csr_pem


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _line(label: str, seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return (
        f"{label:<44} p50 {statistics.median(ms):7.2f} ms   p99 {_percentile(ms, 0.99):7.2f} ms   "
        f"max {max(ms):7.2f} ms   (n={len(ms)})"
    )


def _baseline(csrs: list[str], workdir: Path) -> list[float]:
    factory = LocalBackendType()
    context = BackendContext(name="baseline", state_dir=workdir / "baseline")
    ca = factory.open(factory.provision(LocalConfig(), context), context)
    latencies = []
    for pem in csrs:
        started = time.perf_counter()
        ca.enroll(EnrollRequest(csr=load_csr(pem.encode()), request_id=str(uuid.uuid4())))
        latencies.append(time.perf_counter() - started)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description="enrollment through manager and connector processes")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = clean_env(CA_MANAGER_HOME=str(work / "manager"), CA_MANAGER_PUBLIC_URL=url)
        manager_bin, connector_bin = str(BIN / "ca-manager"), str(BIN / "ca-connector")
        run([manager_bin, "admin", "create", "-username", "bench"], env)
        key = json.loads(run([manager_bin, "apikey", "create", "-username", "bench", "-json"], env).stdout)[
            "api_key"
        ]
        manager = Process(
            "manager", [manager_bin, "serve", "-port", str(port)], work / "manager.log", env
        ).start()
        cenv = clean_env(CA_CONNECTOR_HOME=str(work / "connector"))
        agent = None
        try:
            wait_until(lambda: httpx.get(f"{url}/healthz", timeout=1).status_code == 200, 30, what="manager")
            token = json.loads(run([manager_bin, "connector", "add", "-name", "bench", "-json"], env).stdout)[
                "token"
            ]
            run([connector_bin, "register", "-token", token, "-manager", url], cenv)
            run([connector_bin, "backend", "add", "-name", "LocalCA", "-type", "local"], cenv)
            agent = Process("agent", [connector_bin, "run"], work / "agent.log", cenv).start()
            api = httpx.Client(
                base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {key}"}, timeout=60
            )

            def backend() -> dict[str, Any]:
                items = api.get("/backends").json()["items"]
                return dict(next(b for b in items if b["status"] == "Available" and b["cas"]))

            wait_until(lambda: backend() is not None, 30, what="the backend")
            found = backend()
            profile = api.post("/profiles", json={
                "name": "bench", "backend": found["id"], "ca": found["cas"][0]["id"], "cert_type": "server",
                "terms_days": [90], "key_types": ["ec-p256"],
            }).json()["id"]  # fmt: skip
            csrs = [make_csr_pem(f"h{i}.bench.test") for i in range(args.count * 2)]

            def enroll(pem: str) -> float:
                started = time.perf_counter()
                response = api.post("/certificates", json={"profile": profile, "csr": pem, "wait": 60})
                if response.status_code != 201:
                    raise RuntimeError(response.text)
                return time.perf_counter() - started

            sequential = [enroll(pem) for pem in csrs[: args.count]]
            started = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                concurrent = list(pool.map(enroll, csrs[args.count :]))
            elapsed = time.perf_counter() - started
            baseline = _baseline(csrs[: args.count], work)
        finally:
            if agent is not None:
                agent.stop()
            manager.stop()
    print(f"enrollment through ca-manager serve (SQLite) and ca-connector run (local CA), {args.count} CSRs")
    print(_line("baseline: local CA signs directly", baseline))
    print(_line("POST /certificates wait, one client", sequential))
    print(_line(f"POST /certificates wait, {args.clients} clients", concurrent))
    print(f"throughput with {args.clients} clients: {args.count / elapsed:.0f} certificates/s; "
          f"one client: {args.count / sum(sequential):.0f}/s")  # fmt: skip


if __name__ == "__main__":
    main()
