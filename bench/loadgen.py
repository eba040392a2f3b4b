"""A minimal closed-loop HTTP/1.1 load generator: N keep-alive connections for concurrency N.

Each connection sends one pre-encoded request, waits for the complete response (status line,
headers, Content-Length body), records the latency with `time.perf_counter_ns`, and sends the
next, until the shared request budget is spent. It is an `asyncio.Protocol` (no streams, no
HTTP library) so the client costs a few tens of microseconds per request and is the same for
every scenario.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import cast


@dataclass
class RunResult:
    latencies_ns: list[int]
    wall_s: float
    errors: int
    statuses: dict[int, int] = field(default_factory=dict)
    sample_body: bytes = b""

    @property
    def rps(self) -> float:
        return len(self.latencies_ns) / self.wall_s if self.wall_s else 0.0

    def percentile_ms(self, p: float) -> float:
        data = sorted(self.latencies_ns)
        if not data:
            return float("nan")
        index = min(len(data) - 1, max(0, round(p / 100 * len(data) + 0.5) - 1))
        return data[index] / 1e6


def build_request(host: str, port: int, path: str, body: bytes, token: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        f"Authorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\n"
        "Accept: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    ).encode("latin-1") + body


class _Budget:
    __slots__ = ("done", "left", "outstanding")

    def __init__(self, total: int, loop: asyncio.AbstractEventLoop) -> None:
        self.left = total
        self.outstanding = 0
        self.done: asyncio.Future[None] = loop.create_future()


class _Client(asyncio.Protocol):
    def __init__(self, request: bytes, budget: _Budget, result: RunResult, keep_body: bool):
        self.request = request
        self.budget = budget
        self.result = result
        self.keep_body = keep_body
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.sent_at = 0
        self.connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.connected.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        if self.sent_at and not self.budget.done.done():
            self.budget.done.set_exception(ConnectionError(f"server closed the connection: {exc}"))

    def send_next(self) -> None:
        budget = self.budget
        if budget.left <= 0:
            self.sent_at = 0
            if budget.outstanding == 0 and not budget.done.done():
                budget.done.set_result(None)
            return
        budget.left -= 1
        budget.outstanding += 1
        self.sent_at = time.perf_counter_ns()
        self.transport.write(self.request)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buffer[:end]).lower()
            start = head.find(b"content-length:")
            if start < 0:
                raise RuntimeError("response without Content-Length")
            stop = head.find(b"\r\n", start)
            length = int(head[start + 15 : stop if stop > 0 else None])
            total = end + 4 + length
            if len(buffer) < total:
                return
            now = time.perf_counter_ns()
            status = int(head[9:12])
            result = self.result
            result.latencies_ns.append(now - self.sent_at)
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if status != 200:
                result.errors += 1
            if self.keep_body:
                result.sample_body = bytes(buffer[end + 4 : total])
                self.keep_body = False
            del buffer[:total]
            self.budget.outstanding -= 1
            self.send_next()


async def run_load(host: str, port: int, request: bytes, concurrency: int, total: int) -> RunResult:
    """Send `total` requests over `concurrency` connections; latencies in completion order."""
    loop = asyncio.get_running_loop()
    result = RunResult(latencies_ns=[], wall_s=0.0, errors=0)
    budget = _Budget(total, loop)
    clients: list[_Client] = []
    for i in range(concurrency):
        _, client = await loop.create_connection(
            lambda first=(i == 0): _Client(request, budget, result, first), host, port
        )
        clients.append(client)
    started = time.perf_counter()
    for client in clients:
        client.send_next()
    try:
        await budget.done
        result.wall_s = time.perf_counter() - started
    finally:
        for client in clients:
            if client.transport is not None:
                client.transport.close()
        await asyncio.gather(*(c.lost for c in clients), return_exceptions=True)
    return result
