"""`FleetStore`: what the console reads from the database about agents.

Read-only and separate from `Store`, whose methods serve the call path and the CLI: the
console's queries (the call log joined with key names, errors grouped by code, waiting jobs
counted per agent) are heavier, run only when an operator looks, and never on the hot path.
Each is one statement over the existing indexes (``call_log (agent_name, at)``, ``jobs
(agent_name, state, id)``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from relay.store import models
from relay.store.jobs import PENDING, JobRecord


@dataclass(frozen=True, slots=True)
class LoggedCall:
    id: int
    at: dt.datetime
    operation: str
    api_key_id: str | None
    api_key_name: str | None
    status: int
    code: str | None
    duration_ms: float
    document: str | None
    request_id: str


@dataclass(frozen=True, slots=True)
class ErrorGroup:
    code: str
    count: int
    last_at: dt.datetime


@dataclass(frozen=True, slots=True)
class TokenInfo:
    public_id: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None


class FleetStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def waiting_jobs(self) -> dict[str, int]:
        """Pending jobs per agent (agents without any are absent)."""
        jobs = models.jobs
        query = (
            sa.select(jobs.c.agent_name, sa.func.count())
            .where(jobs.c.state == PENDING)
            .group_by(jobs.c.agent_name)
        )
        async with self._engine.connect() as connection:
            return {name: int(count) for name, count in await connection.execute(query)}

    async def calls(self, agent: str, *, limit: int, before: int | None = None) -> list[LoggedCall]:
        """The agent's logged calls, newest first, with the name of the key that made each."""
        log, keys = models.call_log, models.api_keys
        query = (
            sa.select(
                log.c.id,
                log.c.at,
                log.c.operation,
                log.c.api_key_id,
                keys.c.name.label("api_key_name"),
                log.c.status,
                log.c.code,
                log.c.duration_ms,
                log.c.document,
                log.c.request_id,
            )
            .select_from(log.outerjoin(keys, keys.c.public_id == log.c.api_key_id))
            .where(log.c.agent_name == agent)
            .order_by(log.c.id.desc())
            .limit(limit)
        )
        if before is not None:
            query = query.where(log.c.id < before)
        async with self._engine.connect() as connection:
            return [LoggedCall(**row._mapping) for row in await connection.execute(query)]

    async def errors(self, agent: str, since: dt.datetime) -> list[ErrorGroup]:
        """The agent's failed calls since ``since`` by code, most frequent first."""
        log = models.call_log
        count = sa.func.count()
        last_at = sa.func.max(log.c.at, type_=models.UTCDateTime())
        query = (
            sa.select(log.c.code, count, last_at)
            .where(log.c.agent_name == agent, log.c.at >= since, log.c.code.is_not(None))
            .group_by(log.c.code)
            .order_by(count.desc(), log.c.code)
        )
        async with self._engine.connect() as connection:
            rows = await connection.execute(query)
            return [ErrorGroup(code, int(n), last) for code, n, last in rows]

    async def tokens(self, agent: str) -> list[TokenInfo]:
        tokens, agents = models.agent_tokens, models.agents
        query = (
            sa.select(
                tokens.c.public_id, tokens.c.created_at, tokens.c.revoked_at, tokens.c.last_used_at
            )
            .join(agents, agents.c.id == tokens.c.agent_id)
            .where(agents.c.name == agent)
            .order_by(tokens.c.id)
        )
        async with self._engine.connect() as connection:
            return [TokenInfo(**row._mapping) for row in await connection.execute(query)]

    async def jobs(self, agent: str, *, state: str | None, limit: int) -> list[JobRecord]:
        """The agent's jobs of every API key, newest first."""
        jobs = models.jobs
        query = sa.select(jobs).where(jobs.c.agent_name == agent)
        if state is not None:
            query = query.where(jobs.c.state == state)
        query = query.order_by(jobs.c.id.desc()).limit(limit)
        async with self._engine.connect() as connection:
            return [JobRecord(**row._mapping) for row in await connection.execute(query)]
