"""Loopback ports for the servers tests start, and for ports nothing listens on.

`bind(("127.0.0.1", 0))` hands out a port from the kernel's ephemeral range, the range it also draws the
source ports of outgoing connections from. While the server meant for that port is not listening (not
yet, or stopped for a restart), the kernel may give the same number to an outgoing connection, even one
to that very port, which on loopback connects to itself (TCP simultaneous open); the server's bind then
fails with EADDRINUSE. CI saw it: a manager restarted by tests/e2e/test_link.py could not bind, and the
test waited 90 s on a refused port. Ports below the ephemeral range are never source ports, so these
helpers draw from there, each pytest-xdist worker from its own slice so that two workers never pick
the same port.
"""

from __future__ import annotations

import itertools
import os
import random
import socket
from collections.abc import Iterator
from pathlib import Path

# Below the usual ephemeral range (32768-60999) and above the well-known services this machine runs.
_LOWEST = 20000
_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _ephemeral_start() -> int:
    try:
        return int(_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _worker_slice() -> range:
    """This worker's share of the ports between _LOWEST and the ephemeral range."""
    top = _ephemeral_start()
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    index = int(worker) if worker.isdigit() else 0
    width = max((top - _LOWEST) // max(count, 1), 0)
    start = _LOWEST + index * width
    return range(start, start + width)


def _candidates() -> Iterator[int]:
    ports = _worker_slice()
    if len(ports) < 100:  # an unusual ephemeral range leaves no room below it: the kernel's choice
        while True:
            yield 0
    # A random starting point: consecutive test sessions on one worker do not meet each other's
    # servers still shutting down on the same numbers.
    offset = random.randrange(len(ports))  # noqa: S311  (not security: spreading ports)
    for step in itertools.count():
        yield ports[(offset + step) % len(ports)]


_NEXT = _candidates()


def _bindable(port: int) -> int | None:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return None
        return int(probe.getsockname()[1])


def free_port() -> int:
    """A loopback port nothing is bound to, outside the range outgoing connections take theirs from.
    Each call in a process returns a different port."""
    for port in _NEXT:
        bound = _bindable(port)
        if bound is not None:
            return bound
    raise AssertionError("unreachable: the candidates never end")


def closed_port() -> int:
    """A port nothing listens on, and no outgoing connection can take: connecting to it is refused."""
    return free_port()
