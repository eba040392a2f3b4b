"""A real agent process on the demo ERP, configured with a site policy, and what its ERP and
journal hold (to show a refused call changed nothing)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Protocol

import pytest

from tests.cluster.conftest import clients, cluster  # noqa: F401 - fixtures
from tests.e2e.conftest import client, creds, relay  # noqa: F401 - fixtures
from tests.support.agent_process import AgentProcess, write_agent_config
from tests.support.postgres import postgres_url  # noqa: F401 - fixture
from tests.support.redis import redis_target  # noqa: F401 - fixture
from tests.support.servers import wait_for

ANY_TOKEN = "erpa_fakerelay00_accepts-anything"
"""The fake relay checks no token."""


class StartAgent(Protocol):
    def __call__(
        self, relay_url: str, agent_options: Sequence[str], token: str = ANY_TOKEN
    ) -> AgentProcess: ...


@pytest.fixture
async def policy_agent(erp_path: Path, tmp_path: Path) -> AsyncIterator[StartAgent]:
    """Start ``python -m agent run`` for a relay URL with more ``[agent]`` lines (the policy);
    its journal is ``journal.sqlite`` in the test's folder."""
    started: list[AgentProcess] = []

    def start(relay_url: str, agent_options: Sequence[str], token: str = ANY_TOKEN) -> AgentProcess:
        config = write_agent_config(
            tmp_path / "agent.toml",
            relay_url=relay_url,
            erp_path=erp_path,
            journal_path=tmp_path / "journal.sqlite",
            agent_options=agent_options,
        )
        process = AgentProcess(config, token, tmp_path / "agent.log")
        process.start()
        started.append(process)
        return process

    yield start
    for process in started:
        # a relay in this loop must keep turning to answer the agent's close
        process.terminate()
        await wait_for(lambda p=process: not p.alive, timeout=15, what="the agent to stop")
        process.stop()


def row_counts(path: Path) -> dict[str, int]:
    """Rows per table of a SQLite file: equal before and after means nothing was written."""
    db = sqlite3.connect(path)
    try:
        tables = [
            name
            for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if not name.startswith("sqlite_")
        ]
        return {name: db.execute(f'SELECT COUNT(*) FROM "{name}"').fetchone()[0] for name in tables}
    finally:
        db.close()
