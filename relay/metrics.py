"""The relay's Prometheus metrics: what it counts on the call path and what it reads at scrape.

One `RelayMetrics` per app, with its own `CollectorRegistry`: several relays run in one test
process, and the process-global registry would mix their numbers. docs/observability.md lists
every metric with its labels.

The call path pays for one observation per call (`call_ended`) plus one per agent answer
(`answered`): a dict lookup for the labelled children (cached here, so prometheus_client's
`labels()` and its lock run once per label set, not per call) and the counter and histogram
updates. Everything that can be read when Prometheus asks is read then instead: connections
and calls in flight from the hub, jobs by state from the store (`refresh`, at most once per
`JOBS_CACHE_S`, so frequent scrapes or several Prometheus servers cost one query).

Label values are bounded: an operation outside the catalogue is counted as ``other`` (the path
is the caller's to choose), error codes and status classes are the relay's own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncEngine

from protocol.operations import CATALOGUE
from relay.hub import Hub
from relay.store import models
from relay.store.jobs import CANCELLED, EXPIRED, FAILED, PENDING, RUNNING, SUCCEEDED

log = logging.getLogger("relay.metrics")

JOBS_CACHE_S = 5.0
JOB_STATES = (PENDING, RUNNING, SUCCEEDED, FAILED, EXPIRED, CANCELLED)
OTHER_OPERATION = "other"

LATENCY_BUCKETS_S = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0,
)  # fmt: skip
"""From the relay's own sub-millisecond share up to the longest call timeout (120 s)."""


class _HubCollector(Collector):
    """Connections and calls in flight, read from the hub when scraped: always current, and
    nothing to keep in step on connect and disconnect."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    def collect(self) -> Iterator[Metric]:
        links = list(self._hub)
        yield GaugeMetricFamily(
            "erp_relay_agents_connected",
            "Agents with at least one connection to this replica.",
            value=len({link.agent for link in links}),
        )
        yield GaugeMetricFamily(
            "erp_relay_agent_connections",
            "Agent connections open at this replica.",
            value=len(links),
        )
        yield GaugeMetricFamily(
            "erp_relay_calls_in_flight",
            "Calls sent to agents through this replica's connections and not answered yet.",
            value=sum(link.in_flight for link in links),
        )


class RelayMetrics:
    def __init__(self, hub: Hub, engine: AsyncEngine, *, version: str, replica: str) -> None:
        self.registry = registry = CollectorRegistry()
        self._engine = engine
        Info("erp_relay", "The relay's version and replica id.", registry=registry).info(
            {"version": version, "replica": replica}
        )
        registry.register(_HubCollector(hub))
        self.connections_opened = Counter(
            "erp_relay_agent_connections_opened",
            "Agent connections accepted (after hello); a reconnect counts again.",
            registry=registry,
        )
        self.connections_closed = Counter(
            "erp_relay_agent_connections_closed",
            "Agent connections that ended, for any reason.",
            registry=registry,
        )
        self._refused = Counter(
            "erp_relay_agent_connections_refused",
            "Agent connections refused before the upgrade, by problem code.",
            ["code"],
            registry=registry,
        )
        self._calls = Counter(
            "erp_relay_calls",
            "CRM calls answered, by operation, HTTP status class and error code (ok: none).",
            ["operation", "status", "code"],
            registry=registry,
        )
        self._duration = Histogram(
            "erp_relay_call_duration_seconds",
            "Whole calls as the relay saw them, from the request to the answer.",
            ["operation"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        parts = {
            "relay": "The relay's share of calls answered by an agent (whole minus agent).",
            "agent": "The agent's share of calls it answered, outside the ERP.",
            "erp": "Time spent in the ERP by calls an agent answered.",
        }
        self._parts = tuple(
            Histogram(
                f"erp_relay_call_{part}_seconds",
                help_text,
                ["operation"],
                buckets=LATENCY_BUCKETS_S,
                registry=registry,
            )
            for part, help_text in parts.items()
        )
        self.forwarded = Counter(
            "erp_relay_calls_forwarded",
            "Calls sent to another replica that holds the agent's connection.",
            registry=registry,
        )
        self._webhooks = Counter(
            "erp_relay_webhook_attempts",
            "Webhook delivery attempts, by outcome: delivered, retry (will be tried again), "
            "gave_up.",
            ["outcome"],
            registry=registry,
        )
        self._jobs = Gauge(
            "erp_relay_jobs",
            "Jobs in the store by state (all replicas: the same figure at every replica).",
            ["state"],
            registry=registry,
        )
        self._jobs_read_at = float("-inf")
        self._call_children: dict[tuple[str, int, str], tuple[Counter, Histogram]] = {}
        self._part_children: dict[str, tuple[Histogram, Histogram, Histogram]] = {}

    # The call path

    def call_ended(self, operation: str, status: int, code: str, seconds: float) -> None:
        """Count one answered call (``code`` empty: success) and observe its duration."""
        children = self._call_children.get((operation, status, code))
        if children is None:
            children = self._new_call_children(operation, status, code)
        children[0].inc()
        children[1].observe(seconds)

    def _new_call_children(
        self, operation: str, status: int, code: str
    ) -> tuple[Counter, Histogram]:
        label = operation if operation in CATALOGUE else OTHER_OPERATION
        children = (
            self._calls.labels(label, f"{status // 100}xx", code or "ok"),
            self._duration.labels(label),
        )
        if label == operation:  # never keep a cache entry per made-up operation name
            self._call_children[(operation, status, code)] = children
        return children

    def answered(self, operation: str, total_ms: float, agent_ms: float, erp_ms: float) -> None:
        """Split a call an agent answered the way its Server-Timing header does."""
        children = self._part_children.get(operation)
        if children is None:
            relay, agent, erp = (part.labels(operation) for part in self._parts)
            children = self._part_children[operation] = (relay, agent, erp)
        children[0].observe(max(total_ms - agent_ms, 0.0) / 1000)
        children[1].observe(max(agent_ms - erp_ms, 0.0) / 1000)
        children[2].observe(erp_ms / 1000)

    # Agent connections and webhooks

    def connection_refused(self, code: str) -> None:
        self._refused.labels(code).inc()

    def webhook_attempt(self, outcome: str) -> None:
        self._webhooks.labels(outcome).inc()

    # Scrape time

    async def refresh(self) -> None:
        """Read the job counts from the store unless they are fresh enough.

        The read-at time is moved before the query, so scrapes arriving meanwhile use the
        previous counts instead of piling up queries. A failed read keeps the previous counts.
        """
        now = time.monotonic()
        if now - self._jobs_read_at < JOBS_CACHE_S:
            return
        self._jobs_read_at = now
        jobs = models.jobs
        query = sa.select(jobs.c.state, sa.func.count()).group_by(jobs.c.state)
        try:
            async with self._engine.connect() as connection:
                rows = (await connection.execute(query)).all()
        except Exception as exc:
            log.warning("could not read job counts for /metrics (%s)", type(exc).__name__)
            return
        counts: dict[str, int] = dict(rows)
        for state in JOB_STATES:
            self._jobs.labels(state).set(counts.get(state, 0))
