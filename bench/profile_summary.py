"""Summarise a .prof file: own time by package, and the top functions.

uv run python -m bench.profile_summary relay.prof [--top 25] [--calls 2000]
"""

from __future__ import annotations

import argparse
import pstats
from collections import defaultdict

_GROUPS = (
    ("/relay/", "relay (project)"),
    ("/protocol/", "protocol (project)"),
    ("/agent/", "agent (project)"),
    ("/bench/", "bench connector"),
    ("/uvicorn/", "uvicorn"),
    ("/starlette/", "starlette"),
    ("/fastapi/", "fastapi"),
    ("/websockets/", "websockets"),
    ("/sqlalchemy/", "sqlalchemy"),
    ("/aiosqlite/", "aiosqlite"),
    ("/pydantic", "pydantic"),
    ("/opentelemetry/", "opentelemetry"),
    ("/asyncio/", "asyncio (stdlib)"),
)


def group_of(filename: str) -> str:
    for needle, name in _GROUPS:
        if needle in filename:
            return name
    if filename == "~":
        return "builtins (C: dict, isinstance, orjson, transport.write...)"
    return "other stdlib"


def summarise(path: str, top: int, calls: int | None) -> str:
    stats = pstats.Stats(path)
    raw = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values())
    by_group: dict[str, float] = defaultdict(float)
    for (filename, _line, _name), entry in raw.items():
        by_group[group_of(filename)] += entry[2]
    lines = [f"{path}: {total:.3f} s of profiled CPU (thread time, inflated by cProfile)"]
    lines.append(f"{'own time by package':<60} {'share':>6}")
    for name, seconds in sorted(by_group.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {name:<58} {seconds / total:>6.1%}")
    lines.append(f"\ntop {top} functions by own time")
    lines.append(f"  {'share':>6} {'ncalls':>8}  function")
    ranked = sorted(raw.items(), key=lambda kv: -kv[1][2])[:top]
    for (filename, line, name), entry in ranked:
        where = filename.split("site-packages/")[-1].replace("/work/main/", "")
        lines.append(f"  {entry[2] / total:>6.1%} {entry[1]:>8}  {where}:{line}({name})")
    if calls:
        lines.append(f"\n(per call: divide by {calls})")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--calls", type=int)
    args = parser.parse_args()
    print(summarise(args.path, args.top, args.calls))


if __name__ == "__main__":
    main()
