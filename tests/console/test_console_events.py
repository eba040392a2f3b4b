"""``GET /v1/events`` over a real socket, and admin actions felt by a real agent process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.console.conftest import Seed, Session, bearer
from tests.support.agent_process import AgentProcess, write_agent_config
from tests.support.servers import RelayHandle, wait_for


class EventStream:
    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.aiter_lines()

    async def next(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next event (comments skipped), with its SSE id and type checked."""
        fields: dict[str, str] = {}
        async with asyncio.timeout(timeout):
            async for line in self._lines:
                if not line:
                    if "data" in fields:
                        break
                    continue
                name, _, value = line.partition(":")
                if name:
                    fields[name] = value.lstrip(" ")
        event: dict[str, Any] = orjson.loads(fields["data"])
        assert fields["id"] == str(event["id"]) and fields["event"] == event["kind"]
        return event


@asynccontextmanager
async def follow(
    http: httpx.AsyncClient, headers: dict[str, str], after: int | None = None
) -> AsyncIterator[EventStream]:
    if after is not None:
        headers = headers | {"Last-Event-ID": str(after)}
    async with http.stream("GET", "/v1/events", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        yield EventStream(response)


async def test_resume_and_filter_by_grants(
    http: httpx.AsyncClient, relay: RelayHandle, seed: Seed, viewer: Session
) -> None:
    for n in range(3):
        relay.state.publish("agent.recovered", "acme", {"n": n})
        relay.state.publish("agent.recovered", "other", {"n": n})
    async with follow(http, bearer(seed.admin_key), after=0) as everything:
        first = [await everything.next() for _ in range(6)]
    assert [(e["agent"], e["data"]["n"]) for e in first] == [
        (agent, n) for n in range(3) for agent in ("acme", "other")
    ]
    ids = [e["id"] for e in first]
    assert ids == sorted(ids)

    async with follow(http, bearer(seed.crm_key), after=ids[1]) as granted:
        mine = [await granted.next() for _ in range(2)]
        assert [(e["agent"], e["data"]["n"]) for e in mine] == [("acme", 1), ("acme", 2)]
        relay.state.publish("agent.degraded", "other", {"reason": "erp_unreachable"})
        relay.state.publish("agent.degraded", "acme", {"reason": "errors_rising"})
        live = await granted.next()
        assert live["agent"] == "acme" and live["data"] == {"reason": "errors_rising"}

    async with follow(http, viewer.headers(None), after=ids[-1]) as operator:
        seen = [await operator.next() for _ in range(2)]
        assert [e["agent"] for e in seen] == ["other", "acme"], "an operator sees all"

    bad = await http.get("/v1/events", headers=bearer(seed.crm_key) | {"Last-Event-ID": "x"})
    assert bad.status_code == 400
    assert (await http.get("/v1/events")).status_code == 401


async def test_agent_connects_is_disconnected_and_revoked(
    http: httpx.AsyncClient,
    relay: RelayHandle,
    seed: Seed,
    admin: Session,
    erp_path: Path,
    tmp_path: Path,
) -> None:
    """A real agent process: its connection shows up as events and in history, an operator's
    disconnect closes it (it comes back), a revoked token closes it for good within seconds."""
    config = write_agent_config(
        tmp_path / "agent.toml",
        relay_url=relay.ws_url,
        erp_path=erp_path,
        journal_path=tmp_path / "journal.sqlite",
    )
    agent = AgentProcess(config, seed.agent_token, tmp_path / "agent.log")
    async with follow(http, bearer(seed.crm_key)) as events:
        agent.start()
        try:
            connected = await events.next(timeout=30)
            assert connected["kind"] == "agent.connected", agent.log()
            data = connected["data"]
            assert data["replica"] == relay.state.replica_id and data["connector"] == "demo"
            session = data["session_id"]
            assert {"remote_address", "agent_version", "erp", "slot"} <= set(data)

            response = await http.post(
                f"/v1/admin/agents/acme/links/{session}/disconnect", headers=admin.headers()
            )
            assert response.status_code == 202
            dropped = await events.next()
            assert dropped["kind"] == "agent.disconnected"
            assert dropped["data"]["session_id"] == session
            assert dropped["data"]["reason"] == "disconnected by an operator"
            back = await events.next(timeout=30)
            assert back["kind"] == "agent.connected", "the agent reconnects by itself"

            token = relay.state.hub.links("acme")[0].token_public_id
            loop = asyncio.get_running_loop()
            started = loop.time()
            revoked = await http.delete(
                f"/v1/admin/agents/acme/tokens/{token}", headers=admin.headers()
            )
            assert revoked.status_code == 204
            closed = await events.next()
            assert closed["kind"] == "agent.disconnected"
            assert closed["data"]["reason"] == "token revoked"
            await wait_for(lambda: not relay.state.hub.is_online("acme"), timeout=3)
            assert loop.time() - started < 3
        finally:
            agent.terminate()
            await wait_for(lambda: not agent.alive, timeout=15, what="the agent to stop")
            agent.stop()
    await asyncio.sleep(0.5)  # the agent is refused now: nothing connects again
    assert not relay.state.hub.is_online("acme")

    history = await http.get("/v1/admin/agents/acme/history", headers=admin.headers(None))
    kinds = [e["kind"] for e in history.json()["events"]]
    assert kinds[:4] == [
        "agent.disconnected",
        "agent.connected",
        "agent.disconnected",
        "agent.connected",
    ]
    older = await http.get(
        f"/v1/admin/agents/acme/history?limit=1&before={history.json()['events'][0]['id']}",
        headers=admin.headers(None),
    )
    assert [e["kind"] for e in older.json()["events"]] == ["agent.connected"]
