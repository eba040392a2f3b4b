"""The event log behind ``GET /v1/events`` and an agent's connection history.

Events (agent connected, disconnected, degraded, recovered; job finished) are rows of the
`events` table, so their ids are the SSE event ids on every replica and a client can resume
with ``Last-Event-ID`` wherever its next connection lands.

Publishing is synchronous and never blocks: `publish` queues the event and one writer task
inserts queued events in order, then hands the stored rows to this replica's followers at
once. Rows other replicas write are found by polling the table every `poll_interval_s`.

On PostgreSQL, ids are taken when a row is inserted but become visible when its transaction
commits, so a poller can see id 12 before another replica's 11 commits. The poller remembers
such holes for `_GAP_WAIT_S` and looks them up again; a hole that never fills was a rolled
back insert.

Followers get bounded queues. One that falls behind is dropped (its stream ends) rather than
slowing the others or growing without bound; its client reconnects with Last-Event-ID and
catches up from the table.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any

from relay.store.console import ConsoleStore, EventRecord

log = logging.getLogger("relay.events")

AGENT_CONNECTED = "agent.connected"
AGENT_DISCONNECTED = "agent.disconnected"
AGENT_DEGRADED = "agent.degraded"
AGENT_RECOVERED = "agent.recovered"
JOB_FINISHED = "job.finished"

_WRITE_QUEUE = 10_000
_WRITE_BATCH = 200
_FOLLOWER_QUEUE = 1_000
_PAGE = 500
_GAP_WAIT_S = 10.0
_MAX_GAPS = 10_000
_MAX_HOLE = 1_000
_SEEN = 20_000


class Follower:
    """One live reader: events arrive in `queue`; `None` means it fell behind and must end."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[EventRecord | None] = asyncio.Queue(_FOLLOWER_QUEUE + 1)
        self.dropped = False

    def offer(self, event: EventRecord) -> None:
        if self.dropped:
            return
        if self.queue.qsize() >= _FOLLOWER_QUEUE:
            self.dropped = True
            self.queue.put_nowait(None)
            return
        self.queue.put_nowait(event)

    def end(self) -> None:
        if not self.dropped:
            self.dropped = True
            self.queue.put_nowait(None)


class _Recent:
    """A bounded set of ids, forgetting the oldest first."""

    def __init__(self, size: int) -> None:
        self._order: deque[int] = deque()
        self._ids: set[int] = set()
        self._size = size

    def add(self, event_id: int) -> bool:
        """Remember `event_id`; False if it was already known."""
        if event_id in self._ids:
            return False
        self._ids.add(event_id)
        self._order.append(event_id)
        if len(self._order) > self._size:
            self._ids.discard(self._order.popleft())
        return True


class EventLog:
    def __init__(
        self,
        store: ConsoleStore,
        *,
        retention_s: float,
        poll_interval_s: float = 0.5,
        purge_interval_s: float = 600.0,
    ) -> None:
        self._store = store
        self._retention = dt.timedelta(seconds=retention_s)
        self._poll_interval_s = poll_interval_s
        self._purge_interval_s = purge_interval_s
        self._pending: asyncio.Queue[tuple[dt.datetime, str, str | None, dict[str, Any]]] = (
            asyncio.Queue(_WRITE_QUEUE)
        )
        self._followers: set[Follower] = set()
        self._dispatched = _Recent(_SEEN)
        self._cursor = 0
        self._gaps: dict[int, float] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._cursor = await self._store.last_event_id()
        self._tasks = [
            asyncio.create_task(self._write_loop(), name="events-writer"),
            asyncio.create_task(self._poll_loop(), name="events-poller"),
            asyncio.create_task(self._purge_loop(), name="events-purge"),
        ]

    async def stop(self) -> None:
        """Write what is still queued (the last disconnects of a shutdown), then stop."""
        if not self._tasks:
            return
        writer, *others = self._tasks
        for task in others:
            task.cancel()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await self._pending.join()
        writer.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        for follower in self._followers:
            follower.end()
        self._followers.clear()

    # Writing

    def publish(self, kind: str, agent: str | None, data: Mapping[str, Any] | None = None) -> None:
        """Record an event. Never blocks or raises: an event lost to a full queue is logged."""
        try:
            self._pending.put_nowait((self._store.now(), kind, agent, dict(data or {})))
        except asyncio.QueueFull:
            log.warning("event queue full: event dropped", extra={"kind": kind, "agent": agent})

    async def _write_loop(self) -> None:
        while True:
            batch = [await self._pending.get()]
            while len(batch) < _WRITE_BATCH and not self._pending.empty():
                batch.append(self._pending.get_nowait())
            try:
                self._dispatch(await self._store.append_events(batch))
            except Exception:
                log.exception("could not store events", extra={"count": len(batch)})
            finally:
                for _ in batch:
                    self._pending.task_done()

    # Following

    @contextlib.contextmanager
    def follow(self) -> Iterator[Follower]:
        follower = Follower()
        self._followers.add(follower)
        try:
            yield follower
        finally:
            self._followers.discard(follower)

    async def stream(self, after: int | None) -> AsyncIterator[EventRecord]:
        """Every event after `after` (None: only new ones), then live ones, until the caller
        stops or falls behind. Ids may come out of order when a slow commit fills a hole;
        an event is never sent twice within one stream."""
        with self.follow() as follower:
            sent = _Recent(_SEEN)
            if after is not None:
                while True:
                    page = await self._store.events_after(after, limit=_PAGE)
                    for event in page:
                        sent.add(event.id)
                        yield event
                    if len(page) < _PAGE:
                        break
                    after = page[-1].id
            while True:
                live = await follower.queue.get()
                if live is None:
                    return
                if sent.add(live.id):
                    yield live

    def _dispatch(self, events: Iterable[EventRecord]) -> None:
        for event in events:
            if self._dispatched.add(event.id):
                for follower in list(self._followers):
                    follower.offer(event)

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval_s)
            try:
                await self.poll()
            except Exception:
                log.warning("could not read new events", exc_info=True)

    async def poll(self) -> None:
        """Hand followers the rows written since the last poll, by any replica."""
        now = time.monotonic()
        self._gaps = {i: t for i, t in self._gaps.items() if now - t < _GAP_WAIT_S}
        filled = await self._store.events_by_id(sorted(self._gaps)) if self._gaps else []
        for event in filled:
            self._gaps.pop(event.id, None)
        fresh = await self._store.events_after(self._cursor, limit=_PAGE)
        expected = self._cursor + 1
        for event in fresh:
            if len(self._gaps) < _MAX_GAPS and event.id - expected < _MAX_HOLE:
                self._gaps.update(dict.fromkeys(range(expected, event.id), now))
            expected = event.id + 1
        if fresh:
            self._cursor = fresh[-1].id
        self._dispatch([*filled, *fresh])

    # Reading and retention

    async def history(self, agent: str, *, limit: int, before: int | None) -> list[EventRecord]:
        return await self._store.agent_events(agent, limit=limit, before=before)

    async def _purge_loop(self) -> None:
        while True:
            try:
                purged = await self._store.purge_events(self._store.now() - self._retention)
                if purged:
                    log.info("old events deleted", extra={"count": purged})
            except Exception:
                log.warning("could not delete old events", exc_info=True)
            await asyncio.sleep(self._purge_interval_s)


def event_view(event: EventRecord) -> dict[str, Any]:
    """An event as ``GET /v1/events`` and the agent history show it."""
    return {
        "id": event.id,
        "at": event.at,
        "kind": event.kind,
        "agent": event.agent,
        "data": event.data,
    }
