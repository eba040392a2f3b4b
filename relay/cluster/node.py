"""`ClusterNode`: this replica's membership of a cluster sharing one Redis.

What the rest of the relay asks of the cluster, in one place: which other replica can take a
call for an agent (`route`), what happened to this replica's agent connections
(`agent_connected`, `agent_disconnected`), a job waiting for an agent held elsewhere
(`announce_job`), which replicas are alive (`live_replicas`, for the store's recovery of
orphaned rows) and whether Redis is reachable (`/readyz`).

Redis down is a degraded state, not an outage: the replica keeps serving the agents it holds
itself, calls for agents held elsewhere answer 503 agent_offline, and everything is published
again when Redis answers (`relay.cluster.presence`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from relay.cluster.bus import CallBus, RemoteLink
from relay.cluster.presence import Presence
from relay.hub import AgentLink, Hub
from relay.settings import RelaySettings

log = logging.getLogger("relay.cluster")

_background: set[asyncio.Task[None]] = set()


class ClusterNode:
    def __init__(
        self, settings: RelaySettings, hub: Hub, replica_id: str, *, on_job: Callable[[str], None]
    ) -> None:
        assert settings.redis_url is not None
        url = settings.redis_url.get_secret_value()
        common: dict[str, Any] = {"socket_connect_timeout": 2.0, "socket_keepalive": True}
        # Commands must not hang a call when Redis stops answering; the subscriber blocks on
        # reads by design and is checked by its own health pings instead.
        self._redis = Redis.from_url(url, socket_timeout=2.0, **common)
        self._subscriber = Redis.from_url(url, health_check_interval=5, **common)
        self._hub = hub
        self._routes: dict[str, list[str]] = {}
        self.replica_id = replica_id
        self.bus = CallBus(
            self._redis,
            self._subscriber,
            prefix=settings.redis_prefix,
            replica_id=replica_id,
            hub=hub,
            on_job=on_job,
        )
        self.presence = Presence(
            self._redis,
            prefix=settings.redis_prefix,
            replica_id=replica_id,
            connections_of=hub.count,
            moving=hub.is_moving,
            held_agents=hub.agents,
            ttl_s=settings.presence_ttl_s,
            refresh_s=settings.presence_refresh_s,
            on_tick=self._renewed,
        )

    async def start(self) -> None:
        await self.bus.start()
        await self.presence.start()

    async def stop(self) -> None:
        await self.presence.stop()
        await self.bus.stop()
        await self._redis.aclose()
        await self._subscriber.aclose()

    # Membership

    async def live_replicas(self) -> frozenset[str] | None:
        return await self.presence.live_replicas()

    @property
    def healthy(self) -> bool:
        return self.presence.healthy and self.bus.subscribed.is_set()

    def describe(self) -> dict[str, Any]:
        return {
            "replica": self.replica_id,
            "redis": "ok" if self.healthy else f"unreachable {self.presence.last_error}".strip(),
        }

    # The operations console (relay/fleet.py)

    def publish_view(self, report: Callable[[], bytes]) -> None:
        """Write ``report()`` as this replica's fleet view at every presence renewal."""
        self.presence.report = report

    def view_changed(self) -> None:
        self.presence.refresh()

    async def fleet_views(self) -> dict[str, bytes] | None:
        """The other live replicas' fleet views; None when Redis cannot say."""
        try:
            return await self.presence.views()
        except (RedisError, OSError):
            return None

    # Routing

    async def route(
        self, agent: str, tried: frozenset[str] = frozenset()
    ) -> tuple[RemoteLink | None, bool]:
        """A connection of `agent` at another live replica, not one in `tried` (None if none,
        or if Redis cannot say: this replica then serves only what it holds), and whether a
        replica is moving the agent (it will reappear somewhere within moments).

        Holders are remembered until the next presence renewal, which saves a Redis round trip
        per call. A remembered holder that lost the agent meanwhile answers "not delivered",
        the call path tries again with it in `tried`, and that asks Redis afresh.
        """
        holders = self._routes.get(agent)
        if holders is not None:
            candidates = [r for r in holders if r not in tried]
            if candidates:
                return self._pick(candidates, agent), False
        try:
            holders, moving = await self.presence.holders(agent)
        except (RedisError, OSError):
            return None, False
        if holders:  # never remember "nowhere": an agent connecting must be found at once
            self._routes[agent] = holders
        candidates = [r for r in holders if r not in tried]
        return (self._pick(candidates, agent) if candidates else None), moving

    def _pick(self, holders: list[str], agent: str) -> RemoteLink:
        # Spreading load, not security: any holder will do.
        return self.bus.link(random.choice(holders), agent)  # noqa: S311

    def _renewed(self, live: frozenset[str]) -> None:
        self._routes.clear()
        self.bus.replicas_alive(live)

    # Events of this replica's connections

    def agent_connected(self, link: AgentLink) -> None:
        self.presence.agent_changed(link.agent)
        if link.hello.instance_id:
            self._spawn(
                self.bus.announce_replacement(
                    link.agent, link.hello.instance_id, link.hello.slot, link.session_id
                )
            )

    def agent_disconnected(self, link: AgentLink) -> None:
        self.presence.agent_changed(link.agent)

    def disconnect(self, agent: str, session_id: str) -> None:
        """Close a connection wherever it is held (an operator's disconnect)."""
        self._hub.disconnect(agent, session_id)
        self._spawn(self.bus.announce_disconnect(agent, session_id))

    def revoked(self, agent: str, token_public_id: str | None) -> None:
        """Close, on every replica, the connections of a revoked token (None: agent)."""
        self._hub.revoke(agent, token_public_id)
        self._spawn(self.bus.announce_revoked(agent, token_public_id))

    def announce_job(self, agent: str) -> None:
        if not self._hub.is_online(agent):
            self._spawn(self.bus.announce_job(agent))

    @staticmethod
    def _spawn(coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        _background.add(task)
        task.add_done_callback(_background.discard)


async def wait_until_ready(node: ClusterNode, timeout_s: float) -> bool:
    """At start-up: give Redis a moment, but never refuse to start without it."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await node.bus.subscribed.wait()
            return True
    return False
