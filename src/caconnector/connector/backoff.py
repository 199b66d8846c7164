"""Reconnection delays: exponential with full jitter, bounded above and below.

Full jitter (a uniform draw between the floor and the current ceiling) spreads the reconnections of many
connectors after a manager outage, so they do not all come back in the same second. The floor keeps even
an unlucky draw from turning the retry loop into a busy loop.
"""

from __future__ import annotations

import random
from collections.abc import Callable

BASE = 1.0
CAP = 60.0
FLOOR = 0.5


class Backoff:
    """`next_delay()` after each failure, `reset()` after a success."""

    def __init__(
        self,
        *,
        base: float = BASE,
        cap: float = CAP,
        floor: float = FLOOR,
        uniform: Callable[[float, float], float] | None = None,
    ) -> None:
        if not 0 < floor <= base <= cap:
            raise ValueError("back-off needs 0 < floor <= base <= cap")
        self.base = base
        self.cap = cap
        self.floor = floor
        # Jitter is not a secret: the process-wide PRNG is the right tool (and tests pass their own).
        self._uniform = uniform or random.uniform
        self.failures = 0

    def ceiling(self) -> float:
        """The largest delay the next failure may wait: base * 2^failures, at most cap."""
        # Bounded exponent: 2**1000 would overflow a float long after reaching the cap anyway.
        return min(self.cap, self.base * 2.0 ** min(self.failures, 32))

    def next_delay(self) -> float:
        ceiling = self.ceiling()
        self.failures += 1
        delay = self._uniform(self.floor, ceiling)
        return min(ceiling, max(self.floor, delay))

    def reset(self) -> None:
        self.failures = 0
