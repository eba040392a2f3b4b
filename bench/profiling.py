"""cProfile switched on and off by signals, so only a chosen window is profiled.

SIGUSR1 starts profiling the main thread (the event loop); SIGUSR2 stops it and writes the
stats to the path given, then creates ``<path>.done`` so the bench knows the file is complete.
"""

from __future__ import annotations

import cProfile
import signal
import time
from pathlib import Path
from types import FrameType


def install(path: str) -> None:
    # CPU time of the calling thread (the event loop), not wall time: on 2 shared cores a
    # wall-clock profile charges a function for the time the OS ran another process.
    profiler = cProfile.Profile(time.thread_time)
    out = Path(path)

    def start(_signum: int, _frame: FrameType | None) -> None:
        profiler.enable()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        profiler.disable()
        profiler.dump_stats(out)
        out.with_name(out.name + ".done").touch()

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
