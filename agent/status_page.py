"""The optional local status page (``[status] listen``): the status snapshot over HTTP.

``GET /status.json`` is the snapshot (`agent.status.snapshot`); ``GET /`` is the same as a small
HTML page, with no script, style sheet or anything else fetched from elsewhere, every value
escaped. It is for a person on the server or a local monitoring probe, so it speaks just enough
HTTP/1.1 for that (one GET per connection) on asyncio's own server, rather than bring a web
framework into the agent.

No authentication, so by default it listens on loopback only (`agent.settings.StatusOptions`),
and it refuses a ``Host`` other than a loopback name there, so that a web page the admin
happens to open cannot read it through DNS rebinding.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
from typing import Any

from agent.settings import is_loopback, listen_address
from agent.status import SnapshotSource, render

log = logging.getLogger("agent.status")

MAX_REQUEST_BYTES = 8192
READ_TIMEOUT_S = 5.0
_BAD_REQUEST = ("400 Bad Request", "text/plain", b"bad request\n")


class StatusPage:
    def __init__(self, listen: str, build: SnapshotSource, *, allow_remote: bool = False) -> None:
        self.host, self.port = listen_address(listen)
        self._build = build
        self._check_host = not allow_remote
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, limit=MAX_REQUEST_BYTES
        )
        log.info("status page listening", extra={"url": f"http://{self.listen}/"})

    @property
    def listen(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        method = b""
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
            method = head.split(b" ", 1)[0]
            status, content_type, body = self._answer(head)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            status, content_type, body = _BAD_REQUEST
        except (ConnectionError, OSError):
            writer.close()
            return
        writer.write(
            (
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n"
                "X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n"
            ).encode("ascii")
            + (b"" if method == b"HEAD" else body)
        )
        with contextlib.suppress(ConnectionError, OSError):
            await writer.drain()
        writer.close()

    def _answer(self, head: bytes) -> tuple[str, str, bytes]:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            return _BAD_REQUEST
        method, target, _ = parts
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", "text/plain", b"only GET\n"
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:] if line)
        }
        if self._check_host and not _loopback_host(headers.get("host", "")):
            return "421 Misdirected Request", "text/plain", b"this page answers on loopback only\n"
        path = target.split("?", 1)[0]
        if path == "/status.json":
            return "200 OK", "application/json", json.dumps(self._build(True), indent=1).encode()
        if path == "/":
            return "200 OK", "text/html", page(self._build(True)).encode()
        return "404 Not Found", "text/plain", b"not found: try / or /status.json\n"


def _loopback_host(value: str) -> bool:
    try:
        host, _ = listen_address(value)
    except ValueError:
        host = value.removeprefix("[").removesuffix("]")
    return is_loopback(host)


def page(data: dict[str, Any]) -> str:
    """The snapshot as a plain HTML page: the terminal summary, escaped, refreshed every 5 s."""
    text = html.escape(render(data))
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="refresh" content="5"><title>erp-agent status</title></head>\n'
        f"<body><h1>erp-agent status</h1>\n<pre>{text}</pre>\n"
        '<p><a href="/status.json">status.json</a></p></body></html>\n'
    )
