"""Change events from a scripted agent: stored once, acked only after the commit."""

from __future__ import annotations

import asyncio
import logging

import pytest
import sqlalchemy as sa

from relay.store import models
from tests.changefeed_relay.conftest import Feed, client
from tests.changefeed_relay.scripted_agent import STREAM, payment, scripted_agent, stock
from tests.support.servers import RelayHandle, wait_for


async def _stored(relay: RelayHandle) -> list[tuple[str, int, int, str]]:
    """(stream, seq, cursor, type) of every stored change event, in cursor order."""
    t = models.change_events
    query = sa.select(t.c.stream, t.c.seq, t.c.cursor, t.c.type).order_by(
        t.c.agent_name, t.c.cursor
    )
    async with relay.state.store.engine.connect() as connection:
        return [
            (r.stream, int(r.seq), int(r.cursor), r.type) for r in await connection.execute(query)
        ]


async def test_events_are_stored_then_acked_and_repeats_stored_once(
    relay: RelayHandle, feed: Feed
) -> None:
    async with scripted_agent(relay.ws_url, feed.agent_token) as agent:
        await agent.send(1, stock("A-1"))
        await agent.send(2, payment("77"))
        await wait_for(lambda: agent.acked(1) and agent.acked(2), what="both acks")
        # Every ack came after its event was committed: it is in the table now.
        assert [row[:3] for row in await _stored(relay)] == [(STREAM, 1, 1), (STREAM, 2, 2)]

        await agent.send(2, payment("77"))  # the agent did not see the ack: it sends again
        await agent.send(3, stock("A-1", "4.0000"))
        await wait_for(lambda: agent.acked(3) and agent.acks.count((STREAM, 2)) == 2, what="acks")
    assert [row[1:] for row in await _stored(relay)] == [
        (1, 1, "stock.changed"),
        (2, 2, "payment.registered"),
        (3, 3, "stock.changed"),
    ]
    counts = relay.state.changes.ingest.counts  # type: ignore[union-attr]
    assert (counts.stored, counts.repeated) == (3, 1)


async def test_a_batch_arriving_together_is_stored_in_order(relay: RelayHandle, feed: Feed) -> None:
    async with scripted_agent(relay.ws_url, feed.agent_token) as agent:
        for seq in range(1, 201):
            await agent.send(seq, stock(f"SKU-{seq}"))
        await agent.send(5, stock("SKU-5"))
        await wait_for(lambda: len(agent.acks) == 201, what="every ack", timeout=30)
    rows = await _stored(relay)
    assert [seq for _, seq, _, _ in rows] == list(range(1, 201))
    assert [cursor for _, _, cursor, _ in rows] == list(range(1, 201))


async def test_invalid_change_data_is_acked_not_stored_and_not_logged(
    relay: RelayHandle, feed: Feed, caplog: pytest.LogCaptureFixture
) -> None:
    secret = {"type": "stock.changed", "sku": "jan.kowalski@example.com"}  # misses fields
    with caplog.at_level(logging.INFO):
        async with scripted_agent(relay.ws_url, feed.agent_token) as agent:
            await agent.send(1, secret)
            await agent.send(2, {"type": "weather.changed"})
            await agent.send(3, stock("A-1"))
            await wait_for(lambda: len(agent.acks) == 3, what="three acks")
    assert [seq for _, seq, _, _ in await _stored(relay)] == [3]
    assert relay.state.changes.ingest.counts.invalid == 2  # type: ignore[union-attr]
    assert "jan.kowalski" not in caplog.text
    assert "invalid change event" in caplog.text


async def test_an_agent_sees_only_its_own_events_and_streams_are_separate(
    relay: RelayHandle, feed: Feed
) -> None:
    async with (
        scripted_agent(relay.ws_url, feed.agent_token) as acme,
        scripted_agent(relay.ws_url, feed.other_token) as other,
    ):
        await acme.send(1, stock("A"))
        await acme.send(1, stock("B"), stream="outbox-2")  # a reinstalled agent's new outbox
        await other.send(1, stock("C"))
        await wait_for(lambda: len(acme.acks) == 2 and len(other.acks) == 1, what="acks")
    async with client(relay, feed.api_key) as http:
        acme_page = (await http.get("/v1/agents/acme/events")).json()
        other_page = (await http.get("/v1/agents/other/events")).json()
    assert [(i["cursor"], i["data"]["sku"]) for i in acme_page["items"]] == [(1, "A"), (2, "B")]
    assert [(i["cursor"], i["data"]["sku"]) for i in other_page["items"]] == [(1, "C")]


async def test_no_ack_while_the_database_is_down(relay: RelayHandle, feed: Feed) -> None:
    changes = relay.state.changes
    assert changes is not None
    real_append = changes.store.append

    async def failing(*args: object, **kwargs: object) -> list[object]:
        raise OSError("database unreachable")

    changes.store.append = failing  # type: ignore[method-assign]
    async with scripted_agent(relay.ws_url, feed.agent_token) as agent:
        await agent.send(1, stock("A-1"))
        await wait_for(lambda: changes.ingest.counts.retried >= 1, what="a failed insert")
        await asyncio.sleep(0.2)
        assert agent.acks == []
        changes.store.append = real_append  # type: ignore[method-assign]
        # The writer tries again: stored and acked without the agent sending it again.
        await wait_for(lambda: agent.acked(1), what="the ack")
    assert len(await _stored(relay)) == 1
