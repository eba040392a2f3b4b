"""The console's overview across replicas: two relay processes sharing PostgreSQL and Redis,
an agent process held by one of them, and the overview asked at either."""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path
from typing import Any

import httpx

from tests.support.cluster import ProcessCluster
from tests.support.fleet import (
    agent_page,
    client_of,
    create_admin_key,
    eventually,
    get_json,
    wait_state,
)

KEEPALIVE = {"ws_ping_interval_s": "0.5", "ws_ping_timeout_s": "0.5"}


async def _calls_seen(admin: httpx.AsyncClient) -> int:
    body = await get_json(admin, "/v1/admin/agents/acme/latency?minutes=5")
    points: list[dict[str, Any]] = body["points"]
    return sum(point["calls"] for point in points)


async def test_either_replica_shows_the_agent_held_by_the_other_with_its_stats(
    process_cluster: ProcessCluster, erp_path: Path
) -> None:
    cluster = process_cluster
    a, b = cluster.relay("a", **KEEPALIVE), cluster.relay("b", **KEEPALIVE)
    await asyncio.gather(cluster.start("a"), cluster.start("b"))
    admin_key = await create_admin_key(cluster.database_url)
    agent = cluster.agent("one", a.ws_url, erp_path)
    async with (
        client_of(a.base_url, admin_key) as at_a,
        client_of(b.base_url, admin_key) as at_b,
        client_of(a.base_url, cluster.api_key) as crm_a,
        client_of(b.base_url, cluster.api_key) as crm_b,
    ):
        assert (await wait_state(at_b, "offline", "no agent yet"))["connections"] == 0
        agent.start(ERP_AGENT_AGENT__HEALTH_INTERVAL_S="0.5")
        for admin in (at_a, at_b):
            online = await wait_state(admin, "online", f"the agent online\n{cluster.logs()}")
            assert online["connections"] == 1
        overview = await get_json(at_b, "/v1/admin/overview")
        assert set(overview["replicas"]) == {cluster.replica_id("a"), cluster.replica_id("b")}
        page = await eventually(
            lambda: agent_page(at_b),
            lambda p: p["links"][0]["erp"] == "ok",
            "the agent's health, reported to a, seen at b",
        )
        (link,) = page["links"]
        assert link["replica"] == cluster.replica_id("a")

        # calls counted by the replica they entered, forwarded or not, merged by either
        for crm, count in ((crm_a, 3), (crm_b, 4)):
            for _ in range(count):
                answer = await crm.post("/v1/agents/acme/calls/ping", json={})
                assert answer.status_code == 200, answer.text
        for admin in (at_a, at_b):
            await eventually(
                functools.partial(_calls_seen, admin),
                lambda seen: seen == 7,
                "both replicas' calls in the latency series",
            )
            status = await wait_state(admin, "online", "the agent still online")
            assert status["calls_per_min"] > 0 and status["p50_ms"] is not None

        agent.kill()
        for admin in (at_a, at_b):
            await wait_state(admin, "offline", "the killed agent offline at both replicas")
