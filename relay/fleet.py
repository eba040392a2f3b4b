"""The operations console's view of every agent, assembled across replicas.

No replica knows the whole fleet: each holds some connections (with the health their agents
report) and counts the calls that entered through it (`relay.stats`). So each replica
publishes its *view* (`ReplicaView`: its live links and its minute buckets) in Redis at every
presence renewal, under ``{prefix}:fleet:{replica}`` with the presence TTL
(`relay.cluster.presence`), and whichever replica answers a console request merges its own
fresh view with the other live replicas' published ones, and adds what the store knows
(agents, revoked or not, last seen; jobs waiting). A replica without Redis uses its own view.
Remote views are at most one renewal old; a connection or a health change republishes at once.

The state of an agent (docs/admin-api.md): ``revoked``; else ``offline`` without a live
connection; else ``degraded`` when a connection reports its ERP unreachable, or more than
`ERROR_SHARE` of at least `MIN_CALLS` calls of the last five minutes failed server-side; else
``online``.

Degraded and recovered are also events (``agent.degraded``, ``agent.recovered``). One replica
announces them per agent so they are not repeated by every replica: the holder of the agent's
connection with the smallest replica id, checking every `check_interval_s` and at once when a
connection's health changes. When holders change the new one starts from "not degraded", so
an agent still degraded is announced again by it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from relay.cluster.node import ClusterNode
from relay.events import AGENT_DEGRADED, AGENT_RECOVERED
from relay.hub import Hub
from relay.hub.health import ERP_UNREACHABLE
from relay.stats import (
    MINUTES,
    WINDOW_MINUTES,
    CallStats,
    Encoded,
    Minute,
    Summary,
    decode_since,
    merge,
    series,
    summarize,
)
from relay.store import Store
from relay.store.fleet import FleetStore
from relay.store.records import AgentRecord

log = logging.getLogger("relay.fleet")

ERROR_SHARE = 0.2
MIN_CALLS = 10
ERP_UNREACHABLE_REASON = "erp_unreachable"
ERRORS_RISING_REASON = "errors_rising"

Announce = Callable[[str, str, dict[str, Any]], None]
"""``(kind, agent, data)``: hand an ``agent.*`` event to the event log."""


@dataclass
class ReplicaView:
    replica: str
    links: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Live connections by agent (`AgentLink.describe` plus ``replica``)."""
    stats: dict[str, list[Encoded]] = field(default_factory=dict)
    """Minute buckets by agent, as published (`CallStats.encoded`)."""

    def encode(self) -> bytes:
        return orjson.dumps({"links": self.links, "stats": self.stats})

    @classmethod
    def decode(cls, replica: str, raw: bytes) -> ReplicaView:
        body = orjson.loads(raw)
        return cls(
            replica=replica,
            links={agent: list(links) for agent, links in body["links"].items()},
            stats={agent: list(minutes) for agent, minutes in body["stats"].items()},
        )


@dataclass
class Merged:
    """Every replica's views together: what the overview and the agent page read."""

    replicas: list[str]
    links: dict[str, list[dict[str, Any]]]
    stats: dict[str, list[list[Encoded]]]
    """Each replica's buckets by agent, still encoded."""

    def minutes(self, agent: str, span: int, now: float) -> list[Minute]:
        """The agent's buckets of the last ``span`` minutes, added up over the replicas."""
        after = int(now // 60) - span
        return merge(decode_since(part, after) for part in self.stats.get(agent, ()))


def degraded_reason(links: Iterable[dict[str, Any]], summary: Summary) -> str | None:
    if any(link.get("erp_state") == ERP_UNREACHABLE for link in links):
        return ERP_UNREACHABLE_REASON
    if summary.calls >= MIN_CALLS and summary.errors > ERROR_SHARE * summary.calls:
        return ERRORS_RISING_REASON
    return None


def _at(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def agent_status(
    record: AgentRecord,
    links: list[dict[str, Any]],
    minutes: list[Minute],
    jobs_waiting: int,
    now: float,
) -> dict[str, Any]:
    """``AgentStatus`` of docs/admin-api.md."""
    summary = summarize(minutes, now)
    reason = None
    if record.revoked:
        state = "revoked"
    elif not links:
        state = "offline"
    else:
        reason = degraded_reason(links, summary)
        state = "online" if reason is None else "degraded"
    newest = max(links, key=lambda link: link["connected_since"]) if links else None
    return {
        "name": record.name,
        "state": state,
        "degraded_reason": reason,
        "connections": len(links),
        "agent_version": newest["agent_version"] if newest else record.last_version,
        "connector": newest["connector"] if newest else record.last_connector,
        "erp": newest["erp"] if newest else record.last_erp,
        "remote_address": newest["remote_address"] if newest else record.last_address,
        "connected_since": _at(min(link["connected_since"] for link in links)) if links else None,
        "last_seen_at": _at(now) if links else record.last_seen_at,
        "rtt_ms": newest["rtt_ms"] if newest else None,
        "calls_per_min": summary.calls_per_min,
        "error_rate": summary.error_rate,
        "p50_ms": summary.p50_ms,
        "p99_ms": summary.p99_ms,
        "jobs_waiting": jobs_waiting,
    }


def link_status(link: dict[str, Any]) -> dict[str, Any]:
    """One entry of the agent page's ``links``."""
    return {
        "session_id": link["session_id"],
        "replica": link["replica"],
        "remote_address": link["remote_address"],
        "connected_since": _at(link["connected_since"]),
        "agent_version": link["agent_version"],
        "hostname": link["hostname"],
        "instance_id": link["instance_id"],
        "slot": link["slot"],
        # .get: a replica older than these fields publishes its view without them
        "token": link.get("token_public_id", ""),
        "leaving": link.get("leaving", False),
        "in_flight": link["in_flight"],
        "rtt_ms": link["rtt_ms"],
        "erp": link["erp_state"],
        # what the site's owner refuses (docs/site-policy.md); absent from an older replica
        "not_allowed": link.get("not_allowed", []),
    }


class Fleet:
    def __init__(
        self,
        *,
        hub: Hub,
        stats: CallStats,
        store: Store,
        replica_id: str,
        cluster: ClusterNode | None,
        check_interval_s: float,
        announce: Announce | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._hub = hub
        self._stats = stats
        self._store = store
        self.repository = FleetStore(store.engine)
        self.replica_id = replica_id
        self._cluster = cluster
        self._check_interval_s = check_interval_s
        self._clock = clock
        self._announce = announce
        self._degraded: dict[str, str] = {}
        """Agents this replica announced degraded, with the reason."""
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        if cluster is not None:
            cluster.publish_view(lambda: self.local_view().encode())

    # Views

    def local_view(self) -> ReplicaView:
        view = ReplicaView(self.replica_id, stats=self._stats.encoded())
        for link in self._hub:
            if link.usable:
                view.links.setdefault(link.agent, []).append(
                    {**link.describe(), "replica": self.replica_id}
                )
        return view

    async def merged(self) -> Merged:
        views = [self.local_view()]
        remote = await self._cluster.fleet_views() if self._cluster is not None else None
        for replica, raw in sorted((remote or {}).items()):
            try:
                views.append(ReplicaView.decode(replica, raw))
            except (ValueError, KeyError, TypeError, AttributeError):
                log.warning("unreadable fleet view", extra={"replica": replica})
        links: dict[str, list[dict[str, Any]]] = {}
        stats: dict[str, list[list[Encoded]]] = {}
        for view in views:
            for agent, agent_links in view.links.items():
                links.setdefault(agent, []).extend(agent_links)
            for agent, minutes in view.stats.items():
                stats.setdefault(agent, []).append(minutes)
        return Merged([view.replica for view in views], links, stats)

    # What the console asks

    async def overview(self) -> dict[str, Any]:
        merged = await self.merged()
        records = await self._store.list_agents()
        waiting = await self.repository.waiting_jobs()
        now = self._clock()
        return {
            "generated_at": _at(now),
            "replicas": merged.replicas,
            "agents": [
                agent_status(
                    record,
                    merged.links.get(record.name, []),
                    merged.minutes(record.name, WINDOW_MINUTES, now),
                    waiting.get(record.name, 0),
                    now,
                )
                for record in records
            ],
        }

    async def agent(self, record: AgentRecord) -> dict[str, Any]:
        merged = await self.merged()
        links = merged.links.get(record.name, [])
        waiting = await self.repository.waiting_jobs()
        tokens = await self.repository.tokens(record.name)
        now = self._clock()
        status = agent_status(
            record,
            links,
            merged.minutes(record.name, WINDOW_MINUTES, now),
            waiting.get(record.name, 0),
            now,
        )
        status["links"] = [link_status(link) for link in links]
        status["tokens"] = [
            {
                "public_id": token.public_id,
                "created_at": token.created_at,
                "revoked_at": token.revoked_at,
                "last_used_at": token.last_used_at,
            }
            for token in tokens
        ]
        return status

    async def latency(self, agent: str, minutes: int) -> list[dict[str, Any]]:
        merged = await self.merged()
        now = self._clock()
        return series(merged.minutes(agent, min(minutes, MINUTES), now), now, minutes)

    # Degraded and recovered

    def health_changed(self) -> None:
        """A connection's health changed: republish this view and check its agent now."""
        if self._cluster is not None:
            self._cluster.view_changed()
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="fleet-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._check_interval_s):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.check()
            except Exception:
                log.exception("could not check the agents' health")

    async def check(self) -> None:
        """Announce the agents held here (by the lowest replica id) that turned degraded or
        recovered since the last check."""
        merged = await self.merged()
        now = self._clock()
        announced: dict[str, str] = {}
        for agent in self._hub.agents():
            links = merged.links.get(agent, [])
            if not links or min(link["replica"] for link in links) != self.replica_id:
                continue
            recent = merged.minutes(agent, WINDOW_MINUTES, now)
            reason = degraded_reason(links, summarize(recent, now))
            previous = self._degraded.get(agent)
            if reason is not None:
                announced[agent] = reason
                if previous is None:
                    self._event(AGENT_DEGRADED, agent, {"reason": reason})
            elif previous is not None:
                self._event(AGENT_RECOVERED, agent, {})
        self._degraded = announced

    def _event(self, kind: str, agent: str, data: dict[str, Any]) -> None:
        log.info(kind, extra={"agent": agent, **data})
        if self._announce is not None:
            self._announce(kind, agent, data)
