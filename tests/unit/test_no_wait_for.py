"""No `asyncio.wait_for` in the services: on Python 3.11 it can swallow a cancellation that
arrives as the awaited thing completes, and a loop that swallows its stop never ends (it lost
the agent's stop once). `asyncio.timeout` has no such race."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_services_use_asyncio_timeout() -> None:
    offenders = []
    for package in ("relay", "agent", "protocol"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Attribute) and node.attr == "wait_for":
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders
