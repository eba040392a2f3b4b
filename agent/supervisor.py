"""The agent's main loop: connect, serve, and reconnect forever, on each of its links.

Each connection reports how it ended and the supervisor alone decides what comes next:
after a goaway it reconnects at once; after a failure it waits a full-jitter backoff delay
(1 s base, 30 s cap), and a connection that stayed up `stable_after_s` resets the backoff. A
failure at boot (the network is not up yet, the relay is being deployed) is retried like any
other, never fatal: nobody is there to restart an agent in an office at night.

With ``[relay] connections`` above one, every link runs that loop on its own, so one relay
replica going away leaves the others serving; they share one dispatcher, thread pool and
journal, because the site has one ERP and one number of licence seats whatever the number of
links. Links that land on the same replica protect nothing against losing it, so a link
welcomed by a replica another link already holds leaves and comes back a moment later for
the load balancer to place it again (`SPREAD_TRIES`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from importlib.metadata import version

from agent.connectors.base import Connector
from agent.dispatch import STATUS_OPERATION, Dispatcher
from agent.executor import Executor
from agent.health import ErpHealth
from agent.journal import Journal, JournalUnavailable
from agent.link import ConnectFailed, LinkStatus, run_link
from agent.settings import AgentSettings
from protocol.backoff import backoff
from protocol.frames import Hello, Welcome
from protocol.operations import CATALOGUE

log = logging.getLogger("agent")


def agent_version() -> str:
    try:
        return version("erp-relay")
    except Exception:
        return "0+unknown"


SPREAD_TRIES = 5
"""Reconnects a link makes to get off a replica another link holds before it stays there:
with one replica up (a deploy, an outage) a second link on it is better than a link down."""


@dataclass
class _Link:
    status: LinkStatus
    spread: Iterator[float]
    """Delays between moves: short and jittered, so that links of many agents moving at once
    do not come back in step, and apart from the failure backoff (moving is no failure)."""
    moves: int = 0


class AgentStatus:
    """The agent as a whole: reachable while any of its links is connected."""

    def __init__(self, links: tuple[LinkStatus, ...]) -> None:
        self.links = links

    @property
    def connected(self) -> bool:
        return any(link.connected for link in self.links)

    @property
    def calls(self) -> int:
        return sum(link.calls for link in self.links)

    @property
    def last_error(self) -> str:
        if len(self.links) == 1:
            return self.links[0].last_error
        errors = [link for link in self.links if link.last_error]
        return "; ".join(f"link {link.slot}: {link.last_error}" for link in errors)


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
        self.health = ErpHealth(self.executor, settings.agent.health_interval_s)
        self.hello = Hello(
            agent_version=agent_version(),
            connector=info.name,
            erp=info.erp,
            operations=tuple(sorted(operations)),
            max_concurrency=self.executor.workers,
            instance_id=uuid.uuid4().hex,
            hostname=socket.gethostname()[:255],
        )
        self._links = tuple(
            _Link(LinkStatus(slot=slot, url=url), self._delays())
            for slot, url in enumerate(settings.relay.link_urls())
        )
        self.links = tuple(link.status for link in self._links)
        self.status = AgentStatus(self.links)
        self._stop = asyncio.Event()

    @property
    def connections(self) -> int:
        """Connections that opened and have ended, over all links."""
        return sum(link.connections for link in self.links)

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        # cancelled rather than stopped: a probe hanging on a dead ERP must not delay a stop
        health = asyncio.create_task(self.health.run(), name="erp-health")
        try:
            async with asyncio.TaskGroup() as links:
                for link in self._links:
                    links.create_task(self._keep(link))
        finally:
            health.cancel()
            await asyncio.gather(health, return_exceptions=True)
            # waits for calls still in worker threads; off the loop so it keeps turning
            await asyncio.to_thread(self.executor.close)
            self.journal.close()
            self.connector.close()

    async def _keep(self, link: _Link) -> None:
        delays = self._delays()
        while not self._stop.is_set():
            delay = await self._once(link, delays)
            if delay is None:
                delays = self._delays()
                delay = 0.0
            elif delay < 0:
                delays = self._delays()
                delay = next(delays)
            if delay > 0:
                log.info("reconnecting", extra={"slot": link.status.slot, "in_s": round(delay, 2)})
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stop.wait()

    def _delays(self) -> Iterator[float]:
        r = self.settings.reconnect
        return backoff(base=r.base_s, cap=r.cap_s)

    def _placement(self, link: _Link, welcome: Welcome) -> str | None:
        """Why ``link`` should not stay on the replica that welcomed it (see `SPREAD_TRIES`)."""
        holder = None
        if welcome.replica and link.moves < SPREAD_TRIES:
            holder = next(
                (
                    other
                    for other in self.links
                    if other.connected and other.replica == welcome.replica
                ),
                None,
            )
        if holder is None:
            link.moves, link.spread = 0, self._delays()
            return None
        link.moves += 1
        return f"replica {welcome.replica} already holds link {holder.slot}"

    async def _once(self, link: _Link, delays: Iterator[float]) -> float | None:
        """One connection; returns the delay before the next one (None: at once, <0: reset)."""
        status = link.status
        started = time.monotonic()
        running = asyncio.ensure_future(
            run_link(
                self.settings,
                self.dispatcher,
                # from self.hello at each connect: it is the one identity of this process
                replace(self.hello, slot=status.slot),
                status,
                functools.partial(self._placement, link),
                self.health,
            )
        )
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({running, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not running.done():
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            return 0.0
        try:
            ended = running.result()
        except ConnectFailed as exc:
            status.last_error = str(exc)
            log.warning("cannot connect to the relay: %s", exc, extra={"slot": status.slot})
            return next(delays)
        except ValueError as exc:  # configuration: no token, unreadable token file
            status.last_error = str(exc)
            log.error("%s", exc)
            return next(delays)
        status.connections += 1
        status.last_error = ended.reason
        log.info("connection ended: %s", ended.reason, extra={"slot": status.slot})
        if ended.moved:
            return next(link.spread)
        if ended.goaway is not None:
            return ended.goaway.reconnect_delay_ms / 1000 or None
        if time.monotonic() - started >= self.settings.reconnect.stable_after_s:
            return -1.0
        return next(delays)
