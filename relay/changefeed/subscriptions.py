"""`SubscriptionStore`: webhook subscriptions to an agent's change feed, and their progress.

A subscription belongs to the API key that made it (other keys never see it) and has a
`position`: every event up to it was delivered or given up on. The sender moves it forward one
event at a time, so deliveries go out in cursor order and a restarted relay carries on from the
stored position (at most the event in flight is sent again).

Several replicas may run senders on one database. A sender takes a subscription with a lease
(`runner`, `lease_until`): one conditional UPDATE that succeeds only when nobody else holds an
unexpired lease, and every later write is conditional on still holding it, so two replicas
never deliver the same subscription at once. A replica that dies leaves its leases to expire.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from relay.store import models

Clock = Callable[[], dt.datetime]

_S = models.change_subscriptions
_C = models.change_cursors


def new_subscription_id() -> str:
    """``sub_`` and 24 URL-safe random characters: unguessable, unique."""
    return "sub_" + secrets.token_urlsafe(18)


@dataclass(frozen=True, slots=True)
class SubscriptionRecord:
    id: int
    public_id: str
    api_key_id: str
    agent: str
    url: str
    types: tuple[str, ...] | None
    created_at: dt.datetime
    position: int
    delivered: int
    failed: int
    last_delivered_cursor: int | None
    last_delivered_at: dt.datetime | None
    last_failed_cursor: int | None
    attempts: int
    last_attempt_at: dt.datetime | None
    next_attempt_at: dt.datetime | None
    last_status: int | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class Lease:
    """A subscription taken for delivery, with its agent's newest cursor when it was taken."""

    subscription: SubscriptionRecord
    last_cursor: int


def _subscription(row: Any) -> SubscriptionRecord:
    return SubscriptionRecord(
        id=int(row.id),
        public_id=row.public_id,
        api_key_id=row.api_key_id,
        agent=row.agent_name,
        url=row.url,
        types=None if row.types is None else tuple(row.types),
        created_at=row.created_at,
        position=int(row.position),
        delivered=int(row.delivered),
        failed=int(row.failed),
        last_delivered_cursor=row.last_delivered_cursor,
        last_delivered_at=row.last_delivered_at,
        last_failed_cursor=row.last_failed_cursor,
        attempts=int(row.attempts),
        last_attempt_at=row.last_attempt_at,
        next_attempt_at=row.next_attempt_at,
        last_status=row.last_status,
        last_error=row.last_error,
    )


class SubscriptionStore:
    def __init__(self, engine: AsyncEngine, *, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock

    def now(self) -> dt.datetime:
        return self._clock()

    # What the API does

    async def create(
        self,
        *,
        api_key_id: str,
        agent: str,
        url: str,
        types: tuple[str, ...] | None,
        after: int | None,
    ) -> SubscriptionRecord:
        """A new subscription starting after cursor `after`, or after the newest event now."""
        async with self._engine.begin() as connection:
            if after is None:
                newest = await connection.scalar(
                    sa.select(_C.c.last_cursor).where(_C.c.agent_name == agent)
                )
                after = int(newest or 0)
            result = await connection.execute(
                _S.insert().values(
                    public_id=new_subscription_id(),
                    api_key_id=api_key_id,
                    agent_name=agent,
                    url=url,
                    types=None if types is None else list(types),
                    created_at=self._clock(),
                    position=after,
                    delivered=0,
                    failed=0,
                    attempts=0,
                )
            )
            assert result.inserted_primary_key is not None
            row = (
                await connection.execute(
                    sa.select(_S).where(_S.c.id == result.inserted_primary_key[0])
                )
            ).one()
        return _subscription(row)

    async def list_for(self, api_key_id: str, agent: str) -> list[SubscriptionRecord]:
        query = (
            sa.select(_S)
            .where(_S.c.api_key_id == api_key_id, _S.c.agent_name == agent)
            .order_by(_S.c.id)
        )
        async with self._engine.connect() as connection:
            return [_subscription(row) for row in await connection.execute(query)]

    async def get(self, public_id: str, api_key_id: str, agent: str) -> SubscriptionRecord | None:
        query = sa.select(_S).where(
            _S.c.public_id == public_id, _S.c.api_key_id == api_key_id, _S.c.agent_name == agent
        )
        async with self._engine.connect() as connection:
            row = (await connection.execute(query)).one_or_none()
        return None if row is None else _subscription(row)

    async def delete(self, public_id: str, api_key_id: str, agent: str) -> bool:
        async with self._engine.begin() as connection:
            result = await connection.execute(
                _S.delete().where(
                    _S.c.public_id == public_id,
                    _S.c.api_key_id == api_key_id,
                    _S.c.agent_name == agent,
                )
            )
        return int(result.rowcount) == 1

    # What the sender does

    async def lease_due(self, runner: str, lease_s: float, limit: int = 50) -> list[Lease]:
        """Take up to `limit` subscriptions with events after their position and no attempt
        scheduled later, that no other runner holds."""
        now = self._clock()
        newest = (
            sa.select(_C.c.last_cursor).where(_C.c.agent_name == _S.c.agent_name).scalar_subquery()
        )
        free = sa.or_(_S.c.lease_until.is_(None), _S.c.lease_until < now, _S.c.runner == runner)
        due = sa.or_(_S.c.next_attempt_at.is_(None), _S.c.next_attempt_at <= now)
        candidates = (
            sa.select(_S.c.id, newest.label("last_cursor"))
            .where(free, due, _S.c.position < newest)
            .order_by(_S.c.next_attempt_at, _S.c.id)
            .limit(limit)
        )
        leases: list[Lease] = []
        async with self._engine.begin() as connection:
            for sub_id, last_cursor in (await connection.execute(candidates)).all():
                taken = await connection.execute(
                    _S.update()
                    .where(_S.c.id == sub_id, free)
                    .values(runner=runner, lease_until=now + dt.timedelta(seconds=lease_s))
                )
                if taken.rowcount == 1:
                    row = (await connection.execute(sa.select(_S).where(_S.c.id == sub_id))).one()
                    leases.append(Lease(_subscription(row), int(last_cursor)))
        return leases

    async def advance(
        self,
        sub_id: int,
        runner: str,
        *,
        position: int,
        delivered: bool,
        status: int | None = None,
        lease_s: float,
    ) -> bool:
        """The event at `position` was delivered (or, `delivered` False, there was nothing to
        deliver up to it); False when the lease was lost (the subscription may be gone)."""
        now = self._clock()
        values: dict[str, Any] = {
            "position": position,
            "attempts": 0,
            "next_attempt_at": None,
            "lease_until": now + dt.timedelta(seconds=lease_s),
        }
        if delivered:
            values |= {
                "delivered": _S.c.delivered + 1,
                "last_delivered_cursor": position,
                "last_delivered_at": now,
                "last_attempt_at": now,
                "last_status": status,
                "last_error": None,
            }
        return await self._update_held(sub_id, runner, values)

    async def failed_attempt(
        self,
        sub_id: int,
        runner: str,
        *,
        cursor: int,
        status: int | None,
        error: str,
        next_attempt_at: dt.datetime | None,
    ) -> bool:
        """An attempt to deliver the event at `cursor` failed; with no `next_attempt_at` the
        event is given up on (counted, remembered) and the position moves past it."""
        now = self._clock()
        values: dict[str, Any] = {
            "last_attempt_at": now,
            "last_status": status,
            "last_error": error[: models.ERROR_MESSAGE_MAX],
            "runner": None,
            "lease_until": None,
        }
        if next_attempt_at is None:
            values |= {
                "position": cursor,
                "attempts": 0,
                "next_attempt_at": None,
                "failed": _S.c.failed + 1,
                "last_failed_cursor": cursor,
            }
        else:
            values |= {"attempts": _S.c.attempts + 1, "next_attempt_at": next_attempt_at}
        return await self._update_held(sub_id, runner, values)

    async def blocked(self, sub_id: int, runner: str, *, error: str, retry_at: dt.datetime) -> None:
        """Nothing can be delivered now (the key was revoked or lost the agent): say why, and
        look again at `retry_at` without moving the position."""
        await self._update_held(
            sub_id,
            runner,
            {
                "last_error": error[: models.ERROR_MESSAGE_MAX],
                "next_attempt_at": retry_at,
                "runner": None,
                "lease_until": None,
            },
        )

    async def release(self, sub_id: int, runner: str) -> None:
        await self._update_held(sub_id, runner, {"runner": None, "lease_until": None})

    async def release_all(self, runner: str) -> None:
        """Hand back every lease (a relay stopping), so a restart resumes at once."""
        async with self._engine.begin() as connection:
            await connection.execute(
                _S.update().where(_S.c.runner == runner).values(runner=None, lease_until=None)
            )

    async def _update_held(self, sub_id: int, runner: str, values: dict[str, Any]) -> bool:
        async with self._engine.begin() as connection:
            result = await connection.execute(
                _S.update().where(_S.c.id == sub_id, _S.c.runner == runner).values(values)
            )
        return int(result.rowcount) == 1
