"""Presence in Redis: which replicas are alive and which replica holds which agent.

Three kinds of keys under the cluster's prefix:

- ``{prefix}:replicas``, a sorted set: member = replica id, score = the instant (Redis server
  clock, ms) its presence lapses. Every replica renews its own score every
  `presence_refresh_s`; one that stops (killed, cut off) is dead `presence_ttl_s` later. Redis's
  clock is the only clock involved, so replicas need not agree on the time.
- ``{prefix}:agent:{name}``, a hash: field = replica id, value = how many connections of that
  agent the replica holds. Written when a replica's first connection of the agent opens and
  deleted when its last one closes; 0 while the replica is moving the agent away (it sent
  goaway while shutting down), so that every replica knows to wait for the agent to reappear
  instead of answering 503. Entries of dead replicas are dropped by the next lookup.

- ``{prefix}:fleet:{replica}``, a string with the TTL of presence: the replica's view for the
  operations console (its connections, their health, its call statistics; `report`, built by
  `relay.fleet`), rewritten at every renewal, so a dead replica's view lapses with it.

Redis keeps nothing on disk in a typical deployment. When it restarts, every replica notices on
its next renewal (its own member was missing) and writes all of its agents again, so routing
heals within one refresh interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger("relay.cluster")

# KEYS[1] replicas zset; ARGV[1] replica id, ARGV[2] ttl ms. Returns 1 if the member was new.
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
"""

# KEYS[1] replicas zset. Returns the live replica ids.
_LIVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
"""

# KEYS[1] replicas zset, KEYS[2] the agent's hash. Returns [replica, count, ...] of the live
# holders, dropping dead ones.
_HOLDERS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local held = redis.call('HGETALL', KEYS[2])
local live = {}
for i = 1, #held, 2 do
  local until_ms = redis.call('ZSCORE', KEYS[1], held[i])
  if until_ms and tonumber(until_ms) > now then
    table.insert(live, held[i])
    table.insert(live, held[i + 1])
  else
    redis.call('HDEL', KEYS[2], held[i])
  end
end
return live
"""


class Presence:
    """This replica's presence, renewed in the background; answers `Membership` questions.

    `connections_of` says how many live connections this replica holds per agent (the hub); it
    is read when an agent is marked changed and on a full resynchronisation.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str,
        replica_id: str,
        connections_of: Callable[[str], int],
        moving: Callable[[str], bool],
        held_agents: Callable[[], set[str]],
        ttl_s: float,
        refresh_s: float,
        on_tick: Callable[[frozenset[str]], None] | None = None,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._replica_id = replica_id
        self._connections_of = connections_of
        self._moving = moving
        self._held_agents = held_agents
        self._ttl_ms = int(ttl_s * 1000)
        self._refresh_s = min(refresh_s, ttl_s / 2)
        self._on_tick = on_tick
        self.report: Callable[[], bytes] | None = None
        """This replica's fleet view, written at every renewal when set."""
        self._replicas_key = f"{prefix}:replicas"
        self._renew = redis.register_script(_RENEW)
        self._live = redis.register_script(_LIVE)
        self._holders = redis.register_script(_HOLDERS)
        self._changed: set[str] = set()
        self._resync = True
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.healthy = False
        self.last_renewal = 0.0
        self.last_error = ""

    @property
    def replica_id(self) -> str:
        return self._replica_id

    def agent_key(self, agent: str) -> str:
        return f"{self._prefix}:agent:{agent}"

    def fleet_key(self, replica: str) -> str:
        return f"{self._prefix}:fleet:{replica}"

    # Membership

    async def live_replicas(self) -> frozenset[str] | None:
        try:
            ids = await self._live(keys=[self._replicas_key])
        except (RedisError, OSError):
            return None
        return frozenset(_text(i) for i in ids)

    async def holders(self, agent: str) -> tuple[list[str], bool]:
        """Live replicas other than this one that hold a connection of `agent`, and whether
        one of them is moving it (sent it goaway: it reconnects somewhere within moments).

        Raises `RedisError` or `OSError` when Redis cannot be asked.
        """
        flat = await self._holders(keys=[self._replicas_key, self.agent_key(agent)])
        holders, moving = [], False
        for replica, count in zip(flat[::2], flat[1::2], strict=True):
            if _text(replica) == self._replica_id:
                continue
            if int(count) > 0:
                holders.append(_text(replica))
            else:
                moving = True
        return holders, moving

    async def views(self) -> dict[str, bytes]:
        """The fleet views of the other live replicas, by replica id.

        Raises `RedisError` or `OSError` when Redis cannot be asked.
        """
        live = await self._live(keys=[self._replicas_key])
        others = [r for r in map(_text, live) if r != self._replica_id]
        if not others:
            return {}
        values = await self._redis.mget([self.fleet_key(r) for r in others])
        return {r: v for r, v in zip(others, values, strict=True) if isinstance(v, bytes)}

    # Life cycle

    def refresh(self) -> None:
        """Something in this replica's fleet view changed: renew (and write it) soon."""
        self._wake.set()

    def agent_changed(self, agent: str) -> None:
        """A connection of `agent` opened or closed here: publish the new count soon."""
        self._changed.add(agent)
        self._wake.set()

    async def start(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._sync()  # a Redis down at start-up is retried by the loop
        self._task = asyncio.create_task(self._run(), name="cluster-presence")

    async def stop(self) -> None:
        """Leave at once, so that nobody routes to this replica while it shuts down."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zrem(self._replicas_key, self._replica_id)
                pipe.delete(self.fleet_key(self._replica_id))
                for agent in self._held_agents():
                    pipe.hdel(self.agent_key(agent), self._replica_id)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("could not leave the cluster cleanly (%s)", type(exc).__name__)

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._refresh_s):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self._sync()
            except (RedisError, OSError) as exc:
                self._lost(exc)

    async def _sync(self) -> None:
        """Renew this replica's presence and publish the agents that changed (all, after a
        gap or when Redis lost our entry)."""
        changed, self._changed = self._changed, set()
        try:
            new = await self._renew(
                keys=[self._replicas_key], args=[self._replica_id, self._ttl_ms]
            )
            if int(new) == 1 or self._resync:
                changed |= self._held_agents()
                if int(new) == 1 and self.last_renewal:
                    log.warning("presence was missing in Redis: publishing all agents again")
            await self._publish(changed)
            view = self._view()
            if view is not None:
                await self._redis.set(self.fleet_key(self._replica_id), view, px=self._ttl_ms)
        except BaseException:
            self._changed |= changed
            raise
        self._resync = False
        if not self.healthy:
            log.info("cluster presence up", extra={"replica": self._replica_id})
        self.healthy = True
        self.last_renewal = time.monotonic()
        self.last_error = ""
        if self._on_tick is not None:
            live = await self.live_replicas()
            if live is not None:
                self._on_tick(live)

    async def _publish(self, agents: set[str]) -> None:
        if not agents:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for agent in agents:
                count = self._connections_of(agent)
                if count or self._moving(agent):
                    pipe.hset(self.agent_key(agent), self._replica_id, count)
                else:
                    pipe.hdel(self.agent_key(agent), self._replica_id)
            await pipe.execute()

    def _view(self) -> bytes | None:
        """`report`'s view; a failure there must not stop presence, which routing needs."""
        if self.report is None:
            return None
        try:
            return self.report()
        except Exception:
            log.exception("could not build this replica's fleet view")
            return None

    def _lost(self, exc: BaseException) -> None:
        if self.healthy:
            log.warning("Redis unreachable: serving only this replica's agents (%s)", exc)
        self.healthy = False
        self._resync = True
        self.last_error = type(exc).__name__


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
