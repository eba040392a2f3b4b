"""Reading the feed: pages, long-polls, server-sent events, grants, replicas."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.changefeed_relay.conftest import FAST, Feed, client
from tests.changefeed_relay.scripted_agent import ScriptedAgent, payment, scripted_agent, stock
from tests.support.servers import RelayHandle, serve_relay, wait_for


async def _send(agent: ScriptedAgent, *changes: tuple[int, dict[str, Any]]) -> None:
    for seq, data in changes:
        await agent.send(seq, data)
    await wait_for(lambda: all(agent.acked(seq) for seq, _ in changes), what="acks")


async def test_a_page_after_a_cursor(relay: RelayHandle, feed: Feed) -> None:
    async with scripted_agent(relay.ws_url, feed.agent_token) as agent:
        await _send(agent, (1, stock("A")), (2, payment("9")), (3, stock("B")))
    async with client(relay, feed.api_key) as http:
        first = (await http.get("/v1/agents/acme/events", params={"limit": 2})).json()
        assert [i["cursor"] for i in first["items"]] == [1, 2] and first["next_after"] == 2
        item = first["items"][0]
        assert item["type"] == "stock.changed" and item["data"]["sku"] == "A"
        assert item["data"]["quantity"] == "5.0000" and item["occurred_at"].startswith("2026-11-23")
        rest = (await http.get("/v1/agents/acme/events", params={"after": 2})).json()
        assert [i["cursor"] for i in rest["items"]] == [3] and rest["next_after"] == 3
        empty = (await http.get("/v1/agents/acme/events", params={"after": 3})).json()
        assert empty == {"items": [], "next_after": 3}
        only = await http.get("/v1/agents/acme/events", params={"types": "payment.registered"})
        assert [i["cursor"] for i in only.json()["items"]] == [2]


async def test_a_long_poll_answers_when_an_event_arrives(relay: RelayHandle, feed: Feed) -> None:
    async with (
        scripted_agent(relay.ws_url, feed.agent_token) as agent,
        client(relay, feed.api_key) as http,
    ):
        poll = asyncio.create_task(
            http.get("/v1/agents/acme/events", params={"after": 0, "wait": 30})
        )
        await asyncio.sleep(0.3)
        assert not poll.done(), "an empty page waits"
        await agent.send(1, stock("LATE"))
        page = (await poll).json()
    assert [i["data"]["sku"] for i in page["items"]] == ["LATE"]


async def test_another_replicas_event_wakes_a_long_poll(feed: Feed) -> None:
    """Two relays on one database, no Redis: the event stored by one wakes the other's poll."""
    async with (
        serve_relay(feed.database_url, **FAST) as first,
        serve_relay(feed.database_url, **FAST) as second,
        client(second, feed.api_key) as http,
        scripted_agent(first.ws_url, feed.agent_token) as agent,
    ):
        poll = asyncio.create_task(http.get("/v1/agents/acme/events", params={"wait": 30}))
        await asyncio.sleep(0.3)
        await agent.send(1, stock("ELSEWHERE"))
        page = (await poll).json()
    assert [i["data"]["sku"] for i in page["items"]] == ["ELSEWHERE"]


async def _sse(http: httpx.AsyncClient, count: int, **headers: str) -> list[dict[str, str]]:
    """The first `count` server-sent events of the agent's feed."""
    events: list[dict[str, str]] = []
    current: dict[str, str] = {}
    async with http.stream(
        "GET", "/v1/agents/acme/events", headers={"Accept": "text/event-stream", **headers}
    ) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if not line:
                if "data" in current:
                    events.append(current)
                    if len(events) == count:
                        return events
                current = {}
                continue
            name, _, value = line.partition(":")
            current[name] = value.strip()
    return events


async def test_server_sent_events_resume_after_last_event_id(
    relay: RelayHandle, feed: Feed
) -> None:
    async with (
        scripted_agent(relay.ws_url, feed.agent_token) as agent,
        client(relay, feed.api_key) as http,
    ):
        await _send(agent, (1, stock("A")), (2, stock("B")))
        first = await _sse(http, 2)
        assert [(e["id"], e["event"]) for e in first] == [
            ("1", "stock.changed"),
            ("2", "stock.changed"),
        ]
        # Reconnecting with Last-Event-ID: 2 gets what came since, live.
        reader = asyncio.create_task(_sse(http, 1, **{"Last-Event-ID": "2"}))
        await asyncio.sleep(0.3)
        await agent.send(3, stock("C"))
        (third,) = await reader
    assert third["id"] == "3" and '"sku":"C"' in third["data"]


async def test_grants_filter_the_feed(relay: RelayHandle, feed: Feed) -> None:
    async with scripted_agent(relay.ws_url, feed.agent_token) as agent:
        await _send(agent, (1, stock("A")), (2, payment("9")), (3, stock("B")))
    async with client(relay, feed.stock_key) as http:
        page = (await http.get("/v1/agents/acme/events")).json()
        assert [i["type"] for i in page["items"]] == ["stock.changed", "stock.changed"]
        none = await http.get("/v1/agents/acme/events", params={"types": "payment.registered"})
        assert none.json()["items"] == [], "a type the key may not read is left out, not refused"
    async with client(relay, feed.other_key) as http:
        refused = await http.get("/v1/agents/acme/events")
        assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    async with client(relay, feed.api_key) as http:
        missing = await http.get("/v1/agents/nobody/events")
        assert missing.status_code == 404 and missing.json()["code"] == "agent_not_found"
        bad = await http.get("/v1/agents/acme/events", params={"types": "weather.changed"})
        assert bad.status_code == 400 and bad.json()["code"] == "bad_request"
        too_long = await http.get("/v1/agents/acme/events", params={"wait": 31})
        assert too_long.status_code == 422
        assert bad.headers["content-type"] == "application/problem+json"


async def test_the_routes_are_in_the_openapi_document(relay: RelayHandle) -> None:
    async with httpx.AsyncClient(base_url=relay.base_url) as http:
        schema = (await http.get("/openapi.json")).json()
    events = schema["paths"]["/v1/agents/{agent}/events"]["get"]
    ok = events["responses"]["200"]["content"]
    assert ok["application/json"]["schema"]["$ref"].endswith("/ChangePage")
    assert "text/event-stream" in ok
    assert events["responses"]["410"]["content"]["application/problem+json"]
    subs = schema["paths"]["/v1/agents/{agent}/subscriptions"]
    assert subs["post"]["responses"]["201"]["content"]["application/json"]["schema"][
        "$ref"
    ].endswith("/SubscriptionView")
    assert "StockChanged" in schema["components"]["schemas"]
