"""A TCP fault proxy between agent and relay: pass, delay, cut, or blackhole the link.

Like Toxiproxy, but in-process and asyncio:

- ``blackhole``: both sockets stay open and every byte is dropped silently, which is what a
  dead NAT entry or a pulled cable looks like to both ends (a half-open connection).
- ``delay_s``: every chunk waits this long before it is forwarded.
- `cut`: reset every connection now; both ends see it drop.
- `cut_on_next_upstream`: the next bytes the agent sends (its answer to a call in flight) are
  dropped and the connection is cut: the ERP has committed, the relay never hears of it.
- `round_robin`: a load balancer in front of several relays; each new connection goes to the
  next port in turn, and a port may be named twice to put two connections on one relay.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field


@dataclass
class FaultProxy:
    target_port: int
    port: int = 0
    blackholed: bool = False
    delay_s: float = 0.0
    _cut_armed: bool = False
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    cuts: int = 0
    rotation: tuple[int, ...] = ()
    placed: list[int] = field(default_factory=list)
    """The upstream port of each connection, in the order they came."""

    @classmethod
    def round_robin(cls, *ports: int) -> FaultProxy:
        return cls(ports[0], rotation=ports)

    def _upstream(self) -> int:
        ports = self.rotation or (self.target_port,)
        port = ports[len(self.placed) % len(ports)]
        self.placed.append(port)
        return port

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/agent/connect"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._upstream())
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer, upstream=True),
            self._pipe(up_reader, writer, upstream=False),
            return_exceptions=True,
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if upstream and self._cut_armed:
                    self._cut_armed = False
                    self.cut()
                    return
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                if not self.blackholed:
                    writer.write(data)
                    await writer.drain()
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    def cut_on_next_upstream(self) -> None:
        self._cut_armed = True

    def cut(self) -> None:
        """Reset every connection now (both ends see the connection drop)."""
        self.cuts += 1
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
