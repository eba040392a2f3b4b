"""Retention: old events are deleted, and a subscriber behind them is told so."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from relay.store import models
from tests.changefeed_relay.conftest import Feed, client
from tests.changefeed_relay.scripted_agent import scripted_agent, stock
from tests.support.servers import RelayHandle, wait_for


async def test_old_events_are_purged_and_an_expired_cursor_is_refused(
    relay: RelayHandle, feed: Feed
) -> None:
    changes = relay.state.changes
    assert changes is not None
    async with scripted_agent(relay.ws_url, feed.agent_token) as agent:
        for seq in (1, 2, 3):
            await agent.send(seq, stock(f"S{seq}"))
        await wait_for(lambda: len(agent.acks) == 3, what="acks")
        # Events 1 and 2 were stored eight days ago: past the default seven days.
        old = changes.store.now() - dt.timedelta(days=8)
        async with changes.store.engine.begin() as connection:
            await connection.execute(
                models.change_events.update()
                .where(models.change_events.c.cursor <= 2)
                .values(stored_at=old)
            )
        assert await changes.purge() == 2
        async with changes.store.engine.connect() as connection:
            kept = await connection.scalars(sa.select(models.change_events.c.cursor))
            assert list(kept) == [3]

        async with client(relay, feed.api_key) as http:
            expired = await http.get("/v1/agents/acme/events", params={"after": 1})
            assert expired.status_code == 410
            problem = expired.json()
            assert problem["code"] == "cursor_expired" and problem["oldest_cursor"] == 2
            assert (
                await http.get(
                    "/v1/agents/acme/events",
                    params={"after": 1},
                    headers={"Accept": "text/event-stream"},
                )
            ).status_code == 410
            kept_page = (await http.get("/v1/agents/acme/events", params={"after": 2})).json()
            assert [i["cursor"] for i in kept_page["items"]] == [3]
            oldest = (await http.get("/v1/agents/acme/events")).json()
            assert [i["cursor"] for i in oldest["items"]] == [3], "no cursor: the oldest kept"

        # Cursors are never reused after a purge.
        await agent.send(4, stock("S4"))
        await wait_for(lambda: agent.acked(4), what="the ack")
        async with client(relay, feed.api_key) as http:
            page = (await http.get("/v1/agents/acme/events", params={"after": 3})).json()
        assert [i["cursor"] for i in page["items"]] == [4]
