"""A relay restart on PostgreSQL loses no change event and stores none twice."""

from __future__ import annotations

import pytest

from tests.changefeed_relay.conftest import FAST, client, make_feed
from tests.changefeed_relay.scripted_agent import scripted_agent, stock
from tests.support.servers import serve_relay, wait_for


@pytest.mark.postgres
async def test_a_restart_loses_nothing_and_resent_events_are_stored_once(postgres_url: str) -> None:
    feed = await make_feed(postgres_url)
    async with (
        serve_relay(feed.database_url, **FAST) as relay,
        scripted_agent(relay.ws_url, feed.agent_token) as agent,
    ):
        for seq in (1, 2, 3, 4):
            await agent.send(seq, stock(f"S{seq}"))
        await wait_for(lambda: len(agent.acks) == 4, what="acks")
        # The relay stops right after 5 was sent: stored or not, its ack may never arrive.
        await agent.send(5, stock("S5"))
    async with serve_relay(feed.database_url, **FAST) as relay:
        async with scripted_agent(relay.ws_url, feed.agent_token) as agent:
            # The outbox sends again what it saw no ack for: 5, and 4 as if its ack was lost.
            for seq in (4, 5, 6):
                await agent.send(seq, stock(f"S{seq}"))
            await wait_for(lambda: len(agent.acks) == 3, what="acks")
        async with client(relay, feed.api_key) as http:
            page = (await http.get("/v1/agents/acme/events")).json()
    assert [(i["cursor"], i["data"]["sku"]) for i in page["items"]] == [
        (n, f"S{n}") for n in range(1, 7)
    ]
