"""Everything a request handler needs, built once per app in the lifespan (never at import)."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import HTTPConnection

from relay.auth import ApiKeyCache
from relay.calllog import CallLog
from relay.cluster.node import ClusterNode
from relay.hub import Hub
from relay.idempotency import Idempotency
from relay.jobs import JobService
from relay.settings import RelaySettings
from relay.store import Store


@dataclass
class RelayState:
    settings: RelaySettings
    store: Store
    hub: Hub
    keys: ApiKeyCache
    calllog: CallLog
    idempotency: Idempotency
    version: str
    replica_id: str = ""
    cluster: ClusterNode | None = None
    """Routing across replicas; None when this relay runs alone (no ``redis_url``)."""
    draining: bool = field(default=False)
    jobs: JobService | None = field(default=None)


def relay_state(conn: HTTPConnection) -> RelayState:
    state: RelayState = conn.app.state.relay
    return state
