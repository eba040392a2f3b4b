"""A relay that takes change events and acknowledges them when told to, built from the protocol
package alone (`protocol.session.RelaySession` over a websockets server): the agent side of
the change feed is tested without the relay's storage (tests/changefeed_relay has that)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from protocol.frames import CHANGE_EVENT, Event
from protocol.session import RelaySession
from protocol.version import SUBPROTOCOL


class ChangeRelay:
    def __init__(self) -> None:
        self.port = 0
        self.acking = True
        self.events: list[Event] = []
        """Every change event received, repeats included, in order."""
        self.connections = 0
        self._ws: ServerConnection | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/agent/connect"

    async def drop(self) -> None:
        """Close the agent's connection (it reconnects)."""
        if self._ws is not None:
            await self._ws.close()

    async def _serve(self, ws: ServerConnection) -> None:
        session = RelaySession()
        session.receive(await ws.recv())
        await ws.send(session.welcome("s", "test", int(time.time() * 1000)))
        self._ws = ws
        self.connections += 1
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                frame = session.receive(message)
                if isinstance(frame, Event) and frame.kind == CHANGE_EVENT:
                    self.events.append(frame)
                    if self.acking:
                        await ws.send(session.ack(frame.stream, frame.seq))

    @asynccontextmanager
    async def running(self) -> AsyncIterator[ChangeRelay]:
        async with serve(
            self._serve,
            "127.0.0.1",
            0,
            subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
        ) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            yield self
