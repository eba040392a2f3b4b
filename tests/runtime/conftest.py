"""A relay process and an agent process whose token comes from a token file, as in an office.

Both are real processes (``erp-relay serve``, ``python -m agent run``): rotation, reload and
status are about a running agent being changed from outside, which only a process shows.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from relay.store import Store
from relay.store.db import upgrade
from tests.support.agent_process import AgentProcess, write_agent_config
from tests.support.fleet import client_of, eventually, get_json
from tests.support.relay_process import BIN, RelayProcess
from tests.support.servers import free_port, wait_for


@dataclass
class Relay:
    process: RelayProcess
    database_url: str
    api_key: str
    admin_key: str
    token: str
    token_id: str
    """The agent ``acme``'s first token and its public id."""

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "erp-relay"), *args, "--database-url", self.database_url],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[Relay]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'relay.sqlite'}"
    await upgrade(url)
    store = await Store.open(url)
    try:
        agent = await store.create_agent("acme")
        key = await store.create_api_key("crm", ["*"], ["*"])
        admin = await store.create_api_key("ops", ["*"], ["*"], admin=True)
    finally:
        await store.close()
    process = RelayProcess(url, free_port(), tmp_path / "relay.log")
    await asyncio.to_thread(process.start)
    try:
        yield Relay(process, url, key.plaintext, admin.plaintext, agent.plaintext, agent.public_id)
    finally:
        await asyncio.to_thread(process.stop)


@dataclass
class Office:
    """One agent installation: config file, token file, status file, log."""

    agent: AgentProcess
    config: Path
    token_file: Path
    status_file: Path
    relay_url: str
    journal: Path
    erp_path: Path

    def write_config(
        self,
        *,
        relay_url: str | None = None,
        connections: int = 1,
        top_options: Sequence[str] = ('log_level = "info"',),
        agent_options: Sequence[str] = (),
        status_options: Sequence[str] = (),
        watch_s: float = 0.3,
    ) -> None:
        """Write the agent's config; ``watch_s`` 0 turns the file watch off (SIGHUP only)."""
        write_agent_config(
            self.config,
            relay_url=relay_url or self.relay_url,
            erp_path=self.erp_path,
            journal_path=self.journal,
            connections=connections,
            relay_options=[f"token_file = {str(self.token_file)!r}"],
            agent_options=agent_options,
            top_options=top_options,
            tables="\n[status]\ninterval_s = 0.5\n"
            + "".join(f"{line}\n" for line in status_options)
            + f"\n[reload]\nwatch_interval_s = {watch_s}\n",
        )

    def status(self) -> dict[str, Any]:
        """The agent's status file (atomically replaced, so always whole)."""
        data: dict[str, Any] = json.loads(self.status_file.read_text(encoding="utf-8"))
        return data

    def status_command(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``erp-agent status`` as the office admin runs it: another process."""
        return subprocess.run(
            [sys.executable, "-m", "agent", "status", "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


@pytest.fixture
def office(relay: Relay, erp_path: Path, tmp_path: Path) -> Iterator[Office]:
    token_file = tmp_path / "agent.token"
    token_file.write_text(relay.token + "\n", encoding="utf-8")
    state = tmp_path / "state"
    installed = Office(
        AgentProcess(tmp_path / "agent.toml", None, tmp_path / "agent.log", log_level=None),
        tmp_path / "agent.toml",
        token_file,
        state / "status.json",
        relay.process.ws_url,
        state / "journal.sqlite",
        erp_path,
    )
    installed.write_config()
    try:
        yield installed
    finally:
        installed.agent.stop()


async def links(relay: Relay) -> list[dict[str, Any]]:
    """The agent's connections as the relay's admin API shows them (with their token)."""
    async with client_of(relay.process.base_url, relay.admin_key) as admin:
        page = await get_json(admin, "/v1/admin/agents/acme")
    found: list[dict[str, Any]] = page["links"]
    return found


async def connected(relay: Relay, office: Office, count: int = 1) -> list[dict[str, Any]]:
    """Wait until the agent holds ``count`` connections to the relay."""
    await wait_for(lambda: office.agent.alive, what="the agent process")
    found = await eventually(
        lambda: links(relay),
        lambda found: len(found) == count or not office.agent.alive,
        "the agent to connect",
    )
    assert office.agent.alive, office.agent.log()
    return found


def crm(relay: Relay) -> httpx.AsyncClient:
    return client_of(relay.process.base_url, relay.api_key)
