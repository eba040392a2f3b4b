"""Fixtures: a migrated relay database (SQLite and PostgreSQL) with agents and API keys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from relay.store import Store
from relay.store.db import upgrade
from tests.support.postgres import postgres_url  # noqa: F401 - fixture
from tests.support.servers import RelayHandle, serve_relay

SIGNING_KEY = "test-relay-webhook-key"
FAST = {
    "change_poll_interval_s": 0.1,
    "webhook_signing_key": SIGNING_KEY,
    "webhook_allow_private": True,
}


@dataclass
class Feed:
    database_url: str
    agent_token: str
    other_token: str
    api_key: str
    """Every agent, every operation."""
    stock_key: str
    """Agent ``acme``, ``products.stock`` only: sees stock.changed, not payments."""
    other_key: str
    """Agent ``other`` only."""


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'relay.sqlite'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(
        "postgres_url" if request.param == "postgres" else "sqlite_url"
    )
    return url


async def make_feed(url: str) -> Feed:
    await upgrade(url)
    store = await Store.open(url)
    try:
        acme = await store.create_agent("acme")
        other = await store.create_agent("other")
        key = await store.create_api_key("crm", ["*"], ["*"])
        stock = await store.create_api_key("stock", ["acme"], ["products.stock"])
        other_key = await store.create_api_key("other", ["other"], ["*"])
    finally:
        await store.close()
    return Feed(
        url, acme.plaintext, other.plaintext, key.plaintext, stock.plaintext, other_key.plaintext
    )


@pytest.fixture
async def feed(database_url: str) -> Feed:
    return await make_feed(database_url)


@pytest.fixture
async def relay(feed: Feed) -> AsyncIterator[RelayHandle]:
    async with serve_relay(feed.database_url, **FAST) as handle:
        yield handle


def client(relay: RelayHandle, key: str, **options: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=relay.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=60, **options
    )
