"""`ChangeStore`: the change events of every agent, their cursors, and their retention.

Cursors. A subscriber reads "every event after cursor N", so a cursor must only ever be handed
out in the order the events become visible. On PostgreSQL an autoincrement id is not: ids are
taken at insert and become visible at commit, so a reader can see 12 before a slower
transaction commits 11, move past it and never see 11. The event log (relay/events.py) copes
with that by remembering holes and looking again; here, where a missed event is a lost stock
update, the cursor is allocated instead under a row lock: each agent has one `change_cursors`
row, and the transaction that stores events first advances it with an UPDATE (which locks the
row until commit) and numbers its events from the value it read. A second transaction storing
events for the same agent waits for that lock, so it gets larger cursors *and* commits later:
whoever sees cursor N can already see every cursor below it. SQLite has one writer at a time,
which gives the same order. The lock is per agent, so agents never wait for each other, and
the same lock makes the duplicate check (the agent sends an event again until it is acked,
perhaps on two replicas at once) free of races: rows already stored for (agent, stream, seq)
are looked up after the lock is held and skipped.

Retention deletes a prefix of each agent's cursors and records the last one deleted
(`purged_through`), so a subscriber asking for events after an older cursor can be told it
missed some (`cursor_expired`) rather than silently skipping them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from relay.store import models

Clock = Callable[[], dt.datetime]

_E = models.change_events
_C = models.change_cursors


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class IncomingChange:
    """A validated change from an agent's ``change`` event, not stored yet."""

    stream: str
    seq: int
    type: str
    occurred_at: dt.datetime
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ChangeRecord:
    agent: str
    cursor: int
    type: str
    occurred_at: dt.datetime
    stored_at: dt.datetime
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class FeedBounds:
    """Where an agent's feed stands: the newest cursor given out, and the newest deleted."""

    last_cursor: int = 0
    purged_through: int = 0


def _record(row: Any) -> ChangeRecord:
    return ChangeRecord(
        agent=row.agent_name,
        cursor=int(row.cursor),
        type=row.type,
        occurred_at=row.occurred_at,
        stored_at=row.stored_at,
        data=row.data,
    )


class ChangeStore:
    def __init__(self, engine: AsyncEngine, *, clock: Clock = utcnow) -> None:
        self._engine = engine
        self._clock = clock

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    def now(self) -> dt.datetime:
        return self._clock()

    # Writing

    async def append(self, agent: str, changes: Sequence[IncomingChange]) -> list[ChangeRecord]:
        """Store the changes not stored yet, in order, in one transaction; returns those stored
        now (an empty list when all were repeats)."""
        async with self._engine.begin() as connection:
            last = await self._lock_counter(connection, agent)
            fresh = await self._unseen(connection, agent, changes)
            if not fresh:
                return []
            now = self._clock()
            records = [
                ChangeRecord(
                    agent=agent,
                    cursor=last + i,
                    type=change.type,
                    occurred_at=change.occurred_at,
                    stored_at=now,
                    data=dict(change.data),
                )
                for i, change in enumerate(fresh, start=1)
            ]
            await connection.execute(
                _E.insert(),
                [
                    {
                        "agent_name": agent,
                        "cursor": record.cursor,
                        "stream": change.stream,
                        "seq": change.seq,
                        "type": record.type,
                        "occurred_at": record.occurred_at,
                        "stored_at": now,
                        "data": record.data,
                    }
                    for record, change in zip(records, fresh, strict=True)
                ],
            )
            await connection.execute(
                _C.update().where(_C.c.agent_name == agent).values(last_cursor=records[-1].cursor)
            )
        return records

    @staticmethod
    async def _lock_counter(connection: AsyncConnection, agent: str) -> int:
        """Lock the agent's counter row (creating it on first use); its last cursor."""
        touch = (
            _C.update()
            .where(_C.c.agent_name == agent)
            .values(last_cursor=_C.c.last_cursor)
            .returning(_C.c.last_cursor)
        )
        last = (await connection.execute(touch)).scalar_one_or_none()
        if last is None:
            insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
            await connection.execute(
                insert(_C)
                .values(agent_name=agent, last_cursor=0, purged_through=0)
                .on_conflict_do_nothing()
            )
            last = (await connection.execute(touch)).scalar_one()
        return int(last)

    @staticmethod
    async def _unseen(
        connection: AsyncConnection, agent: str, changes: Sequence[IncomingChange]
    ) -> list[IncomingChange]:
        """The changes whose (stream, seq) is neither stored nor earlier in `changes`."""
        keys = list(dict.fromkeys((c.stream, c.seq) for c in changes))
        stored = {
            (row.stream, int(row.seq))
            for row in await connection.execute(
                sa.select(_E.c.stream, _E.c.seq).where(
                    _E.c.agent_name == agent, sa.tuple_(_E.c.stream, _E.c.seq).in_(keys)
                )
            )
        }
        fresh: list[IncomingChange] = []
        for change in changes:
            key = (change.stream, change.seq)
            if key not in stored:
                stored.add(key)
                fresh.append(change)
        return fresh

    # Reading

    async def page(
        self,
        agent: str,
        after: int,
        *,
        types: Collection[str],
        limit: int,
        through: int | None = None,
    ) -> list[ChangeRecord]:
        """The agent's events of `types` after cursor `after` (up to `through`), oldest first."""
        if not types:
            return []
        query = (
            sa.select(_E)
            .where(_E.c.agent_name == agent, _E.c.cursor > after, _E.c.type.in_(sorted(types)))
            .order_by(_E.c.cursor)
            .limit(limit)
        )
        if through is not None:
            query = query.where(_E.c.cursor <= through)
        async with self._engine.connect() as connection:
            return [_record(row) for row in await connection.execute(query)]

    async def bounds(self, agent: str) -> FeedBounds:
        query = sa.select(_C.c.last_cursor, _C.c.purged_through).where(_C.c.agent_name == agent)
        async with self._engine.connect() as connection:
            row = (await connection.execute(query)).one_or_none()
        return FeedBounds() if row is None else FeedBounds(int(row[0]), int(row[1]))

    async def last_cursors(self) -> dict[str, int]:
        """Every agent's newest cursor: one small read that tells which feeds moved."""
        async with self._engine.connect() as connection:
            rows = await connection.execute(sa.select(_C.c.agent_name, _C.c.last_cursor))
            return {row.agent_name: int(row.last_cursor) for row in rows}

    # Retention

    async def purge(self, stored_before: dt.datetime) -> int:
        """Delete, per agent, the events up to the newest one stored before `stored_before`
        (a prefix of its cursors), and remember where the kept ones start."""
        deleted = 0
        async with self._engine.begin() as connection:
            ends = await connection.execute(
                sa.select(_E.c.agent_name, sa.func.max(_E.c.cursor))
                .where(_E.c.stored_at < stored_before)
                .group_by(_E.c.agent_name)
            )
            for agent, through in ends.all():
                result = await connection.execute(
                    _E.delete().where(_E.c.agent_name == agent, _E.c.cursor <= through)
                )
                deleted += int(result.rowcount)
                await connection.execute(
                    _C.update()
                    .where(_C.c.agent_name == agent, _C.c.purged_through < through)
                    .values(purged_through=through)
                )
        return deleted
