"""A scripted agent: `AgentSession` over a real WebSocket to the relay, sending change events.

Only the protocol, no agent code: the test decides exactly which events go out, when, and
which acks it has seen, so storage and ack rules are checked frame by frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from protocol.frames import CHANGE_EVENT, Ack, Hello
from protocol.session import AgentSession
from protocol.version import SUBPROTOCOL

STREAM = "outbox-1"


def stock(sku: str, quantity: str = "5.0000", *, warehouse: str = "MAG") -> dict[str, Any]:
    """A valid ``stock.changed`` change."""
    return {
        "type": "stock.changed",
        "occurred_at": dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC).isoformat(),
        "sku": sku,
        "product_id": "1",
        "warehouse": warehouse,
        "quantity": quantity,
        "reserved": "0.0000",
        "available": quantity,
    }


def payment(payment_id: str) -> dict[str, Any]:
    """A valid ``payment.registered`` change."""
    return {
        "type": "payment.registered",
        "occurred_at": dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC).isoformat(),
        "id": payment_id,
        "amount": "10.00",
        "paid_on": "2026-11-23",
    }


class ScriptedAgent:
    def __init__(self, socket: ClientConnection, session: AgentSession) -> None:
        self.socket = socket
        self.session = session
        self.acks: list[tuple[str, int]] = []
        self._reader = asyncio.create_task(self._read())

    async def send(self, seq: int, data: Any, stream: str = STREAM) -> None:
        await self.socket.send(self.session.event(CHANGE_EVENT, data, seq, stream))

    def acked(self, seq: int, stream: str = STREAM) -> bool:
        return (stream, seq) in self.acks

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for message in self.socket:
                frame = self.session.receive(message)
                if isinstance(frame, Ack):
                    self.acks.append((frame.stream, frame.seq))

    async def close(self) -> None:
        await self.socket.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@asynccontextmanager
async def scripted_agent(ws_url: str, token: str) -> AsyncIterator[ScriptedAgent]:
    session = AgentSession()
    socket = await connect(
        ws_url,
        subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
        additional_headers={"Authorization": f"Bearer {token}"},
    )
    hello = Hello(agent_version="test", connector="scripted", operations=(), max_concurrency=1)
    await socket.send(session.hello(hello))
    session.receive(await socket.recv())  # welcome
    agent = ScriptedAgent(socket, session)
    try:
        yield agent
    finally:
        await agent.close()
