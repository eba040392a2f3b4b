"""A relay that speaks the wire protocol and obeys nothing else: for calls a real relay never sends.

The real relay answers an operation the site refuses with 403 before anything reaches the
office, so it cannot show that the agent refuses it too. `FakeRelay` is built from the protocol
package alone (`protocol.session.RelaySession` over a websockets asyncio server): it accepts any
token, welcomes the agent, and then sends whatever call a test asks for — as a compromised or
misconfigured relay would — and hands back the agent's answer frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from protocol.frames import Error, Hello, Result
from protocol.session import RelaySession
from protocol.version import SUBPROTOCOL


class FakeRelay:
    """One agent connection at a time; `call` sends a call on the newest one."""

    def __init__(self) -> None:
        self.port = 0
        self.hello: Hello | None = None
        self._session: RelaySession | None = None
        self._ws: ServerConnection | None = None
        self._answers: dict[int, asyncio.Future[Result | Error]] = {}
        self._welcomed = asyncio.Event()

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/agent/connect"

    async def welcomed(self, timeout_s: float = 30) -> Hello:
        """Wait until an agent has said hello and been welcomed; return its hello."""
        async with asyncio.timeout(timeout_s):
            await self._welcomed.wait()
        assert self.hello is not None
        return self.hello

    async def call(
        self,
        operation: str,
        args: Any,
        *,
        idempotency_key: str | None = None,
        request_id: str | None = None,
        timeout_s: float = 15,
    ) -> Result | Error:
        """Send one call, whatever the agent's hello said, and wait for its answer."""
        session, ws = self._session, self._ws
        assert session is not None and ws is not None, "no agent connected"
        deadline_ms = int((time.time() + timeout_s) * 1000)
        call_id, data = session.call(operation, args, deadline_ms, idempotency_key, request_id)
        answer: asyncio.Future[Result | Error] = asyncio.get_running_loop().create_future()
        self._answers[call_id] = answer
        await ws.send(data)
        async with asyncio.timeout(timeout_s):
            return await answer

    async def _serve(self, ws: ServerConnection) -> None:
        session = RelaySession()
        hello = session.receive(await ws.recv())
        assert isinstance(hello, Hello)
        await ws.send(session.welcome("fake-session", "fake", int(time.time() * 1000), "fake"))
        self.hello, self._session, self._ws = hello, session, ws
        self._welcomed.set()
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                frame = session.receive(message)
                if isinstance(frame, Result | Error):
                    answer = self._answers.pop(frame.id, None)
                    if answer is not None and not answer.done():
                        answer.set_result(frame)
                # events (health reports) and anything else a newer agent sends: not our concern

    @asynccontextmanager
    async def running(self) -> AsyncIterator[FakeRelay]:
        async with serve(
            self._serve,
            "127.0.0.1",
            0,
            subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
        ) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            yield self
