"""Finding changes: poll the connector every interval and store what it finds in the outbox.

Each poll runs in one of the executor's worker sessions (`Executor.poll_changes`, as health
probes do: no licence seat of its own, never on the event loop) and hands the connector the
detection state stored with the last events; the new state and the new events are then
committed together (`Outbox.record`). A poll that fails (the ERP is down, the outbox cannot be
written) stores nothing, so the next one starts from the same state and finds the same changes.

When the outbox holds `max_outbox` events (a relay that never acknowledges, a long outage) the
poller stops polling, with a warning, instead of growing the file without end: the detection
state stays where it was, so the changes are found later, once there is room, as one
difference each. Calls are never held up by it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from agent.changefeed.outbox import Outbox, OutboxUnavailable
from agent.connectors.base import ConnectorError
from agent.executor import Executor

log = logging.getLogger("agent.changefeed")


class Poller:
    def __init__(
        self,
        executor: Executor,
        outbox: Outbox,
        *,
        interval_s: float,
        max_outbox: int,
        found: Callable[[], None],
    ) -> None:
        """``found`` is called after new events were stored."""
        self._executor = executor
        self._outbox = outbox
        self.interval_s = interval_s
        self.max_outbox = max_outbox
        self._found = found
        self._state: bytes | None = None
        self._loaded = False
        self.full = False
        self.failing = ""
        """Why the last poll failed ("" when it did not), for the status."""

    async def run(self) -> None:
        """Poll every interval until cancelled."""
        while True:
            await self.poll()
            await asyncio.sleep(self.interval_s)

    async def poll(self) -> int:
        """One poll; returns the number of events it stored."""
        try:
            if not self._loaded:
                await asyncio.to_thread(self._outbox.open)
                self._state = await asyncio.to_thread(self._outbox.state)
                self._loaded = True
                self._found()  # events left by an earlier run can go now
            if self._outbox_full():
                return 0
            poll = await self._executor.poll_changes(self._state)
            if poll.state == self._state and not poll.changes:
                self._failed("")
                return 0
            events = [change.model_dump_json() for change in poll.changes]
            await asyncio.to_thread(self._outbox.record, poll.state, events)
        except OutboxUnavailable as exc:
            self._failed(str(exc))
            return 0
        except ConnectorError as exc:
            self._failed(f"the ERP could not be polled for changes: {exc.message}")
            return 0
        except Exception:
            # the connector's own text may hold ERP data: the log only
            log.warning("polling the ERP for changes failed unexpectedly", exc_info=True)
            self._failed("polling the ERP for changes failed unexpectedly")
            return 0
        self._state = poll.state
        self._failed("")
        if events:
            log.info("changes found", extra={"events": len(events)})
            self._found()
        return len(events)

    def _outbox_full(self) -> bool:
        full = self._outbox.depth >= self.max_outbox
        if full and not self.full:
            log.warning(
                "the change outbox holds %d events waiting for the relay's ack (changes "
                "max_outbox); not polling for changes until it drains",
                self._outbox.depth,
            )
        elif self.full and not full:
            log.info("the change outbox has room again; polling for changes")
        self.full = full
        return full

    def _failed(self, why: str) -> None:
        if why and why != self.failing:
            log.warning("%s", why)
        elif self.failing and not why:
            log.info("polling for changes works again")
        self.failing = why
