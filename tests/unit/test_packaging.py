"""Each side installs only what it needs: no FastAPI in the office, no ODBC in the cloud."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

PYPROJECT = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\[<>=;~! ]", req, maxsplit=1)[0].lower() for req in requirements}


def test_agent_install_pulls_no_web_stack() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    agent = _names(PYPROJECT["project"]["dependencies"]) | _names(extras["agent"])
    assert not agent & {"fastapi", "uvicorn", "starlette", "asyncpg", "alembic"}


def test_relay_install_needs_no_odbc() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    relay = _names(PYPROJECT["project"]["dependencies"]) | _names(extras["relay"])
    assert "pyodbc" not in relay
    assert "pyodbc" in _names(extras["odbc"])


def test_console_scripts() -> None:
    assert PYPROJECT["project"]["scripts"] == {
        "erp-relay": "relay.cli:main",
        "erp-agent": "agent.cli:main",
    }
