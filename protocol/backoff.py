"""Reconnect delays: exponential backoff with full jitter.

Thousands of agents lose the relay at the same moment when it restarts; full jitter (a delay
drawn uniformly between zero and the exponential ceiling) spreads their return so the relay is
not hit by a thundering herd. Randomness is injected so tests run on fixed numbers.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator


def backoff(
    base: float = 1.0,
    cap: float = 30.0,
    factor: float = 2.0,
    rand: Callable[[], float] = random.random,
) -> Iterator[float]:
    """Yield delays in seconds: attempt n waits uniform(0, min(cap, base * factor**n)).

    The generator never ends; the caller starts a fresh one once a connection has stayed up
    long enough to count as stable.
    """
    ceiling = min(cap, base)
    while True:
        yield rand() * ceiling
        ceiling = min(cap, ceiling * factor)
