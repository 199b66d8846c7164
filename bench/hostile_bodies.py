"""How much memory hostile bodies cost the manager: start `ca-manager serve`, send N large
unauthenticated bodies and N oversized authenticated-looking ones at once, print the server's RSS
before and after. A figure to watch, not a test.

    .venv/bin/python bench/hostile_bodies.py [-n 7] [-mb 100]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

MiB = 1024 * 1024


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def send(port: int, path: str, megabytes: int, chunked: bool) -> tuple[int | None, int]:
    """Stream `megabytes` of body; (status answered or None, MiB sent before the server answered)."""
    head = [f"POST {path} HTTP/1.1", "Host: bench", "Authorization: Bearer cak_000000000000_wrong"]
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {megabytes * MiB}")
    chunk = b"{" * MiB
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(("\r\n".join([*head, "", ""])).encode())
        try:
            for _ in range(megabytes):
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" if chunked else chunk)
                sent += 1
        except OSError:
            pass
        try:
            answer = sock.recv(64)
        except OSError:
            return None, sent
    status = int(answer.split()[1]) if answer.startswith(b"HTTP/1.1 ") else None
    return status, sent


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=7)
    parser.add_argument("-mb", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as datadir, socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CA_MANAGER_")}
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "caconnector.manager.cli",
                "serve",
                "-datadir",
                datadir,
                "-port",
                str(port),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while True:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/healthz")
                    break
                except httpx.TransportError:
                    time.sleep(0.2)
            before = rss_mib(server.pid)
            paths = ["/api/v1/connectors", "/connector/v1/poll", "/connector/v1/register"]
            jobs = [(paths[i % 3], i % 2 == 0) for i in range(args.n * 2)]
            started = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
                results = list(pool.map(lambda job: send(port, job[0], args.mb, job[1]), jobs))
            elapsed = time.monotonic() - started
            after = rss_mib(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
    statuses = sorted({str(status) for status, _ in results})
    print(
        f"{len(jobs)} bodies of {args.mb} MiB (half chunked), "
        f"answered {', '.join(statuses)} in {elapsed:.1f} s"
    )
    print(f"MiB sent before the answer: max {max(s for _, s in results)} of {args.mb}")
    print(f"server RSS before {before:.1f} MiB, after {after:.1f} MiB, ratio {after / before:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
