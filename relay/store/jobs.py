"""`JobStore`: the durable jobs and their webhook deliveries, over the relay's database.

Every state change is one conditional UPDATE (``WHERE state = 'pending'`` and so on), so a claim
and a cancel racing for the same job cannot both win, on SQLite or PostgreSQL. A job that ends
(succeeded, failed, expired) loses its arguments in the same statement, and gets its webhook
delivery row in the same transaction, so a webhook is never lost between the two.

Several relay replicas may share the database and each may deliver jobs. A claim records the
replica (``runner``), so the jobs of a replica that died can be told from those a live one is
running (`recover_orphans`), and a replica taken for dead cannot move a job it no longer holds.
A claim also refuses while the agent has a job running or an older one pending, so each
agent's jobs run one at a time and in order whichever replicas deliver them.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from relay.store import models

Clock = Callable[[], dt.datetime]

PENDING = "pending"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
EXPIRED = "expired"
CANCELLED = "cancelled"
JOB_STATES = (PENDING, RUNNING, SUCCEEDED, FAILED, EXPIRED, CANCELLED)
FINAL_STATES = frozenset({SUCCEEDED, FAILED, EXPIRED, CANCELLED})

CLAIM_LOCK_CLASS = 0x4A4F4253
"""First key of the PostgreSQL advisory lock that serialises the claims of one agent (the
second is the hash of its name): an application-chosen class ("JOBS"), so the lock cannot be
confused with another use of advisory locks in the same database."""

DELIVERY_PENDING = "pending"
DELIVERY_DELIVERED = "delivered"
DELIVERY_FAILED = "failed"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_job_id() -> str:
    """``job_`` and 24 URL-safe random characters (144 bits): unguessable, unique."""
    return "job_" + secrets.token_urlsafe(18)


@dataclass(frozen=True, slots=True)
class JobRecord:
    id: int
    public_id: str
    api_key_id: str
    agent_name: str
    operation: str
    args: bytes | None
    idempotency_key: str | None
    state: str
    result: bytes | None
    error_code: str | None
    error_message: str | None
    attempts: int
    created_at: dt.datetime
    expires_at: dt.datetime
    not_before: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    webhook_url: str | None
    runner: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    id: int
    job_id: int
    url: str
    state: str
    attempts: int
    next_attempt_at: dt.datetime | None
    last_status: int | None
    last_error: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


class JobNotFound(Exception):
    """No such job, or not visible to this API key."""


class JobNotCancellable(Exception):
    """The job has already started or ended."""

    def __init__(self, state: str) -> None:
        super().__init__(f"the job is {state}")
        self.state = state


class JobNotRetryable(Exception):
    """Only a failed or expired job whose arguments are still kept can be retried."""

    def __init__(self, state: str, reason: str) -> None:
        super().__init__(reason)
        self.state = state


_J = models.jobs
_D = models.webhook_deliveries


def _job(row: Any) -> JobRecord:
    return JobRecord(
        id=row.id,
        public_id=row.public_id,
        api_key_id=row.api_key_id,
        agent_name=row.agent_name,
        operation=row.operation,
        args=row.args,
        idempotency_key=row.idempotency_key,
        state=row.state,
        result=row.result,
        error_code=row.error_code,
        error_message=row.error_message,
        attempts=row.attempts,
        created_at=row.created_at,
        expires_at=row.expires_at,
        not_before=row.not_before,
        started_at=row.started_at,
        finished_at=row.finished_at,
        webhook_url=row.webhook_url,
        runner=row.runner,
    )


def _delivery(row: Any) -> DeliveryRecord:
    return DeliveryRecord(
        id=row.id,
        job_id=row.job_id,
        url=row.url,
        state=row.state,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_status=row.last_status,
        last_error=row.last_error,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _clip(value: str | None, limit: int) -> str | None:
    return None if value is None else value[:limit]


class JobStore:
    """Jobs and webhook deliveries. Build with `JobStore(store.engine)`."""

    def __init__(self, engine: AsyncEngine, *, clock: Clock = utcnow) -> None:
        self._engine = engine
        self._clock = clock

    def now(self) -> dt.datetime:
        return self._clock()

    # Jobs

    async def create(
        self,
        *,
        api_key_id: str,
        agent_name: str,
        operation: str,
        args: bytes,
        ttl: dt.timedelta,
        writes: bool,
        webhook_url: str | None = None,
    ) -> JobRecord:
        """Store a pending job; committed when this returns."""
        public_id = new_job_id()
        now = self._clock()
        values: dict[str, Any] = {
            "public_id": public_id,
            "api_key_id": api_key_id,
            "agent_name": agent_name,
            "operation": operation,
            "args": args,
            # Redelivery after a lost link or a relay crash reuses the key, so the agent's
            # journal runs a write at most once.
            "idempotency_key": f"job:{public_id}" if writes else None,
            "state": PENDING,
            "attempts": 0,
            "created_at": now,
            "expires_at": now + ttl,
            "webhook_url": webhook_url,
        }
        async with self._engine.begin() as connection:
            inserted = await connection.execute(_J.insert().values(**values))
            assert inserted.inserted_primary_key is not None
            job_id = inserted.inserted_primary_key[0]
            return await self._get_by_id(connection, job_id)

    @staticmethod
    async def _get_by_id(connection: AsyncConnection, job_id: int) -> JobRecord:
        row = (await connection.execute(sa.select(_J).where(_J.c.id == job_id))).one()
        return _job(row)

    async def get(self, public_id: str, api_key_id: str | None = None) -> JobRecord | None:
        """The job, or None if absent (or created by another API key, when one is given)."""
        query = sa.select(_J).where(_J.c.public_id == public_id)
        if api_key_id is not None:
            query = query.where(_J.c.api_key_id == api_key_id)
        async with self._engine.connect() as connection:
            row = (await connection.execute(query)).one_or_none()
        return None if row is None else _job(row)

    async def list_for(
        self, api_key_id: str, agent_name: str, *, state: str | None = None, limit: int = 50
    ) -> list[JobRecord]:
        """This key's jobs for one agent, newest first."""
        query = sa.select(_J).where(_J.c.api_key_id == api_key_id, _J.c.agent_name == agent_name)
        if state is not None:
            query = query.where(_J.c.state == state)
        query = query.order_by(_J.c.id.desc()).limit(limit)
        async with self._engine.connect() as connection:
            return [_job(row) for row in await connection.execute(query)]

    async def agents_with_pending(self) -> list[str]:
        query = sa.select(_J.c.agent_name).where(_J.c.state == PENDING).distinct()
        async with self._engine.connect() as connection:
            return sorted(row.agent_name for row in await connection.execute(query))

    async def next_pending(self, agent_name: str) -> JobRecord | None:
        """The oldest pending job of an agent (the head of its queue), whatever its timing."""
        query = (
            sa.select(_J)
            .where(_J.c.agent_name == agent_name, _J.c.state == PENDING)
            .order_by(_J.c.id)
            .limit(1)
        )
        async with self._engine.connect() as connection:
            row = (await connection.execute(query)).one_or_none()
        return None if row is None else _job(row)

    async def claim(self, job_id: int, runner: str) -> JobRecord | None:
        """pending → running by `runner` (attempts + 1).

        None if the job is no longer pending or has expired, and also while another job of the
        same agent is running or an older one is pending (waiting for a retry, say): two
        replicas may both hold a connection to the agent and run a worker for it, and only the
        job at the head of the queue, with nothing of that agent in flight, may start.

        On PostgreSQL the claims of one agent are serialised by a transaction-scoped advisory
        lock taken before the check, so two claims can never both see the agent idle (each
        statement after the lock sees what the previous holder committed). On SQLite the one
        conditional UPDATE is atomic: its read happens under the database's write lock.
        """
        now = self._clock()
        async with self._engine.begin() as connection:
            agent = (
                await connection.execute(sa.select(_J.c.agent_name).where(_J.c.id == job_id))
            ).scalar_one_or_none()
            if agent is None:
                return None
            if connection.dialect.name == "postgresql":
                await connection.execute(
                    sa.select(
                        sa.func.pg_advisory_xact_lock(CLAIM_LOCK_CLASS, sa.func.hashtext(agent))
                    )
                )
            other = _J.alias("other")
            blocking = (
                sa.select(other.c.id)
                .where(
                    other.c.agent_name == agent,
                    sa.or_(
                        other.c.state == RUNNING,
                        sa.and_(other.c.state == PENDING, other.c.id < job_id),
                    ),
                )
                .exists()
            )
            result = await connection.execute(
                _J.update()
                .where(
                    _J.c.id == job_id,
                    _J.c.state == PENDING,
                    _J.c.expires_at > now,
                    ~blocking,
                )
                .values(state=RUNNING, runner=runner, started_at=now, attempts=_J.c.attempts + 1)
            )
            if result.rowcount != 1:
                return None
            return await self._get_by_id(connection, job_id)

    @staticmethod
    def _held(job_id: int, runner: str | None) -> sa.ColumnElement[bool]:
        """The job, if running (and run by `runner`, when given).

        A replica taken for dead may still be delivering a job that another replica has put
        back to pending and claimed again; with its `runner` it cannot move that job.
        """
        condition = sa.and_(_J.c.id == job_id, _J.c.state == RUNNING)
        if runner is not None:
            condition = sa.and_(condition, _J.c.runner == runner)
        return condition

    async def release(
        self,
        job_id: int,
        *,
        not_before: dt.datetime | None = None,
        error_code: str | None = None,
        error_message: str | None = None,
        runner: str | None = None,
    ) -> bool:
        """running → pending, to be delivered again (not before `not_before`)."""
        async with self._engine.begin() as connection:
            result = await connection.execute(
                _J.update()
                .where(self._held(job_id, runner))
                .values(
                    state=PENDING,
                    runner=None,
                    not_before=not_before,
                    error_code=error_code,
                    error_message=_clip(error_message, models.ERROR_MESSAGE_MAX),
                )
            )
            return result.rowcount == 1

    async def finish(
        self,
        job_id: int,
        state: str,
        *,
        result: bytes | None = None,
        error_code: str | None = None,
        error_message: str | None = None,
        from_states: tuple[str, ...] = (RUNNING,),
        runner: str | None = None,
    ) -> JobRecord | None:
        """End a job (succeeded/failed/expired) and queue its webhook. A succeeded job loses
        its arguments; a failed or expired one keeps them until `purge_results`, so that an
        operator can `retry` it.

        With `runner`, a running job ends only if that replica still holds it (see `release`).
        """
        if state not in (SUCCEEDED, FAILED, EXPIRED):
            raise ValueError(f"not an end state: {state!r}")
        now = self._clock()
        kept_args = _J.c.args if state in (FAILED, EXPIRED) else None
        condition = sa.and_(_J.c.id == job_id, _J.c.state.in_(from_states))
        if runner is not None:
            condition = sa.and_(condition, sa.or_(_J.c.state != RUNNING, _J.c.runner == runner))
        async with self._engine.begin() as connection:
            updated = await connection.execute(
                _J.update()
                .where(condition)
                .values(
                    state=state,
                    result=result,
                    error_code=error_code,
                    error_message=_clip(error_message, models.ERROR_MESSAGE_MAX),
                    finished_at=now,
                    args=kept_args,
                    not_before=None,
                )
            )
            if updated.rowcount != 1:
                return None
            job = await self._get_by_id(connection, job_id)
            if job.webhook_url is not None:
                await connection.execute(
                    _D.insert().values(
                        job_id=job.id,
                        url=job.webhook_url,
                        state=DELIVERY_PENDING,
                        attempts=0,
                        next_attempt_at=now,
                        created_at=now,
                        updated_at=now,
                    )
                )
            return job

    async def expire(self, job_id: int) -> JobRecord | None:
        """pending → expired (never delivered)."""
        return await self.finish(
            job_id,
            EXPIRED,
            error_code="job_expired",
            error_message="the job's time to live passed before an agent could run it",
            from_states=(PENDING,),
        )

    async def expire_due(self) -> list[JobRecord]:
        """Expire every pending job whose time to live has passed."""
        now = self._clock()
        query = sa.select(_J.c.id).where(_J.c.state == PENDING, _J.c.expires_at <= now)
        async with self._engine.connect() as connection:
            ids = [row.id for row in await connection.execute(query)]
        expired = []
        for job_id in ids:
            job = await self.expire(job_id)
            if job is not None:
                expired.append(job)
        return expired

    async def cancel(self, public_id: str, api_key_id: str | None) -> JobRecord:
        """pending → cancelled; JobNotFound / JobNotCancellable otherwise. `api_key_id` None:
        whoever created it (an operator's cancel)."""
        now = self._clock()
        query = sa.select(_J.c.id, _J.c.state).where(_J.c.public_id == public_id)
        if api_key_id is not None:
            query = query.where(_J.c.api_key_id == api_key_id)
        async with self._engine.begin() as connection:
            row = (await connection.execute(query)).one_or_none()
            if row is None:
                raise JobNotFound(public_id)
            updated = await connection.execute(
                _J.update()
                .where(_J.c.id == row.id, _J.c.state == PENDING)
                .values(state=CANCELLED, finished_at=now, args=None, not_before=None)
            )
            job = await self._get_by_id(connection, row.id)
            if updated.rowcount != 1:
                raise JobNotCancellable(job.state)
            return job

    async def recover_orphans(self, live: frozenset[str]) -> int:
        """Jobs running on replicas not in `live` go back to pending, to be delivered again.

        Such a replica died mid-delivery (or was a relay older than the ``runner`` column), so
        the job would stay running for ever and hold back its agent's queue. A write carries
        ``job:<id>`` on every attempt, so delivering it again is answered from the agent's
        journal rather than writing twice.
        """
        orphaned = (
            sa.or_(_J.c.runner.is_(None), _J.c.runner.not_in(sorted(live))) if live else sa.true()
        )
        async with self._engine.begin() as connection:
            result = await connection.execute(
                _J.update()
                .where(_J.c.state == RUNNING, orphaned)
                .values(state=PENDING, runner=None)
            )
            return int(result.rowcount)

    async def retry(self, public_id: str) -> JobRecord:
        """failed | expired → pending, as if just accepted: attempts from 0, a fresh time to
        live as long as the first. The job keeps its id, hence its idempotency key
        ``job:{id}``: a write that did reach the ERP before is answered from the agent's
        journal, never written twice. JobNotFound / JobNotRetryable otherwise."""
        now = self._clock()
        async with self._engine.begin() as connection:
            row = (
                await connection.execute(sa.select(_J).where(_J.c.public_id == public_id))
            ).one_or_none()
            if row is None:
                raise JobNotFound(public_id)
            if row.state not in (FAILED, EXPIRED):
                raise JobNotRetryable(row.state, f"the job is {row.state}")
            if row.args is None:
                raise JobNotRetryable(row.state, "the job's arguments were already erased")
            updated = await connection.execute(
                _J.update()
                .where(_J.c.id == row.id, _J.c.state == row.state, _J.c.args.is_not(None))
                .values(
                    state=PENDING,
                    attempts=0,
                    expires_at=now + (row.expires_at - row.created_at),
                    not_before=None,
                    started_at=None,
                    finished_at=None,
                    result=None,
                    error_code=None,
                    error_message=None,
                    runner=None,
                )
            )
            if updated.rowcount != 1:
                raise JobNotRetryable(row.state, "the job changed meanwhile")
            return await self._get_by_id(connection, row.id)

    async def purge_results(self, finished_before: dt.datetime) -> int:
        """Forget the results (and the arguments kept for a retry) of jobs that ended before
        `finished_before`."""
        async with self._engine.begin() as connection:
            result = await connection.execute(
                _J.update()
                .where(
                    _J.c.finished_at < finished_before,
                    sa.or_(_J.c.result.is_not(None), _J.c.args.is_not(None)),
                )
                .values(result=None, args=None)
            )
            return int(result.rowcount)

    # Webhook deliveries

    async def deliveries_for(self, job_id: int) -> list[DeliveryRecord]:
        query = sa.select(_D).where(_D.c.job_id == job_id).order_by(_D.c.id)
        async with self._engine.connect() as connection:
            return [_delivery(row) for row in await connection.execute(query)]

    async def due_deliveries(self, limit: int = 50) -> list[DeliveryRecord]:
        now = self._clock()
        query = (
            sa.select(_D)
            .where(_D.c.state == DELIVERY_PENDING, _D.c.next_attempt_at <= now)
            .order_by(_D.c.next_attempt_at, _D.c.id)
            .limit(limit)
        )
        async with self._engine.connect() as connection:
            return [_delivery(row) for row in await connection.execute(query)]

    async def next_delivery_at(self) -> dt.datetime | None:
        query = sa.select(sa.func.min(_D.c.next_attempt_at)).where(_D.c.state == DELIVERY_PENDING)
        async with self._engine.connect() as connection:
            value = await connection.scalar(query)
        return models.UTCDateTime().process_result_value(value, None) if value else None

    async def record_attempt(
        self,
        delivery_id: int,
        *,
        state: str,
        status: int | None,
        error: str | None,
        next_attempt_at: dt.datetime | None,
    ) -> None:
        now = self._clock()
        async with self._engine.begin() as connection:
            await connection.execute(
                _D.update()
                .where(_D.c.id == delivery_id)
                .values(
                    state=state,
                    attempts=_D.c.attempts + 1,
                    last_status=status,
                    last_error=_clip(error, models.ERROR_MESSAGE_MAX),
                    next_attempt_at=next_attempt_at,
                    updated_at=now,
                )
            )

    async def job_by_id(self, job_id: int) -> JobRecord | None:
        async with self._engine.connect() as connection:
            row = (await connection.execute(sa.select(_J).where(_J.c.id == job_id))).one_or_none()
        return None if row is None else _job(row)
