"""`ChangeIngest`: change events from agent connections into the store, then their acks.

The socket's read loop only validates a ``change`` event and queues it (`offer` never waits):
a slow database must not hold up the results of calls arriving on the same connection. One
writer task takes what is queued, up to `_BATCH` events at a time, stores each agent's share
in one transaction (`ChangeStore.append`: repeats of a stored (agent, stream, seq) are skipped)
and only after the commit answers each event with ``ack`` on the connection it came on.

What is not acked is sent again by the agent (it keeps each event in its outbox until acked),
so the failure paths lose nothing: with the database down nothing is acked (the writer tries
a failed batch again for a while, so a short outage needs no reconnect); with the queue
full (`queue_size` events waiting) an event is dropped unacked and counted; an ack lost with
its connection is answered again when the event comes back on the next one (as a repeat).

Change data that `protocol.changes.CHANGE_ADAPTER` rejects would block the agent's outbox if
left unacked, so it is logged (type and position, never the data: it may hold personal data),
counted, and acked without being stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import ValidationError

from protocol.changes import CHANGE_ADAPTER
from protocol.frames import Event
from relay.changefeed.store import ChangeRecord, ChangeStore, IncomingChange
from relay.hub import AgentLink

log = logging.getLogger("relay.changefeed")

_BATCH = 500
_RETRY_FIRST_S = 0.5
_RETRY_CAP_S = 5.0


@dataclass(frozen=True, slots=True)
class _Queued:
    link: AgentLink
    stream: str
    seq: int
    change: IncomingChange | None
    """None: invalid data, acked but not stored."""


@dataclass
class IngestCounts:
    stored: int = 0
    repeated: int = 0
    invalid: int = 0
    dropped: int = 0
    """Not queued (the queue was full) and not acked: the agent sends them again."""
    retried: int = 0
    """Times a batch was tried again because the database failed."""
    failed: int = 0
    """Not stored (the database kept failing) and not acked: the agent sends them again."""


class ChangeIngest:
    def __init__(
        self,
        store: ChangeStore,
        *,
        on_stored: Callable[[str, list[ChangeRecord]], None],
        queue_size: int = 10_000,
        retry_for_s: float = 60.0,
    ) -> None:
        self._store = store
        self._on_stored = on_stored
        self._queue: asyncio.Queue[_Queued] = asyncio.Queue(queue_size)
        self._task: asyncio.Task[None] | None = None
        self._retry_for_s = retry_for_s
        self.counts = IngestCounts()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._write_loop(), name="change-ingest")

    async def stop(self) -> None:
        """Stop at once: what is still queued is not acked, so the agents send it again."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def offer(self, link: AgentLink, frame: Event) -> None:
        """Queue one ``change`` event from `link` (called by the read loop; never waits)."""
        where = {"agent": link.agent, "stream": frame.stream[:64], "seq": frame.seq}
        if frame.seq < 1 or not frame.stream:
            self.counts.invalid += 1
            log.warning("change event without stream and seq ignored", extra=where)
            return
        change: IncomingChange | None = None
        try:
            parsed = CHANGE_ADAPTER.validate_python(frame.data)
        except ValidationError as exc:
            self.counts.invalid += 1
            kind = frame.data.get("type") if isinstance(frame.data, dict) else None
            log.warning(
                "invalid change event acked and dropped",
                extra={**where, "type": str(kind)[:64], "errors": exc.error_count()},
            )
        else:
            change = IncomingChange(
                stream=frame.stream,
                seq=frame.seq,
                type=parsed.type,
                occurred_at=parsed.occurred_at,
                data=parsed.model_dump(mode="json"),
            )
        try:
            self._queue.put_nowait(_Queued(link, frame.stream, frame.seq, change))
        except asyncio.QueueFull:
            self.counts.dropped += 1
            log.warning("change queue full: event left unacked", extra=where)

    async def _write_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < _BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            by_agent: dict[str, list[_Queued]] = {}
            for item in batch:
                by_agent.setdefault(item.link.agent, []).append(item)
            for agent, items in by_agent.items():
                await self._store_and_ack(agent, items)

    async def _store_and_ack(self, agent: str, items: list[_Queued]) -> None:
        changes = [item.change for item in items if item.change is not None]
        stored: list[ChangeRecord] = []
        if changes:
            try:
                stored = await self._append(agent, changes, items)
            except Exception:
                self.counts.failed += len(changes)
                log.warning(
                    "could not store change events; the agent will send them again",
                    extra={"agent": agent, "count": len(changes)},
                    exc_info=True,
                )
                items = [item for item in items if item.change is None]
            else:
                self.counts.stored += len(stored)
                self.counts.repeated += len(changes) - len(stored)
        if stored:
            self._on_stored(agent, stored)
        for item in items:
            if not item.link.closed:
                with contextlib.suppress(Exception):  # the link is going; the agent resends
                    await item.link.send(item.link.session.ack(item.stream, item.seq))

    async def _append(
        self, agent: str, changes: list[IncomingChange], items: list[_Queued]
    ) -> list[ChangeRecord]:
        """`ChangeStore.append`, tried again while the database is failing, for up to
        `_RETRY_FOR_S`, as long as a connection the events came on is open: an agent sends
        unacked events again only when it reconnects, so a short outage must not leave them
        waiting for that. Then the error is raised (nothing is acked)."""
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self._retry_for_s
        delay = _RETRY_FIRST_S
        while True:
            try:
                return await self._store.append(agent, changes)
            except Exception:
                alive = any(not item.link.closed for item in items)
                if not alive or loop.time() + delay > give_up_at:
                    raise
                self.counts.retried += 1
                log.warning(
                    "could not store change events; trying again",
                    extra={"agent": agent, "count": len(changes), "retry_in_s": delay},
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_CAP_S)
