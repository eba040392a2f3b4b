"""The agent's side of the change feed (docs/change-feed.md): find changes in the ERP, keep
them in a durable outbox, send them to the relay and forget each once the relay acknowledges it.

`ChangeFeed` puts the three parts together: `poller` (every ``[changes] interval_s``, in a
worker session), `outbox` (SQLite, next to the write journal by default) and `sender` (one
connection at a time, bounded window, resend after reconnect).
"""

from __future__ import annotations

import logging
from typing import Any

from websockets.asyncio.client import ClientConnection

from agent.changefeed.outbox import Outbox
from agent.changefeed.poller import Poller
from agent.changefeed.sender import Sender
from agent.connectors.base import ConnectorInfo
from agent.executor import Executor
from agent.settings import AgentSettings
from protocol.frames import Ack
from protocol.session import AgentSession

log = logging.getLogger("agent.changefeed")


class ChangeFeed:
    def __init__(self, outbox: Outbox, poller: Poller, sender: Sender) -> None:
        self.outbox = outbox
        self.poller = poller
        self.sender = sender

    @classmethod
    def create(
        cls, settings: AgentSettings, executor: Executor, info: ConnectorInfo
    ) -> ChangeFeed | None:
        """The feed ``[changes]`` asks for, or None when it is off or the connector cannot
        detect changes."""
        options = settings.changes
        if options.enabled is False:
            return None
        if not info.changes:
            if options.enabled:
                log.error(
                    "changes.enabled is true but the %s connector cannot detect changes; "
                    "running without the change feed",
                    info.name,
                )
            return None
        outbox = Outbox(settings.outbox_file())
        sender = Sender(outbox, options.max_in_flight)
        poller = Poller(
            executor,
            outbox,
            interval_s=options.interval_s,
            max_outbox=options.max_outbox,
            found=sender.notify,
        )
        return cls(outbox, poller, sender)

    async def run(self) -> None:
        """Poll until cancelled."""
        await self.poller.run()

    async def serve(self, ws: ClientConnection, session: AgentSession, slot: int) -> None:
        """Beside each welcomed connection, until it closes (see `Sender.serve`)."""
        await self.sender.serve(ws, session, slot)

    def acked(self, ack: Ack) -> None:
        self.sender.acked(ack)

    def status(self) -> dict[str, Any]:
        """For the status snapshot: no event content, only counts."""
        return {
            "stream": self.outbox.stream,
            "outbox": self.outbox.depth,
            "in_flight": self.sender.in_flight,
            "full": self.poller.full,
            "last_error": self.poller.failing,
        }

    def close(self) -> None:
        self.outbox.close()
