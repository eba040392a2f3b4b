"""The sender sends again what the relay took but never acknowledged, over a real socket."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from agent.changefeed.outbox import Outbox
from agent.changefeed.sender import Sender
from protocol.frames import Ack
from protocol.session import AgentSession


async def test_events_without_an_ack_are_sent_again_on_the_same_connection(
    tmp_path: Path,
) -> None:
    outbox = Outbox(tmp_path / "changes.sqlite")
    outbox.open()
    outbox.record(b"state", ['{"n": 1}', '{"n": 2}'])
    received: list[int] = []
    acks: asyncio.Queue[Ack] = asyncio.Queue()

    async def relay(ws: ServerConnection) -> None:
        async for message in ws:
            seq = orjson.loads(message)["seq"]
            received.append(seq)
            if received.count(seq) == 2:  # drop the first copy of each, like a full intake
                await acks.put(Ack(outbox.stream, seq))

    sender = Sender(outbox, window=10, resend_after_s=0.2)
    async with serve(relay, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}") as ws:
            serving = asyncio.create_task(sender.serve(ws, AgentSession(), slot=0))
            try:
                async with asyncio.timeout(10):
                    for _ in range(2):
                        sender.acked(await acks.get())
                    while outbox.depth:
                        await asyncio.sleep(0.05)
            finally:
                serving.cancel()
    assert received == [1, 2, 1, 2]
    assert outbox.pending() == []
    outbox.close()
