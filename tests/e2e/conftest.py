"""Fixtures for end-to-end tests: a migrated SQLite store with an agent and keys, a live relay."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from relay.store import Store
from relay.store.db import upgrade
from tests.support.agent_process import AgentProcess, write_agent_config
from tests.support.servers import RelayHandle, serve_relay, wait_for


@dataclass
class Credentials:
    database_url: str
    agent_token: str
    other_agent_token: str
    api_key: str
    narrow_key: str
    """Granted agent ``acme`` and ``customers.*`` only."""


@pytest.fixture
async def creds(tmp_path: Path) -> Credentials:
    url = f"sqlite+aiosqlite:///{tmp_path / 'relay.sqlite'}"
    await upgrade(url)
    store = await Store.open(url)
    try:
        acme = await store.create_agent("acme")
        other = await store.create_agent("other")
        await store.create_agent("sleepy")
        key = await store.create_api_key("crm", ["*"], ["*"])
        narrow = await store.create_api_key("narrow", ["acme"], ["customers.*"])
    finally:
        await store.close()
    return Credentials(url, acme.plaintext, other.plaintext, key.plaintext, narrow.plaintext)


@pytest.fixture
async def relay(creds: Credentials) -> AsyncIterator[RelayHandle]:
    async with serve_relay(creds.database_url) as handle:
        yield handle


@pytest.fixture
async def client(relay: RelayHandle, creds: Credentials) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=relay.base_url, headers={"Authorization": f"Bearer {creds.api_key}"}, timeout=30
    ) as http:
        yield http


@pytest.fixture
async def agent_process(
    relay: RelayHandle, creds: Credentials, erp_path: Path, tmp_path: Path
) -> AsyncIterator[AgentProcess]:
    """A real ``python -m agent run`` process for agent ``acme``, with the demo ERP."""
    config = write_agent_config(
        tmp_path / "agent.toml",
        relay_url=relay.ws_url,
        erp_path=erp_path,
        journal_path=tmp_path / "state" / "journal.sqlite",
    )
    process = AgentProcess(config, creds.agent_token, tmp_path / "agent.log")
    try:
        yield process
    finally:
        # the relay shares this loop: let it answer the agent's close while the agent stops
        process.terminate()
        await wait_for(lambda: not process.alive, timeout=15, what="the agent to stop")
        process.stop()


async def agent_online(relay: RelayHandle, agent: AgentProcess) -> None:
    await wait_for(
        lambda: relay.state.hub.is_online("acme") or not agent.alive,
        timeout=30,
        what="the agent process to connect",
    )
    assert agent.alive, agent.log()


async def start_agent(relay: RelayHandle, agent: AgentProcess, crash_at: str | None = None) -> None:
    agent.start(crash_at=crash_at)
    await agent_online(relay, agent)


async def agent_died(relay: RelayHandle, agent: AgentProcess) -> None:
    await wait_for(lambda: not agent.alive, timeout=30, what="the agent to die")
    await wait_for(lambda: not relay.state.hub.is_online("acme"), what="the relay to notice")
