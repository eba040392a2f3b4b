"""Several relay replicas sharing the machine's PostgreSQL and Redis (a prefix per test)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from relay.store.db import upgrade
from tests.support.cluster import process_cluster, seed_store  # noqa: F401 - fixture
from tests.support.postgres import postgres_url  # noqa: F401 - fixture
from tests.support.redis import RedisTarget, redis_target  # noqa: F401 - fixture
from tests.support.servers import RelayHandle, serve_relay


@dataclass
class Cluster:
    database_url: str
    redis: RedisTarget
    agent_token: str
    api_key: str

    def replica(self, name: str, **overrides: Any) -> AbstractAsyncContextManager[RelayHandle]:
        """An in-process relay replica of this cluster; settings may be overridden."""
        settings: dict[str, Any] = {
            **self.redis.settings(),
            "replica_id": name,
            "presence_ttl_s": 1.5,
            "presence_refresh_s": 0.3,
        }
        settings.update(overrides)
        return serve_relay(self.database_url, **settings)

    def client(self, relay: RelayHandle) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=relay.base_url,
            headers={"Authorization": f"Bearer {self.api_key}"},
            timeout=30,
        )


@pytest.fixture
async def cluster(postgres_url: str, redis_target: RedisTarget) -> Cluster:  # noqa: F811
    await upgrade(postgres_url)
    return Cluster(postgres_url, redis_target, *await seed_store(postgres_url))


ClientFor = Callable[[RelayHandle], httpx.AsyncClient]


@pytest.fixture
async def clients(cluster: Cluster) -> AsyncIterator[ClientFor]:
    """HTTP clients per replica, closed at the end of the test."""
    made: list[httpx.AsyncClient] = []

    def client_for(relay: RelayHandle) -> httpx.AsyncClient:
        made.append(cluster.client(relay))
        return made[-1]

    try:
        yield client_for
    finally:
        for client in made:
            await client.aclose()
