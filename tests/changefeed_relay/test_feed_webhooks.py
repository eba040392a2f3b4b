"""Webhook subscriptions: ordered, signed like job webhooks, retried, durable, visible."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from relay.webhooks import verify
from tests.changefeed_relay.conftest import FAST, Feed, client
from tests.changefeed_relay.scripted_agent import payment, scripted_agent, stock
from tests.support.hooks import HookServer, hook_server
from tests.support.servers import RelayHandle, serve_relay, wait_for


async def _subscribe(http: httpx.AsyncClient, hooks: HookServer, **body: Any) -> dict[str, Any]:
    response = await http.post(
        "/v1/agents/acme/subscriptions",
        json={"url": f"http://127.0.0.1:{hooks.port}/hook", **body},
    )
    assert response.status_code == 201, response.text
    assert response.headers["location"].endswith(response.json()["id"])
    sub: dict[str, Any] = response.json()
    return sub


async def _subscription(http: httpx.AsyncClient, sub_id: str) -> dict[str, Any]:
    response = await http.get(f"/v1/agents/acme/subscriptions/{sub_id}")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def _settled(
    http: httpx.AsyncClient, sub_id: str, position: int, timeout: float = 30.0
) -> dict[str, Any]:
    """The subscription once its position reached `position` (the receiver sees a webhook
    before the relay records it delivered)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (state := await _subscription(http, sub_id))["position"] < position:
        assert loop.time() < deadline, f"the subscription stayed at {state['position']}"
        await asyncio.sleep(0.05)
    return state


def _bodies(hooks: HookServer) -> list[dict[str, Any]]:
    return [json.loads(hook.body) for hook in hooks.received]


async def test_events_are_posted_in_order_and_signed(relay: RelayHandle, feed: Feed) -> None:
    async with (
        hook_server() as hooks,
        client(relay, feed.api_key) as http,
        scripted_agent(relay.ws_url, feed.agent_token) as agent,
    ):
        sub = await _subscribe(http, hooks)
        assert sub["position"] == 0 and sub["delivered"] == 0 and sub["types"] is None
        for seq in range(1, 6):
            await agent.send(seq, stock(f"S{seq}"))
        await wait_for(lambda: len(hooks.received) == 5, what="five webhooks", timeout=30)
        secret = (await http.get("/v1/webhooks/secret")).json()["secret"]
        for hook in hooks.received:
            assert verify(secret, hook.headers["erp-relay-signature"], hook.body)
            assert hook.headers["content-type"] == "application/json"
        bodies = _bodies(hooks)
        assert [b["cursor"] for b in bodies] == [1, 2, 3, 4, 5]
        assert [b["data"]["sku"] for b in bodies] == ["S1", "S2", "S3", "S4", "S5"]
        assert bodies[0]["subscription"] == sub["id"] and bodies[0]["agent"] == "acme"
        assert hooks.received[0].headers["erp-relay-delivery"] == f"{sub['id']}:1"
        state = await _settled(http, sub["id"], 5)
        assert state["position"] == 5 and state["delivered"] == 5
        assert state["last_delivered_cursor"] == 5 and state["last_status"] == 204
        listed = (await http.get("/v1/agents/acme/subscriptions")).json()["items"]
        assert [s["id"] for s in listed] == [sub["id"]]


async def test_a_failed_delivery_is_retried_then_the_feed_goes_on(feed: Feed) -> None:
    async with (
        hook_server() as hooks,
        serve_relay(feed.database_url, **FAST) as relay,
        client(relay, feed.api_key) as http,
        scripted_agent(relay.ws_url, feed.agent_token) as agent,
    ):
        hooks.status = lambda n: 503 if n == 1 else 204
        sub = await _subscribe(http, hooks)
        await agent.send(1, stock("A"))
        await agent.send(2, stock("B"))
        await wait_for(lambda: len(hooks.received) == 1, what="the first attempt")
        failing = await _subscription(http, sub["id"])
        assert failing["attempts"] == 1 and failing["last_status"] == 503
        assert failing["position"] == 0 and failing["next_attempt_at"] is not None
        assert "503" in failing["last_error"]
        # backoff_s(1) is 5 s, as for job webhooks; B waits behind A (order is kept).
        await wait_for(lambda: len(hooks.received) == 3, what="the retry and B", timeout=30)
        assert [b["cursor"] for b in _bodies(hooks)] == [1, 1, 2]


async def test_an_event_failing_past_the_retry_period_is_skipped_and_counted(feed: Feed) -> None:
    async with (
        hook_server() as hooks,
        serve_relay(feed.database_url, **FAST, webhook_retry_for_s=1) as relay,
        client(relay, feed.api_key) as http,
        scripted_agent(relay.ws_url, feed.agent_token) as agent,
    ):
        hooks.status = lambda n: 500 if n == 1 else 204
        sub = await _subscribe(http, hooks)
        await agent.send(1, stock("LOST"))
        await agent.send(2, stock("NEXT"))
        await wait_for(lambda: len(hooks.received) == 2, what="two attempts", timeout=30)
        assert [b["data"]["sku"] for b in _bodies(hooks)] == ["LOST", "NEXT"]
        state = await _settled(http, sub["id"], 2)
        assert state["failed"] == 1 and state["last_failed_cursor"] == 1
        assert state["delivered"] == 1 and state["position"] == 2


async def test_a_subscription_sends_only_what_its_key_may_read(
    relay: RelayHandle, feed: Feed
) -> None:
    async with (
        hook_server() as hooks,
        client(relay, feed.stock_key) as http,
        scripted_agent(relay.ws_url, feed.agent_token) as agent,
    ):
        await _subscribe(http, hooks)
        await agent.send(1, payment("9"))
        await agent.send(2, stock("A"))
        await agent.send(3, payment("10"))
        await agent.send(4, stock("B"))
        await wait_for(lambda: len(hooks.received) == 2, what="the stock webhooks")
        assert [b["cursor"] for b in _bodies(hooks)] == [2, 4]


async def test_types_and_a_starting_cursor(relay: RelayHandle, feed: Feed) -> None:
    async with (
        hook_server() as hooks,
        client(relay, feed.api_key) as http,
        scripted_agent(relay.ws_url, feed.agent_token) as agent,
    ):
        for seq, data in ((1, payment("1")), (2, stock("A")), (3, payment("2"))):
            await agent.send(seq, data)
        await wait_for(lambda: len(agent.acks) == 3, what="acks")
        await _subscribe(http, hooks, types=["payment.registered"], after=0)
        await wait_for(lambda: len(hooks.received) == 2, what="the payments")
        assert [b["data"]["id"] for b in _bodies(hooks)] == ["1", "2"]


async def test_deliveries_resume_after_a_relay_restart(feed: Feed) -> None:
    async with hook_server() as hooks:
        async with (
            serve_relay(feed.database_url, **FAST) as relay,
            client(relay, feed.api_key) as http,
            scripted_agent(relay.ws_url, feed.agent_token) as agent,
        ):
            sub = await _subscribe(http, hooks)
            await agent.send(1, stock("BEFORE"))
            await wait_for(lambda: len(hooks.received) == 1, what="the first webhook")
            hooks.status = lambda n: 503  # the receiver goes down
            await agent.send(2, stock("DURING"))
            await wait_for(lambda: len(hooks.received) == 2, what="the failed attempt")
        hooks.status = lambda n: 204
        async with (
            serve_relay(feed.database_url, **FAST) as relay,
            client(relay, feed.api_key) as http,
        ):
            await wait_for(lambda: len(hooks.received) == 3, what="the retry", timeout=30)
            state = await _settled(http, sub["id"], 2)
    assert [b["data"]["sku"] for b in _bodies(hooks)] == ["BEFORE", "DURING", "DURING"]
    assert state["delivered"] == 2 and state["position"] == 2


async def test_subscriptions_are_private_and_deletable(relay: RelayHandle, feed: Feed) -> None:
    async with hook_server() as hooks, client(relay, feed.api_key) as http:
        sub = await _subscribe(http, hooks)
        async with client(relay, feed.stock_key) as other:
            assert (await other.get("/v1/agents/acme/subscriptions")).json()["items"] == []
            hidden = await other.delete(f"/v1/agents/acme/subscriptions/{sub['id']}")
            assert hidden.status_code == 404 and hidden.json()["code"] == "subscription_not_found"
        assert (await http.delete(f"/v1/agents/acme/subscriptions/{sub['id']}")).status_code == 204
        gone = await http.get(f"/v1/agents/acme/subscriptions/{sub['id']}")
        assert gone.status_code == 404 and gone.json()["code"] == "subscription_not_found"
        bad_type = await http.post(
            "/v1/agents/acme/subscriptions", json={"url": "https://example.com/h", "types": ["x"]}
        )
        assert bad_type.status_code == 422


async def test_private_addresses_are_refused_without_the_setting(feed: Feed) -> None:
    async with (
        serve_relay(feed.database_url, webhook_signing_key="k") as relay,
        client(relay, feed.api_key) as http,
    ):
        refused = await http.post(
            "/v1/agents/acme/subscriptions", json={"url": "https://127.0.0.1/hook"}
        )
        assert refused.status_code == 422 and refused.json()["code"] == "webhook_url_refused"
    async with serve_relay(feed.database_url) as relay, client(relay, feed.api_key) as http:
        unsigned = await http.post(
            "/v1/agents/acme/subscriptions", json={"url": "https://example.com/hook"}
        )
        assert unsigned.status_code == 422 and "signing key" in unsigned.json()["detail"]
