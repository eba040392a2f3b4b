"""Reading the operations console's fleet view in tests: an admin key, clients, and waiting
for an agent's state (docs/admin-api.md, "Reading")."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from relay.store import Store

_T = TypeVar("_T")


async def create_admin_key(database_url: str) -> str:
    store = await Store.open(database_url)
    try:
        return (await store.create_api_key("ops", ["*"], ["*"], admin=True)).plaintext
    finally:
        await store.close()


def client_of(base_url: str, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


async def eventually(
    probe: Callable[[], Awaitable[_T]], done: Callable[[_T], bool], what: str
) -> _T:
    """Ask until the answer is as expected; generous, since the machine may be busy: how fast
    is for bench/, not for tests."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        value = await probe()
        if done(value):
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last seen {value}")
        await asyncio.sleep(0.05)


async def get_json(admin: httpx.AsyncClient, path: str) -> dict[str, Any]:
    answer = await admin.get(path)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def status_of(admin: httpx.AsyncClient, name: str = "acme") -> dict[str, Any]:
    """The agent's ``AgentStatus`` in the overview."""
    overview = await get_json(admin, "/v1/admin/overview")
    (status,) = [agent for agent in overview["agents"] if agent["name"] == name]
    return status


async def wait_state(admin: httpx.AsyncClient, state: str, what: str) -> dict[str, Any]:
    return await eventually(lambda: status_of(admin), lambda s: s["state"] == state, what)


async def agent_page(admin: httpx.AsyncClient, name: str = "acme") -> dict[str, Any]:
    return await get_json(admin, f"/v1/admin/agents/{name}")
