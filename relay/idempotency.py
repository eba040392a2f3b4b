"""Exactly-once writes at the relay: Idempotency-Key records, replays and their retention.

Every write operation (`Operation.writes`) needs an ``Idempotency-Key`` header. Per API key the
relay keeps the key, a fingerprint of the request (agent, operation and the canonical JSON
body) and the outcome:

- same key, same request, outcome known → the stored response again, with
  ``Idempotent-Replayed: true``;
- same key, another request → 422 ``idempotency_key_mismatch``;
- same key while the first request runs → 409 ``idempotency_in_progress``;
- same key after an unknown outcome (timeout, link lost after the call was sent) → the call is
  forwarded again with the same key, and the agent's journal answers with what the first
  attempt did instead of writing twice.

Rows expire after `RelaySettings.idempotency_retention_s` (7 days by default) and
`IdempotencyPurger` deletes them in the background. Every claim records the replica forwarding
the call (its ``owner``); the purger also marks ``unknown`` every ``in_progress`` row whose
owner is no longer alive, every couple of seconds, so a retry after a replica was killed is
forwarded again at once instead of answering 409 until the row turns stale. See
docs/guarantees.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from relay.cluster.membership import Membership, SoloMembership, default_replica_id
from relay.store import models
from relay.store.idempotency import BeginResult, IdempotencyRepository

log = logging.getLogger("relay.idempotency")

Clock = Callable[[], dt.datetime]

REPLAYED_HEADER = "Idempotent-Replayed"
STALE_MARGIN_S = 30.0
"""An ``in_progress`` row untouched for the longest call timeout plus this long belongs to a
relay that died mid-call; its outcome is unknown and a retry takes it over."""
AGENT_KEY_MAX = 255
"""The longest key a call frame may carry (`protocol.limits.Limits.max_id_length`)."""
ORPHAN_INTERVAL_S = 2.0
"""How often `IdempotencyPurger` looks for writes left in flight by replicas that are gone:
short, because until then a retry of such a write is answered 409."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def fingerprint(agent: str, operation: str, body: bytes) -> str:
    """SHA-256 hex of the agent, the operation and the body as canonical JSON.

    The body is parsed and dumped again with sorted keys, so whitespace and key order do not
    make two requests different. A body orjson cannot parse (it was validated by pydantic, so
    only exotic numbers) is hashed as sent.
    """
    try:
        canonical = orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONDecodeError, orjson.JSONEncodeError, TypeError):
        canonical = body
    digest = hashlib.sha256()
    digest.update(agent.encode())
    digest.update(b"\x00")
    digest.update(operation.encode())
    digest.update(b"\x00")
    digest.update(canonical)
    return digest.hexdigest()


def agent_key(api_key_public_id: str, key: str) -> str:
    """The idempotency key sent to the agent: the caller's key scoped by its API key.

    Two API keys may pick the same key string for different writes to one agent, so the agent
    sees ``{api key public id}:{Idempotency-Key}``. A combination longer than a frame allows is
    sent as ``{public id}:sha256:{hex of the key}`` instead (still stable per key).
    """
    scoped = f"{api_key_public_id}:{key}"
    if len(scoped) <= AGENT_KEY_MAX:
        return scoped
    return f"{api_key_public_id}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"


@dataclass(frozen=True, slots=True)
class Ticket:
    """An owned claim on one key, to settle with `finish`, `unknown` or `release`."""

    api_key_id: str
    key: str


class Idempotency:
    """The relay's idempotency service over `IdempotencyRepository`.

    `owner` is this replica's id (`Membership.replica_id`), written on every row it claims; by
    default a fresh one, which suits a relay that runs alone.
    """

    def __init__(
        self,
        repository: IdempotencyRepository,
        *,
        retention_s: float,
        stale_after_s: float,
        owner: str | None = None,
        clock: Clock = utcnow,
    ) -> None:
        owner = owner or default_replica_id()
        if len(owner) > models.REPLICA_ID_MAX:
            # Refused here rather than by the database on the first write.
            raise ValueError(f"a replica id is at most {models.REPLICA_ID_MAX} characters")
        self.repository = repository
        self.owner = owner
        self._retention = dt.timedelta(seconds=retention_s)
        self._stale_after = dt.timedelta(seconds=stale_after_s)
        self._clock = clock

    async def begin(
        self, api_key_id: str, key: str, agent: str, operation: str, body: bytes
    ) -> tuple[Ticket, BeginResult]:
        now = self._clock()
        result = await self.repository.begin(
            api_key_id=api_key_id,
            key=key,
            agent_name=agent,
            operation=operation,
            fingerprint=fingerprint(agent, operation, body),
            now=now,
            expires_at=now + self._retention,
            stale_before=now - self._stale_after,
            owner=self.owner,
        )
        return Ticket(api_key_id, key), result

    async def finish(self, ticket: Ticket, status: int, content_type: str, body: bytes) -> None:
        """The agent answered: keep the response for replays."""
        now = self._clock()
        await self.repository.finish(
            ticket.api_key_id,
            ticket.key,
            status=status,
            content_type=content_type,
            response=body,
            now=now,
            expires_at=now + self._retention,
            owner=self.owner,
        )

    async def unknown(self, ticket: Ticket) -> None:
        """The call was sent but its outcome is unknown: a retry forwards it again."""
        now = self._clock()
        await self.repository.mark_unknown(
            ticket.api_key_id,
            ticket.key,
            now=now,
            expires_at=now + self._retention,
            owner=self.owner,
        )

    async def release(self, ticket: Ticket) -> None:
        """The call never reached the agent: forget the key so that a retry starts afresh."""
        await self.repository.release(ticket.api_key_id, ticket.key, owner=self.owner)

    async def purge(self) -> int:
        return await self.repository.purge(self._clock())

    async def recover_orphans(self, live: frozenset[str]) -> int:
        """Writes left in flight by replicas not in `live` become ``unknown``.

        Their replica died with the call sent (or was a relay older than the ``owner`` column),
        so nobody will settle them; marked unknown, a retry with the same key is forwarded again
        and the agent's journal answers it with what the first attempt did. This replica is
        always counted as alive: it is the one asking.
        """
        return await self.repository.abandon_orphans(live | {self.owner}, self._clock())


class IdempotencyPurger:
    """Background upkeep of `idempotency_keys`: orphans and expired rows.

    Every `orphan_interval_s` (and once in `start`) it asks `membership` which replicas are
    alive and marks the in-flight writes of the others ``unknown`` (`Idempotency.
    recover_orphans`), so those of a replica killed with -9 can be retried within seconds
    rather than after the stale window; when `membership` cannot tell (None), nothing is
    taken over and the stale window remains the fallback. Every `interval_s` it deletes
    expired rows. Without `membership` the relay is taken to run alone.
    """

    def __init__(
        self,
        service: Idempotency,
        interval_s: float,
        *,
        membership: Membership | None = None,
        orphan_interval_s: float = ORPHAN_INTERVAL_S,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        if orphan_interval_s <= 0:
            raise ValueError("orphan_interval_s must be positive")
        self._service = service
        self._membership = membership or SoloMembership(service.owner)
        self._interval = interval_s
        self._orphan_interval = orphan_interval_s
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self.purged = 0
        self.recovered = 0

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("IdempotencyPurger already started")
        self._stop.clear()
        # Before the relay serves: a retry of a write a dead predecessor left in flight is
        # then forwarded at once instead of answering 409 for the first interval.
        await self.recover_orphans()
        self._task = asyncio.create_task(self._run(), name="idempotency-purger")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            task, self._task = self._task, None
            await task

    async def recover_orphans(self) -> int:
        """One pass of orphan recovery; failures are logged, the next pass tries again."""
        try:
            live = await self._membership.live_replicas()
            if live is None:
                return 0
            recovered = await self._service.recover_orphans(live)
        except Exception as exc:
            # The type only: driver messages may quote statement parameters.
            log.warning("idempotency orphan recovery failed (%s)", type(exc).__name__)
            return 0
        if recovered:
            log.warning(
                "writes left in flight by replicas that are gone are unknown: %d", recovered
            )
        self.recovered += recovered
        return recovered

    async def _purge(self) -> None:
        try:
            self.purged += await self._service.purge()
        except Exception as exc:
            log.warning("idempotency purge failed (%s)", type(exc).__name__)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_purge = loop.time()
        next_orphans = loop.time() + self._orphan_interval
        while not self._stop.is_set():
            if loop.time() >= next_orphans:
                await self.recover_orphans()
                next_orphans = loop.time() + self._orphan_interval
            if loop.time() >= next_purge:
                await self._purge()
                next_purge = loop.time() + self._interval
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, min(next_orphans, next_purge) - loop.time())):
                    await self._stop.wait()
