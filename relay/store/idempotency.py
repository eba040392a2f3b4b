"""`IdempotencyRepository`: the `idempotency_keys` table, one short transaction per method.

A row is claimed by `begin`, atomically on SQLite and PostgreSQL: an ``INSERT … ON CONFLICT DO
NOTHING`` decides which of any number of concurrent requests owns a new key, and a
compare-and-set ``UPDATE`` (on the state and ``updated_at`` the caller saw) decides which one
takes over a row whose outcome is unknown, whose owner died (stale ``in_progress``) or which
has expired. Exactly one caller gets `Claim.STARTED` or `Claim.RESUMED`; the others see the row.

Every claim records its ``owner``, the replica forwarding the call. With several replicas on
one database that is how a row left ``in_progress`` by a dead replica is told apart from one a
live replica is still forwarding (`abandon_orphans`), and how a replica whose row was taken
over in the meantime is kept from settling or deleting the new owner's claim.

Rows keep no request body: only a fingerprint and, for a definite outcome, the response to
replay (status, content type, body).
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from relay.store import models

_table = models.idempotency_keys


class IdempotencyState(enum.StrEnum):
    IN_PROGRESS = "in_progress"
    DONE = "done"
    UNKNOWN = "unknown"
    """The call reached the agent but its outcome never came back (timeout, link lost)."""


class Claim(enum.Enum):
    """What `IdempotencyRepository.begin` decided for one request."""

    STARTED = "started"
    """A new key: this request owns it and must forward the call."""
    RESUMED = "resumed"
    """An unknown, stale or expired row taken over: this request owns it and must forward."""
    IN_PROGRESS = "in_progress"
    """Another request owns the key and is still running."""
    MISMATCH = "mismatch"
    """The key was used with a different request (agent, operation or body)."""
    REPLAY = "replay"
    """The key's outcome is known: answer with the stored response."""


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    api_key_id: str
    key: str
    agent_name: str
    operation: str
    fingerprint: str
    state: IdempotencyState
    status: int | None
    content_type: str | None
    response: bytes | None
    created_at: dt.datetime
    updated_at: dt.datetime
    expires_at: dt.datetime
    owner: str | None = None


@dataclass(frozen=True, slots=True)
class BeginResult:
    claim: Claim
    record: IdempotencyRecord | None = None
    """The row as seen (for REPLAY, IN_PROGRESS, MISMATCH), or None for an owned claim."""

    @property
    def owned(self) -> bool:
        return self.claim in (Claim.STARTED, Claim.RESUMED)


_COLUMNS = (
    _table.c.id,
    _table.c.api_key_id,
    _table.c.key,
    _table.c.agent_name,
    _table.c.operation,
    _table.c.fingerprint,
    _table.c.state,
    _table.c.status,
    _table.c.content_type,
    _table.c.response,
    _table.c.created_at,
    _table.c.updated_at,
    _table.c.expires_at,
    _table.c.owner,
)

_MAX_ATTEMPTS = 5


def _record(row: Any) -> IdempotencyRecord:
    return IdempotencyRecord(
        api_key_id=row.api_key_id,
        key=row.key,
        agent_name=row.agent_name,
        operation=row.operation,
        fingerprint=row.fingerprint,
        state=IdempotencyState(row.state),
        status=row.status,
        content_type=row.content_type,
        response=None if row.response is None else bytes(row.response),
        created_at=row.created_at,
        updated_at=row.updated_at,
        expires_at=row.expires_at,
        owner=row.owner,
    )


class IdempotencyRepository:
    """Reads and writes of `idempotency_keys`; build over the store's engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def begin(
        self,
        *,
        api_key_id: str,
        key: str,
        agent_name: str,
        operation: str,
        fingerprint: str,
        now: dt.datetime,
        expires_at: dt.datetime,
        stale_before: dt.datetime,
        owner: str,
    ) -> BeginResult:
        """Claim `key` for this request, or say why not (see `Claim`).

        An ``in_progress`` row last touched before `stale_before` belongs to a relay that died
        mid-call: it is taken over like an ``unknown`` one. A row past its `expires_at` is
        replaced as if absent. An owned claim records `owner` (this replica).
        """
        values = {
            "api_key_id": api_key_id,
            "key": key,
            "agent_name": agent_name,
            "operation": operation,
            "fingerprint": fingerprint,
            "state": IdempotencyState.IN_PROGRESS.value,
            "status": None,
            "content_type": None,
            "response": None,
            "created_at": now,
            "updated_at": now,
            "expires_at": expires_at,
            "owner": owner,
        }
        for _ in range(_MAX_ATTEMPTS):
            async with self._engine.begin() as connection:
                if await self._insert_new(connection, values):
                    return BeginResult(Claim.STARTED)
                row = (
                    await connection.execute(
                        sa.select(*_COLUMNS).where(
                            _table.c.api_key_id == api_key_id, _table.c.key == key
                        )
                    )
                ).one_or_none()
                if row is None:
                    continue  # released between the insert and the read: try again
                record = _record(row)
                if record.expires_at <= now:
                    if await self._swap(connection, row, values):
                        return BeginResult(Claim.STARTED)
                    continue
                if record.fingerprint != fingerprint:
                    return BeginResult(Claim.MISMATCH, record)
                if record.state is IdempotencyState.DONE:
                    return BeginResult(Claim.REPLAY, record)
                if record.state is IdempotencyState.IN_PROGRESS and record.updated_at >= (
                    stale_before
                ):
                    return BeginResult(Claim.IN_PROGRESS, record)
                takeover = {
                    "state": IdempotencyState.IN_PROGRESS.value,
                    "updated_at": now,
                    "expires_at": max(record.expires_at, expires_at),
                    "owner": owner,
                }
                if await self._swap(connection, row, takeover):
                    return BeginResult(Claim.RESUMED)
                continue  # another request took it over first: look again
        # Only under pathological churn; the caller answers "in progress" and the client retries.
        return BeginResult(Claim.IN_PROGRESS)

    @staticmethod
    async def _insert_new(connection: AsyncConnection, values: dict[str, Any]) -> bool:
        dialect = connection.dialect.name
        statement: Any
        if dialect == "postgresql":
            statement = postgresql.insert(_table).values(**values)
        elif dialect == "sqlite":
            statement = sqlite.insert(_table).values(**values)
        else:  # pragma: no cover - the store supports these two backends only
            raise RuntimeError(f"unsupported database {dialect!r}")
        statement = statement.on_conflict_do_nothing(
            index_elements=[_table.c.api_key_id, _table.c.key]
        ).returning(_table.c.id)
        inserted = (await connection.execute(statement)).scalar_one_or_none()
        return inserted is not None

    @staticmethod
    async def _swap(connection: AsyncConnection, seen: Any, values: dict[str, Any]) -> bool:
        """Update the row only if it is still as `seen` (compare-and-set)."""
        result = await connection.execute(
            _table.update()
            .where(
                _table.c.id == seen.id,
                _table.c.state == seen.state,
                _table.c.updated_at == seen.updated_at,
            )
            .values(**values)
        )
        return result.rowcount == 1

    async def finish(
        self,
        api_key_id: str,
        key: str,
        *,
        status: int,
        content_type: str,
        response: bytes,
        now: dt.datetime,
        expires_at: dt.datetime,
        owner: str | None = None,
    ) -> bool:
        """Record a definite outcome of an owned row; False if the row is no longer in progress
        (or, with `owner`, no longer claimed by that replica)."""
        return await self._settle(
            api_key_id,
            key,
            owner,
            {
                "state": IdempotencyState.DONE.value,
                "status": status,
                "content_type": content_type[: models.CONTENT_TYPE_MAX],
                "response": response,
                "updated_at": now,
                "expires_at": expires_at,
            },
        )

    async def mark_unknown(
        self,
        api_key_id: str,
        key: str,
        *,
        now: dt.datetime,
        expires_at: dt.datetime,
        owner: str | None = None,
    ) -> bool:
        """Record that the call was sent but its outcome is unknown; nothing to replay."""
        return await self._settle(
            api_key_id,
            key,
            owner,
            {
                "state": IdempotencyState.UNKNOWN.value,
                "status": None,
                "content_type": None,
                "response": None,
                "updated_at": now,
                "expires_at": expires_at,
            },
        )

    @staticmethod
    def _claimed(api_key_id: str, key: str, owner: str | None) -> sa.ColumnElement[bool]:
        """The row, if still ``in_progress`` (and still claimed by `owner`, when given).

        A replica that was taken for dead may still be forwarding a call whose row another
        replica has marked unknown and a retry has claimed since; with its `owner` it cannot
        settle or delete that newer claim.
        """
        condition = sa.and_(
            _table.c.api_key_id == api_key_id,
            _table.c.key == key,
            _table.c.state == IdempotencyState.IN_PROGRESS.value,
        )
        if owner is not None:
            condition = sa.and_(condition, _table.c.owner == owner)
        return condition

    async def _settle(
        self, api_key_id: str, key: str, owner: str | None, values: dict[str, Any]
    ) -> bool:
        async with self._engine.begin() as connection:
            result = await connection.execute(
                _table.update().where(self._claimed(api_key_id, key, owner)).values(**values)
            )
        return result.rowcount == 1

    async def release(self, api_key_id: str, key: str, *, owner: str | None = None) -> bool:
        """Delete an owned ``in_progress`` row whose call never reached the agent."""
        async with self._engine.begin() as connection:
            result = await connection.execute(
                _table.delete().where(self._claimed(api_key_id, key, owner))
            )
        return result.rowcount == 1

    async def abandon_orphans(self, live: frozenset[str], now: dt.datetime) -> int:
        """Mark ``unknown`` every ``in_progress`` row whose owner is not in `live`.

        Nobody will ever settle such a row: its replica died with the call in flight (or it
        was claimed by a relay older than the ``owner`` column). Marked unknown, a retry with
        the same key is forwarded again at once (the agent's journal makes that safe) instead
        of answering 409 until the row goes stale.
        """
        orphaned = (
            sa.or_(_table.c.owner.is_(None), _table.c.owner.not_in(sorted(live)))
            if live
            else sa.true()
        )
        async with self._engine.begin() as connection:
            result = await connection.execute(
                _table.update()
                .where(_table.c.state == IdempotencyState.IN_PROGRESS.value, orphaned)
                .values(state=IdempotencyState.UNKNOWN.value, updated_at=now)
            )
        return int(result.rowcount)

    async def get(self, api_key_id: str, key: str) -> IdempotencyRecord | None:
        async with self._engine.connect() as connection:
            row = (
                await connection.execute(
                    sa.select(*_COLUMNS).where(
                        _table.c.api_key_id == api_key_id, _table.c.key == key
                    )
                )
            ).one_or_none()
        return None if row is None else _record(row)

    async def purge(self, now: dt.datetime) -> int:
        """Delete every row that expired at or before `now`; the number deleted."""
        async with self._engine.begin() as connection:
            result = await connection.execute(_table.delete().where(_table.c.expires_at <= now))
        return int(result.rowcount)
