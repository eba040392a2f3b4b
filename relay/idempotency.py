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
`IdempotencyPurger` deletes them in the background. See docs/guarantees.md.
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

from relay.store.idempotency import BeginResult, IdempotencyRepository

log = logging.getLogger("relay.idempotency")

Clock = Callable[[], dt.datetime]

REPLAYED_HEADER = "Idempotent-Replayed"
STALE_MARGIN_S = 30.0
"""An ``in_progress`` row untouched for the longest call timeout plus this long belongs to a
relay that died mid-call; its outcome is unknown and a retry takes it over."""
AGENT_KEY_MAX = 255
"""The longest key a call frame may carry (`protocol.limits.Limits.max_id_length`)."""


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
    """The relay's idempotency service over `IdempotencyRepository`."""

    def __init__(
        self,
        repository: IdempotencyRepository,
        *,
        retention_s: float,
        stale_after_s: float,
        clock: Clock = utcnow,
    ) -> None:
        self.repository = repository
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
        )

    async def unknown(self, ticket: Ticket) -> None:
        """The call was sent but its outcome is unknown: a retry forwards it again."""
        now = self._clock()
        await self.repository.mark_unknown(
            ticket.api_key_id, ticket.key, now=now, expires_at=now + self._retention
        )

    async def release(self, ticket: Ticket) -> None:
        """The call never reached the agent: forget the key so that a retry starts afresh."""
        await self.repository.release(ticket.api_key_id, ticket.key)

    async def purge(self) -> int:
        return await self.repository.purge(self._clock())

    async def recover(self, started_at: dt.datetime) -> int:
        """At start-up: writes left in flight by a relay that died become ``unknown``.

        With several replicas on one database this also marks calls another live replica has in
        flight; a retry then reaches the agent twice with the same key, and the agent's journal
        answers the second with the first's result (docs/guarantees.md).
        """
        return await self.repository.abandon_in_progress(started_at, self._clock())


class IdempotencyPurger:
    """Deletes expired idempotency rows every `interval_s` seconds, in the background."""

    def __init__(self, service: Idempotency, interval_s: float) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self._service = service
        self._interval = interval_s
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self.purged = 0

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("IdempotencyPurger already started")
        self._stop.clear()
        self._task = asyncio.create_task(self._run(), name="idempotency-purger")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            task, self._task = self._task, None
            await task

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.purged += await self._service.purge()
            except Exception as exc:
                # The type only: driver messages may quote statement parameters.
                log.warning("idempotency purge failed (%s)", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._stop.wait()
