"""Everything a request handler needs, built once per app in the lifespan (never at import)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import HTTPConnection

from relay.auth import ApiKeyCache
from relay.calllog import CallLog
from relay.changefeed.feed import ChangeFeed
from relay.cluster.node import ClusterNode
from relay.console.sessions import Sessions
from relay.events import EventLog
from relay.fleet import Fleet
from relay.hub import Hub
from relay.idempotency import Idempotency
from relay.jobs import JobService
from relay.metrics import RelayMetrics
from relay.settings import RelaySettings
from relay.stats import CallStats
from relay.store import Store
from relay.store.console import ConsoleStore


@dataclass
class RelayState:
    settings: RelaySettings
    store: Store
    hub: Hub
    keys: ApiKeyCache
    calllog: CallLog
    idempotency: Idempotency
    version: str
    metrics: RelayMetrics
    replica_id: str = ""
    cluster: ClusterNode | None = None
    """Routing across replicas; None when this relay runs alone (no ``redis_url``)."""
    draining: bool = field(default=False)
    jobs: JobService | None = field(default=None)
    console: ConsoleStore | None = field(default=None)
    """Operators, sessions, the audit log and the event log (relay.store.console)."""
    sessions: Sessions | None = field(default=None)
    """Operators' sign-in and sessions (relay.console)."""
    events: EventLog | None = field(default=None)
    stats: CallStats = field(default_factory=CallStats)
    """This replica's per-agent call statistics (relay.stats), fed by every CRM call."""
    fleet: Fleet | None = field(default=None)
    """The console's view of every agent across replicas (relay.fleet)."""
    changes: ChangeFeed | None = field(default=None)
    """The change feed: events from agents, subscribers, webhooks (relay.changefeed)."""

    def publish(self, kind: str, agent: str | None, data: Mapping[str, Any] | None = None) -> None:
        """Record an event for GET /v1/events and the agent history (relay.events); never
        blocks or raises."""
        if self.events is not None:
            self.events.publish(kind, agent, data)


def relay_state(conn: HTTPConnection) -> RelayState:
    state: RelayState = conn.app.state.relay
    return state
