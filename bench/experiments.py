"""Opt-in changes to the relay process, to measure proposed fixes without editing relay/.

Used by ``run_relay.py --experiment NAME`` (and ``relay_overhead.py --relay-experiment``):

- ``no-calllog``: drop call-log rows instead of queueing them (not a proposal: it measures what
  the batched call-log writes cost per call).

(``gc.freeze()`` after startup and FastAPI without telemetry began here as experiments; the
relay does both itself now.)
"""

from __future__ import annotations

import gc
import sys
import time
from typing import Any

EXPERIMENTS = ("no-calllog",)


class GcWatch:
    """Counts collections per generation and the longest pause, reported at exit."""

    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.total = [0.0, 0.0, 0.0]
        self.longest = [0.0, 0.0, 0.0]
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation = info["generation"]
        pause = time.perf_counter() - self._started
        self.count[generation] += 1
        self.total[generation] += pause
        self.longest[generation] = max(self.longest[generation], pause)

    def report(self) -> None:
        parts = [
            f"gen{g}: {self.count[g]} collections, {self.total[g] * 1000:.0f} ms total, "
            f"longest {self.longest[g] * 1000:.1f} ms"
            for g in range(3)
        ]
        print("relay gc: " + "; ".join(parts), file=sys.stderr, flush=True)


def apply(names: list[str]) -> None:
    if "no-calllog" in names:
        from relay.calllog import CallLog

        CallLog.record = lambda self, row: None  # type: ignore[method-assign]
