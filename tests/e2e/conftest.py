"""Fixtures for end-to-end tests: a migrated SQLite store with an agent and keys, a live relay."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from relay.store import Store
from relay.store.db import upgrade
from tests.support.servers import RelayHandle, serve_relay


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
