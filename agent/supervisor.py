"""The agent's main loop: connect, serve, and reconnect forever.

Each connection reports how it ended and the supervisor alone decides what comes next:
after a goaway it reconnects at once; after a failure it waits a full-jitter backoff delay
(1 s base, 30 s cap), and a connection that stayed up `stable_after_s` resets the backoff. A
failure at boot (the network is not up yet, the relay is being deployed) is retried like any
other, never fatal: nobody is there to restart an agent in an office at night.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import uuid
from collections.abc import Iterator
from importlib.metadata import version

from agent.connectors.base import Connector
from agent.dispatch import STATUS_OPERATION, Dispatcher
from agent.executor import Executor
from agent.journal import Journal, JournalUnavailable
from agent.link import ConnectFailed, LinkStatus, run_link
from agent.settings import AgentSettings
from protocol.backoff import backoff
from protocol.frames import Hello
from protocol.operations import CATALOGUE

log = logging.getLogger("agent")


def agent_version() -> str:
    try:
        return version("erp-relay")
    except Exception:
        return "0+unknown"


class Supervisor:
    def __init__(self, settings: AgentSettings, connector: Connector) -> None:
        self.settings = settings
        self.connector = connector
        info = connector.info()
        self.executor = Executor(connector, settings.agent.max_concurrency)
        operations = (frozenset(info.operations) | {STATUS_OPERATION}) & frozenset(CATALOGUE)
        self.journal = Journal(
            settings.agent.journal_file(), retention_days=settings.agent.journal_retention_days
        )
        try:
            self.journal.open()
        except JournalUnavailable as exc:
            # reads still work; every write is refused with journal_unavailable until it opens
            log.error("%s; writes will be refused until it can be written", exc)
        self.dispatcher = Dispatcher(self.executor, operations, journal=self.journal)
        self.hello = Hello(
            agent_version=agent_version(),
            connector=info.name,
            erp=info.erp,
            operations=tuple(sorted(operations)),
            max_concurrency=self.executor.workers,
            instance_id=uuid.uuid4().hex,
            hostname=socket.gethostname()[:255],
        )
        self.status = LinkStatus()
        self.connections = 0
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        delays = self._delays()
        try:
            while not self._stop.is_set():
                delay = await self._once(delays)
                if delay is None:
                    delays = self._delays()
                    delay = 0.0
                elif delay < 0:
                    delays = self._delays()
                    delay = next(delays)
                if delay > 0:
                    log.info("reconnecting", extra={"in_s": round(delay, 2)})
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._stop.wait()
        finally:
            # waits for calls still in worker threads; off the loop so it keeps turning
            await asyncio.to_thread(self.executor.close)
            self.journal.close()
            self.connector.close()

    def _delays(self) -> Iterator[float]:
        r = self.settings.reconnect
        return backoff(base=r.base_s, cap=r.cap_s)

    async def _once(self, delays: Iterator[float]) -> float | None:
        """One connection; returns the delay before the next one (None: at once, <0: reset)."""
        started = time.monotonic()
        link = asyncio.ensure_future(
            run_link(self.settings, self.dispatcher, self.hello, self.status)
        )
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({link, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not link.done():
            link.cancel()
            await asyncio.gather(link, return_exceptions=True)
            return 0.0
        try:
            ended = link.result()
        except ConnectFailed as exc:
            self.status.last_error = str(exc)
            log.warning("cannot connect to the relay: %s", exc)
            return next(delays)
        except ValueError as exc:  # configuration: no token, unreadable token file
            self.status.last_error = str(exc)
            log.error("%s", exc)
            return next(delays)
        self.connections += 1
        self.status.last_error = ended.reason
        log.info("connection ended: %s", ended.reason)
        if ended.goaway is not None:
            return ended.goaway.reconnect_delay_ms / 1000 or None
        if time.monotonic() - started >= self.settings.reconnect.stable_after_s:
            return -1.0
        return next(delays)
