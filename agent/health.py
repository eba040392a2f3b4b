"""The agent's health reports: is the ERP reachable, and how far is the relay.

`ErpHealth` probes the ERP every `interval_s` (`ConnectorSession.probe`, run by the executor
in a worker's own session, so it takes no licence seat of its own) and remembers the verdict;
all links of the process share it, since they share one ERP. `report` runs beside each
connection and sends the relay a ``health`` event (docs/protocol.md) when the connection
opens, every interval, and at once when the verdict changes: the ERP's state, shared, and the
connection's own keepalive round-trip time.

A probe that does not finish within the interval gives no verdict: every session may be busy
with long calls, which says nothing about reachability, and calls that really hang show up in
the relay's error statistics anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from agent.connectors.base import ConnectorError
from agent.executor import Executor
from protocol.frames import HEALTH_EVENT, JSONValue
from protocol.session import AgentSession

log = logging.getLogger("agent.health")

ERP_OK = "ok"
ERP_UNREACHABLE = "unreachable"


class ErpHealth:
    def __init__(self, executor: Executor, interval_s: float) -> None:
        self._executor = executor
        self.interval_s = interval_s
        self.reachable: bool | None = None
        """None until the first probe answered."""
        self.detail = ""
        self._changed = asyncio.Event()
        self._seq = itertools.count(1)

    async def run(self) -> None:
        """Probe every interval until cancelled."""
        while True:
            await self.probe()
            await asyncio.sleep(self.interval_s)

    async def probe(self) -> None:
        try:
            async with asyncio.timeout(self.interval_s):
                await self._executor.probe()
        except TimeoutError:
            return
        except ConnectorError as exc:
            self._set(False, exc.message)
        except Exception:
            # the connector's own text may hold ERP data: the log only, never the relay
            log.warning("the ERP check failed unexpectedly", exc_info=True)
            self._set(False, "the ERP check failed unexpectedly")
        else:
            self._set(True, "")

    def _set(self, reachable: bool, detail: str) -> None:
        changed = reachable != self.reachable
        self.reachable, self.detail = reachable, detail
        if changed:
            verdict = "reachable" if reachable else "unreachable"
            log.info("ERP %s", verdict, extra={"detail": detail})
            # wake every reporter waiting now; later waits use a fresh event
            self._changed.set()
            self._changed = asyncio.Event()

    async def changed(self, timeout_s: float) -> None:
        """Return when the verdict changes, or after ``timeout_s``."""
        event = self._changed
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await event.wait()

    def event_data(self, rtt_ms: float | None) -> JSONValue:
        return {
            "erp": ERP_OK if self.reachable else ERP_UNREACHABLE,
            "rtt_ms": rtt_ms,
            "detail": self.detail,
        }

    def next_seq(self) -> int:
        return next(self._seq)


async def report(ws: ClientConnection, session: AgentSession, health: ErpHealth) -> None:
    """Send this connection's health now, every interval and on every change, until it
    closes."""
    with contextlib.suppress(TimeoutError, ConnectionClosed):
        # one measured round trip first: the keepalive's own comes only after its interval
        async with asyncio.timeout(health.interval_s):
            await (await ws.ping())
    with contextlib.suppress(ConnectionClosed):
        while True:
            if health.reachable is not None:
                rtt_ms = round(ws.latency * 1000, 3) if ws.latency else None
                data = health.event_data(rtt_ms)
                await ws.send(session.event(HEALTH_EVENT, data, health.next_seq()))
            await health.changed(health.interval_s)
