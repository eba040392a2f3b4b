"""CPU time and memory of a process, read from /proc (Linux; no psutil needed)."""

from __future__ import annotations

import os
import resource

_TICK = os.sysconf("SC_CLK_TCK")


Pids = int | tuple[int, ...]
"""One process, or several whose CPU is summed (the replicas of a cluster)."""


def cpu_seconds(pids: Pids) -> float:
    """utime + stime of every thread of `pids`, in seconds (resolution 1/SC_CLK_TCK)."""
    return sum(cpu_split(pids))


def cpu_split(pids: Pids) -> tuple[float, float]:
    """(user, system) seconds of every thread of `pids`."""
    user = system = 0
    for pid in (pids,) if isinstance(pids, int) else pids:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            data = f.read()
        # the command name (field 2) may hold spaces; fields after it are fixed
        fields = data[data.rindex(")") + 2 :].split()
        user, system = user + int(fields[11]), system + int(fields[12])
    return user / _TICK, system / _TICK


def self_cpu_seconds() -> float:
    """This process's own CPU time (all threads), at full resolution."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def status_kib(pid: int, field: str = "VmRSS") -> int:
    """A ``kB`` field of /proc/<pid>/status (VmRSS, VmHWM, RssAnon...)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def raise_nofile(wanted: int = 20_000) -> None:
    """Lift the soft open-file limit towards `wanted` (capped by the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
