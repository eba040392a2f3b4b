"""`ChangeStore` under concurrency: cursors follow commit order, repeats are stored once."""

from __future__ import annotations

import asyncio
import datetime as dt

from relay.changefeed.store import ChangeStore, IncomingChange
from relay.store import create_engine
from relay.store.db import upgrade

AT = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)


def _change(seq: int, stream: str = "s") -> IncomingChange:
    return IncomingChange(stream, seq, "stock.changed", AT, {"type": "stock.changed", "n": seq})


async def test_concurrent_writers_get_distinct_cursors_in_commit_order(database_url: str) -> None:
    """Two writers (two replicas) store overlapping events for one agent at once, while a
    reader follows the feed by cursor: the reader must end with every event exactly once."""
    await upgrade(database_url)
    engines = [create_engine(database_url) for _ in range(3)]
    writers = [ChangeStore(engine) for engine in engines[:2]]
    reader = ChangeStore(engines[2])
    seen: list[int] = []
    done = asyncio.Event()

    async def write(store: ChangeStore, offset: int) -> None:
        for start in range(1, 101, 5):
            # Both writers send seqs 1..100 (the same agent's outbox, on two connections).
            batch = [_change(seq) for seq in range(start + offset, start + offset + 5)]
            await store.append("acme", [c for c in batch if c.seq <= 100])

    async def follow() -> None:
        after = 0
        while not done.is_set() or after < 100:
            page = await reader.page("acme", after, types={"stock.changed"}, limit=50)
            seen.extend(record.data["n"] for record in page)
            after = page[-1].cursor if page else after
            await asyncio.sleep(0)

    try:
        following = asyncio.create_task(follow())
        await asyncio.gather(write(writers[0], 0), write(writers[1], 2))
        done.set()
        async with asyncio.timeout(30):
            await following
        records = await reader.page("acme", 0, types={"stock.changed"}, limit=1000)
        assert [r.cursor for r in records] == list(range(1, 101)), "dense, no repeats"
        assert sorted(r.data["n"] for r in records) == list(range(1, 101))
        assert sorted(seen) == list(range(1, 101)), "the reader skipped or repeated an event"
        assert (await reader.bounds("acme")).last_cursor == 100
        assert await reader.append("acme", [_change(7)]) == [], "a repeat is not stored"
    finally:
        for engine in engines:
            await engine.dispose()
