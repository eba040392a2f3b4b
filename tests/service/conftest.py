"""A real relay process with agent ``acme`` for the service tests, and the unit file's text."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from relay.store.db import upgrade
from tests.support.cluster import seed_store
from tests.support.relay_process import RelayProcess
from tests.support.servers import free_port

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "agent"
UNIT = DEPLOY / "erp-agent.service"


@dataclass
class Relay:
    process: RelayProcess
    token: str
    api_key: str

    def agent_online(self) -> bool:
        """What the relay itself says: agent ``acme`` holds a connection."""
        answer = httpx.get(
            f"{self.process.base_url}/v1/agents/acme",
            headers={"Authorization": f"Bearer {self.api_key}"},
            timeout=5,
        )
        answer.raise_for_status()
        return bool(answer.json()["online"])


async def _store(url: str) -> tuple[str, str]:
    await upgrade(url)
    return await seed_store(url)


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[Relay]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'relay.sqlite'}"
    token, api_key = asyncio.run(_store(url))
    process = RelayProcess(url.replace("+aiosqlite", ""), free_port(), tmp_path / "relay.log")
    process.start()
    try:
        yield Relay(process, token, api_key)
    finally:
        process.stop()
