"""`FeedWatch`: wakes the readers waiting for an agent's next change event, on every replica.

A long-poll or an event stream waits on a per-agent ticket (an `asyncio.Event` replaced each
time the agent's feed moves). Events stored by this replica wake waiters at once (`moved`);
events stored by another replica are noticed by reading every agent's newest cursor from
``change_cursors`` every `poll_interval_s` (one small indexed read per replica, with or without
Redis, so a waiter hears of another replica's event within about that interval). Because
cursors follow commit order, a reader woken for cursor N finds every event up to N.

A reader takes its ticket *before* reading the table, so an event stored between its read and
its wait still wakes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from relay.changefeed.store import ChangeStore

log = logging.getLogger("relay.changefeed")


class FeedWatch:
    def __init__(
        self,
        store: ChangeStore,
        *,
        poll_interval_s: float,
        on_moved: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._poll_interval_s = poll_interval_s
        self._on_moved = on_moved
        self._tickets: dict[str, asyncio.Event] = {}
        self._known: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self.closed = False

    async def start(self) -> None:
        self._known = await self._store.last_cursors()
        self._task = asyncio.create_task(self._poll_loop(), name="change-watch")

    async def stop(self) -> None:
        """Stop polling and release every waiter (their streams end; clients reconnect)."""
        self.closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for ticket in self._tickets.values():
            ticket.set()

    def ticket(self, agent: str) -> asyncio.Event:
        ticket = self._tickets.get(agent)
        if ticket is None:
            ticket = self._tickets[agent] = asyncio.Event()
            if self.closed:
                ticket.set()
        return ticket

    async def wait(self, ticket: asyncio.Event, timeout_s: float) -> None:
        """Until the feed moves after `ticket` was taken, or `timeout_s` passes."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await ticket.wait()

    def moved(self, agent: str, cursor: int) -> None:
        if cursor <= self._known.get(agent, 0):
            return
        self._known[agent] = cursor
        ticket = self._tickets.pop(agent, None)
        if ticket is not None:
            ticket.set()

    async def poll(self) -> None:
        moved = False
        for agent, cursor in (await self._store.last_cursors()).items():
            if cursor > self._known.get(agent, 0):
                self.moved(agent, cursor)
                moved = True
        if moved:
            self._on_moved()

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval_s)
            try:
                await self.poll()
            except Exception:
                log.warning("could not read the change feed's cursors", exc_info=True)
