"""Several relay replicas on one database (issue 4): what a dead replica leaves behind is taken
over within seconds, what a live one holds never is, and one agent's jobs never run two at once.

Each replica here has its own engine (its own connection pool), as separate processes would, on
SQLite and on PostgreSQL; the PostgreSQL run is the one that matters for replicas.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from relay.cluster.membership import SoloMembership
from relay.hub import Hub
from relay.idempotency import Idempotency, IdempotencyPurger
from relay.jobs import JobService
from relay.settings import RelaySettings
from relay.store import create_engine, models, upgrade
from relay.store.idempotency import Claim, IdempotencyRepository, IdempotencyState
from relay.store.jobs import PENDING, RUNNING, SUCCEEDED, JobRecord, JobStore

A, B = "replica-a", "replica-b"
BODY = b'{"external_number": "CRM-1"}'


class Members:
    """A `Membership` whose view of the cluster the test sets."""

    def __init__(self, replica_id: str, live: frozenset[str] | None) -> None:
        self._replica_id = replica_id
        self.live = live

    @property
    def replica_id(self) -> str:
        return self._replica_id

    async def live_replicas(self) -> frozenset[str] | None:
        return self.live


@pytest.fixture
async def engines(database_url: str) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    """One engine per replica, on one migrated database."""
    await upgrade(database_url)
    first, second = create_engine(database_url), create_engine(database_url)
    try:
        yield first, second
    finally:
        await first.dispose()
        await second.dispose()


def _idempotency(engine: AsyncEngine, owner: str) -> Idempotency:
    return Idempotency(
        IdempotencyRepository(engine), retention_s=3600, stale_after_s=150, owner=owner
    )


async def _state(service: Idempotency, key: str) -> IdempotencyState | None:
    record = await service.repository.get("pub1", key)
    return None if record is None else record.state


async def _eventually(check: Callable[[], Awaitable[bool]], seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while not await check():
            await asyncio.sleep(0.02)


# Idempotency keys


async def test_only_the_dead_replicas_writes_become_unknown(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    a, b = _idempotency(engines[0], A), _idempotency(engines[1], B)
    ticket_a, first = await a.begin("pub1", "k-a", "acme", "orders.create", BODY)
    ticket_b, second = await b.begin("pub1", "k-b", "acme", "orders.create", BODY)
    assert first.claim is Claim.STARTED and second.claim is Claim.STARTED

    assert await a.recover_orphans(frozenset({A})) == 1
    assert await _state(a, "k-a") is IdempotencyState.IN_PROGRESS, "a live replica's call"
    assert await _state(a, "k-b") is IdempotencyState.UNKNOWN

    _, retry = await a.begin("pub1", "k-b", "acme", "orders.create", BODY)
    assert retry.claim is Claim.RESUMED, "a retry is forwarded again at once"
    record = await a.repository.get("pub1", "k-b")
    assert record is not None and record.owner == A
    # The replica taken for dead answers late: it must not settle the retry's claim.
    await b.finish(ticket_b, 200, "application/json", b'{"from": "b"}')
    await b.release(ticket_b)
    assert await _state(a, "k-b") is IdempotencyState.IN_PROGRESS
    await a.finish(ticket_a, 200, "application/json", b'{"from": "a"}')
    assert await _state(a, "k-a") is IdempotencyState.DONE


async def test_rows_without_an_owner_are_orphans(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    a = _idempotency(engines[0], A)
    await a.begin("pub1", "legacy", "acme", "orders.create", BODY)
    async with engines[1].begin() as connection:  # as a relay older than the owner column
        await connection.execute(models.idempotency_keys.update().values(owner=None))
    assert await a.recover_orphans(frozenset({A, B})) == 1
    assert await _state(a, "legacy") is IdempotencyState.UNKNOWN


async def test_a_replica_never_orphans_its_own_writes(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    a = _idempotency(engines[0], A)
    await a.begin("pub1", "k", "acme", "orders.create", BODY)
    assert await a.recover_orphans(frozenset({B})) == 0, "the asking replica is alive"
    assert await _state(a, "k") is IdempotencyState.IN_PROGRESS


async def test_start_up_recovery_of_a_relay_that_runs_alone(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    before = _idempotency(engines[1], B)
    await before.begin("pub1", "k", "acme", "orders.create", BODY)
    restarted = _idempotency(engines[0], A)
    purger = IdempotencyPurger(restarted, 3600, membership=SoloMembership(A))
    assert await purger.recover_orphans() == 1
    assert await _state(restarted, "k") is IdempotencyState.UNKNOWN


async def test_purger_marks_a_killed_replicas_writes_unknown_within_seconds(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    a, b = _idempotency(engines[0], A), _idempotency(engines[1], B)
    members = Members(A, frozenset({A, B}))
    purger = IdempotencyPurger(a, 3600, membership=members, orphan_interval_s=0.05)
    await b.begin("pub1", "at-start", "acme", "orders.create", BODY)
    members.live = frozenset({A})
    await purger.start()
    try:
        assert await _state(a, "at-start") is IdempotencyState.UNKNOWN, "recovered in start()"

        members.live = frozenset({A, B})
        await b.begin("pub1", "k", "acme", "orders.create", BODY)
        await asyncio.sleep(0.3)
        assert await _state(a, "k") is IdempotencyState.IN_PROGRESS, "B is alive"

        members.live = None  # the shared view is unreachable: nothing may be taken over
        await asyncio.sleep(0.3)
        assert await _state(a, "k") is IdempotencyState.IN_PROGRESS

        members.live = frozenset({A})  # B killed with -9: its presence expired

        async def unknown() -> bool:
            return await _state(a, "k") is IdempotencyState.UNKNOWN

        await _eventually(unknown)
    finally:
        await purger.stop()
    assert purger.recovered == 2


def test_a_replica_id_must_fit_the_column() -> None:
    with pytest.raises(ValueError, match="at most 64"):
        Idempotency(
            IdempotencyRepository(create_engine("sqlite://")),
            retention_s=3600,
            stale_after_s=150,
            owner="r" * 65,
        )


# Jobs


async def _job(store: JobStore, agent: str = "acme", operation: str = "ping") -> JobRecord:
    return await store.create(
        api_key_id="key1",
        agent_name=agent,
        operation=operation,
        args=b"{}",
        ttl=dt.timedelta(hours=1),
        writes=False,
    )


async def _running(engine: AsyncEngine, agent: str = "acme") -> list[int]:
    jobs = models.jobs
    query = (
        sa.select(jobs.c.id)
        .where(jobs.c.agent_name == agent, jobs.c.state == RUNNING)
        .order_by(jobs.c.id)
    )
    async with engine.connect() as connection:
        return [row.id for row in await connection.execute(query)]


async def test_concurrent_claims_start_only_the_head_of_the_queue(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    """Both replicas claim the first three pending jobs of one agent at once, twice each."""
    replicas = [JobStore(engines[0]), JobStore(engines[1])]
    ids = [(await _job(replicas[0])).id for _ in range(22)]
    for n in range(20):
        heads = ids[n : n + 3]
        results = await asyncio.gather(
            *(
                replicas[r].claim(job_id, (A, B)[r])
                for _ in range(2)
                for job_id in heads
                for r in (0, 1)
            )
        )
        claimed = [job for job in results if job is not None]
        assert [job.id for job in claimed] == [ids[n]], f"round {n}"
        assert await _running(engines[1]) == [ids[n]]
        runner = replicas[(A, B).index(claimed[0].runner or "")]
        assert await runner.finish(ids[n], SUCCEEDED, result=b"1", runner=claimed[0].runner)


async def test_two_replicas_delivering_one_agent_run_its_jobs_one_at_a_time_in_order(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    """Each replica runs a worker for the agent (both hold a connection to it) and takes the
    head of the queue whenever it can; a third connection watches what is running."""
    replicas = [JobStore(engines[0]), JobStore(engines[1])]
    ids = [(await _job(replicas[0])).id for _ in range(30)]
    other = await _job(replicas[0], "other")
    started: list[int] = []
    finished: list[int] = []
    released: set[int] = set()
    most_running = 0
    done = asyncio.Event()

    async def worker(store: JobStore, runner: str) -> None:
        while (head := await store.next_pending("acme")) is not None:
            job = await store.claim(head.id, runner)
            if job is None:
                await asyncio.sleep(0)
                continue
            started.append(job.id)  # before any await: claims are exclusive, so this is order
            await asyncio.sleep(0)  # the other replica tries meanwhile
            if job.id % 4 == 0 and job.id not in released:
                released.add(job.id)  # a retryable error: back to pending, delivered again
                assert await store.release(job.id, runner=runner)
                continue
            assert await store.finish(job.id, SUCCEEDED, result=b"1", runner=runner)
            finished.append(job.id)

    async def watch() -> None:
        nonlocal most_running
        async with engines[1].connect() as connection:
            while not done.is_set():
                running = await connection.scalar(
                    sa.select(sa.func.count())
                    .select_from(models.jobs)
                    .where(models.jobs.c.agent_name == "acme", models.jobs.c.state == RUNNING)
                )
                most_running = max(most_running, running or 0)
                await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    try:
        async with asyncio.timeout(90):
            await asyncio.gather(worker(replicas[0], A), worker(replicas[1], B))
    finally:
        done.set()
        await watcher
    assert started == [n for job_id in ids for n in [job_id] * (2 if job_id % 4 == 0 else 1)]
    assert sorted(finished) == ids, "every job runs to its end once"
    assert most_running <= 1
    assert await _running(engines[0]) == []
    untouched = await replicas[1].job_by_id(other.id)
    assert untouched is not None and untouched.state == PENDING


@pytest.fixture
async def services(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> AsyncIterator[tuple[JobService, Members]]:
    members = Members(A, frozenset({A, B}))
    service = JobService(JobStore(engines[0]), Hub(), RelaySettings(), membership=members)
    try:
        yield service, members
    finally:
        await service.stop()


async def test_jobs_of_a_dead_runner_go_back_to_pending_in_the_sweep(
    services: tuple[JobService, Members], engines: tuple[AsyncEngine, AsyncEngine]
) -> None:
    service, members = services
    other_replica = JobStore(engines[1])
    mine = await _job(service.store, "mine")
    theirs = await _job(other_replica, "theirs")
    assert service.runner == A
    assert await service.store.claim(mine.id, A) is not None
    assert await other_replica.claim(theirs.id, B) is not None

    await service.sweep()
    assert await _running(engines[0], "theirs") == [theirs.id], "B is alive"

    members.live = None
    await service.sweep()
    assert await _running(engines[0], "theirs") == [theirs.id], "unknown: nothing taken over"

    members.live = frozenset({A})
    await service.sweep()
    assert await _running(engines[0], "theirs") == []
    recovered = await service.store.job_by_id(theirs.id)
    assert recovered is not None and recovered.state == PENDING and recovered.runner is None
    assert await _running(engines[0], "mine") == [mine.id], "its own job is never taken"


async def test_start_recovers_the_jobs_of_dead_runners(
    services: tuple[JobService, Members], engines: tuple[AsyncEngine, AsyncEngine]
) -> None:
    service, members = services
    job = await _job(JobStore(engines[1]))
    await JobStore(engines[1]).claim(job.id, B)
    members.live = frozenset({A})
    await service.start()
    recovered = await service.store.job_by_id(job.id)
    assert recovered is not None and recovered.state == PENDING


async def test_on_accepted_is_called_with_the_agent(services: tuple[JobService, Members]) -> None:
    service, _ = services
    woken: list[str] = []
    service.on_accepted = woken.append
    job = await service.accept(
        api_key_id="key1",
        agent="acme",
        operation="ping",
        args=b"{}",
        ttl_s=60,
        webhook_url=None,
    )
    assert woken == ["acme"]

    def broken(agent: str) -> None:
        raise RuntimeError("the cluster is down")

    service.on_accepted = broken
    again = await service.accept(
        api_key_id="key1", agent="acme", operation="ping", args=b"{}", ttl_s=60, webhook_url=None
    )
    assert again.id > job.id and again.state == PENDING, "the job is accepted all the same"


class _SilentLink:
    """An agent connection that takes a call and never answers."""

    async def start_call(self, *args: Any) -> Any:
        await asyncio.Event().wait()


class _OnlineHub:
    """A hub where the agent is connected to this replica (the other holds a connection too)."""

    def pick(self, agent: str, operation: str | None = None) -> _SilentLink:
        return _SilentLink()

    def is_online(self, agent: str) -> bool:
        return True


async def test_a_worker_held_back_by_another_replica_waits_then_takes_the_next_job(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    other_replica = JobStore(engines[1])
    first, second = await _job(other_replica), await _job(other_replica)
    assert await other_replica.claim(first.id, B) is not None  # B delivers the head

    claims: list[int] = []
    store = JobStore(engines[0])
    real_claim = store.claim

    async def counting_claim(job_id: int, runner: str) -> JobRecord | None:
        claims.append(job_id)
        return await real_claim(job_id, runner)

    store.claim = counting_claim  # type: ignore[method-assign]
    settings = RelaySettings(job_poll_interval_s=30)
    service = JobService(
        store, cast(Hub, _OnlineHub()), settings, membership=Members(A, frozenset({A, B}))
    )
    try:
        service.agent_connected("acme")
        await asyncio.sleep(0.5)
        assert claims == [second.id, second.id], "refused twice, then it waits: no busy loop"

        await other_replica.finish(first.id, SUCCEEDED, result=b"1", runner=B)
        service.agent_connected("acme")  # the wake the cluster sends

        async def taken() -> bool:
            return await _running(engines[0]) == [second.id]

        await _eventually(taken)
        running = await store.job_by_id(second.id)
        assert running is not None and running.runner == A
    finally:
        await service.stop()
    stopped = await store.job_by_id(second.id)
    assert stopped is not None and stopped.state == PENDING, "handed back on shutdown"
