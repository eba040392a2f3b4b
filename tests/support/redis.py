"""The machine's Redis for cluster tests, under a key prefix of the test's own.

Every test gets a fresh prefix (``erp-relay-test-<random>``), so tests sharing one Redis never
see each other's presence or messages; the keys are deleted afterwards.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis

from tests.support.required import unavailable

REDIS_URL_ENV = "ERP_RELAY_TEST_REDIS_URL"


@dataclass(frozen=True)
class RedisTarget:
    url: str
    prefix: str

    def settings(self) -> dict[str, str]:
        """Relay settings that put a replica in this test's cluster."""
        return {"redis_url": self.url, "redis_prefix": self.prefix}


@pytest.fixture
def redis_target() -> Iterator[RedisTarget]:
    url = os.environ.get(REDIS_URL_ENV, "redis://127.0.0.1:6379/0")
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        client.close()
        unavailable(f"Redis unavailable ({exc}); set {REDIS_URL_ENV} or start the server")
    target = RedisTarget(url, f"erp-relay-test-{secrets.token_hex(4)}")
    try:
        yield target
    finally:
        try:
            keys = list(client.scan_iter(f"{target.prefix}:*"))
            if keys:
                client.delete(*keys)
        except (redis.RedisError, OSError):
            pass  # a test that stopped Redis leaves nothing behind anyway
        client.close()
