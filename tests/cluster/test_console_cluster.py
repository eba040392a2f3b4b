"""Admin actions and events across replica processes sharing PostgreSQL and Redis: an
operator acting through one replica closes connections another holds, within seconds, and
events written by one replica stream from the other."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from relay.store import Store
from tests.console.test_console_events import follow
from tests.support.cluster import ProcessCluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


async def test_disconnect_and_revoke_reach_the_replica_holding_the_agent(
    process_cluster: ProcessCluster, erp_path: Path
) -> None:
    cluster = process_cluster
    store = await Store.open(cluster.database_url)
    try:
        admin_key = (await store.create_api_key("ops", ["*"], ["*"], admin=True)).plaintext
    finally:
        await store.close()
    cluster.relay("a", event_poll_interval_s="0.2")
    cluster.relay("b", event_poll_interval_s="0.2")
    await cluster.start("a")
    holder = await cluster.start("b")
    headers = {"Authorization": f"Bearer {admin_key}"}
    token_id = cluster.agent_token.split("_")[1]

    async with (
        httpx.AsyncClient(base_url=cluster.relays["a"].base_url, timeout=30) as http,
        follow(http, headers, after=0) as events,
    ):
        cluster.agent("one", holder.ws_url, erp_path).start()
        connected = await events.next(timeout=60)
        assert connected["kind"] == "agent.connected"
        assert connected["data"]["replica"] == cluster.replica_id("b"), "written by b, read at a"
        session = connected["data"]["session_id"]

        loop = asyncio.get_running_loop()
        started = loop.time()
        response = await http.post(
            f"/v1/admin/agents/acme/links/{session}/disconnect", headers=headers
        )
        assert response.status_code == 202
        dropped = await events.next()
        assert dropped["kind"] == "agent.disconnected"
        assert dropped["data"]["reason"] == "disconnected by an operator"
        assert loop.time() - started < 3
        back = await events.next(timeout=30)
        assert back["kind"] == "agent.connected" and back["data"]["session_id"] != session

        started = loop.time()
        revoked = await http.delete(f"/v1/admin/agents/acme/tokens/{token_id}", headers=headers)
        assert revoked.status_code == 204
        closed = await events.next()
        assert closed["kind"] == "agent.disconnected"
        assert closed["data"]["reason"] == "token revoked"
        assert loop.time() - started < 3
    await cluster.wait_held({}, timeout_s=5)
