"""The jobs repository on SQLite and PostgreSQL: order, state changes, expiry, cancel, recovery."""

from __future__ import annotations

import datetime as dt

import pytest

from relay.store import Store, models
from relay.store.jobs import (
    CANCELLED,
    DELIVERY_DELIVERED,
    DELIVERY_PENDING,
    EXPIRED,
    FAILED,
    PENDING,
    RUNNING,
    SUCCEEDED,
    JobNotCancellable,
    JobNotFound,
    JobStore,
)
from tests.support.clock import Clock

DAY = dt.timedelta(days=1)
RUNNER = "replica-a"


@pytest.fixture
def clock() -> Clock:
    return Clock(dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC))


@pytest.fixture
def jobs(store: Store, clock: Clock) -> JobStore:
    return JobStore(store.engine, clock=clock)


async def _new(
    jobs: JobStore,
    agent: str = "acme",
    *,
    key: str = "key1",
    ttl: dt.timedelta = DAY,
    operation: str = "ping",
    writes: bool = False,
    webhook: str | None = None,
) -> int:
    job = await jobs.create(
        api_key_id=key,
        agent_name=agent,
        operation=operation,
        args=b"{}",
        ttl=ttl,
        writes=writes,
        webhook_url=webhook,
    )
    return job.id


async def test_create_stores_a_pending_job(jobs: JobStore, clock: Clock) -> None:
    job = await jobs.create(
        api_key_id="key1",
        agent_name="acme",
        operation="orders.create",
        args=b'{"a": 1}',
        ttl=DAY,
        writes=True,
    )
    assert job.public_id.startswith("job_") and len(job.public_id) == 28
    assert job.state == PENDING and job.attempts == 0
    assert job.args == b'{"a": 1}'
    assert job.idempotency_key == f"job:{job.public_id}"
    assert job.expires_at == clock.now + DAY
    again = await jobs.get(job.public_id, "key1")
    assert again == job
    assert await jobs.get(job.public_id, "someone-else") is None
    reads = await jobs.create(
        api_key_id="key1", agent_name="acme", operation="ping", args=b"{}", ttl=DAY, writes=False
    )
    assert reads.idempotency_key is None


async def test_queue_is_in_order_of_acceptance_per_agent(jobs: JobStore) -> None:
    first = await _new(jobs)
    await _new(jobs, "other")
    second = await _new(jobs)
    assert await jobs.agents_with_pending() == ["acme", "other"]
    head = await jobs.next_pending("acme")
    assert head is not None and head.id == first
    assert await jobs.claim(first, RUNNER) is not None
    head = await jobs.next_pending("acme")
    assert head is not None and head.id == second


async def test_claim_then_finish(jobs: JobStore, clock: Clock) -> None:
    job_id = await _new(jobs)
    claimed = await jobs.claim(job_id, RUNNER)
    assert claimed is not None
    assert claimed.state == RUNNING and claimed.attempts == 1 and claimed.started_at == clock.now
    assert await jobs.claim(job_id, RUNNER) is None, "a running job cannot be claimed twice"
    clock.advance(2)
    done = await jobs.finish(job_id, SUCCEEDED, result=b'{"ok":true}')
    assert done is not None
    assert done.state == SUCCEEDED and done.result == b'{"ok":true}'
    assert done.args is None, "arguments are not kept once the job ends"
    assert done.finished_at == clock.now
    assert await jobs.finish(job_id, FAILED) is None, "an ended job stays ended"


async def test_release_puts_a_job_back_with_its_error(jobs: JobStore, clock: Clock) -> None:
    job_id = await _new(jobs)
    await jobs.claim(job_id, RUNNER)
    later = clock.now + dt.timedelta(seconds=5)
    assert await jobs.release(job_id, not_before=later, error_code="erp_unavailable")
    job = await jobs.next_pending("acme")
    assert job is not None and job.id == job_id
    assert job.not_before == later and job.error_code == "erp_unavailable"
    claimed = await jobs.claim(job_id, RUNNER)
    assert claimed is not None and claimed.attempts == 2


async def test_failed_job_keeps_code_and_message(jobs: JobStore) -> None:
    job_id = await _new(jobs)
    await jobs.claim(job_id, RUNNER)
    job = await jobs.finish(job_id, FAILED, error_code="not_found", error_message="x" * 5000)
    assert job is not None and job.error_code == "not_found"
    assert job.error_message is not None and len(job.error_message) == 1000


async def test_expired_jobs_are_never_claimed(jobs: JobStore, clock: Clock) -> None:
    short = await _new(jobs, ttl=dt.timedelta(seconds=10))
    long = await _new(jobs)
    clock.advance(11)
    assert await jobs.claim(short, RUNNER) is None
    expired = await jobs.expire_due()
    assert [job.id for job in expired] == [short]
    assert expired[0].state == EXPIRED
    assert expired[0].args is not None, "kept until the retention purge, for a retry"
    head = await jobs.next_pending("acme")
    assert head is not None and head.id == long
    assert await jobs.expire_due() == []


async def test_cancel_only_pending_and_only_own(jobs: JobStore) -> None:
    job_id = await _new(jobs)
    job = await jobs.job_by_id(job_id)
    assert job is not None
    with pytest.raises(JobNotFound):
        await jobs.cancel(job.public_id, "someone-else")
    cancelled = await jobs.cancel(job.public_id, "key1")
    assert cancelled.state == CANCELLED and cancelled.args is None
    assert await jobs.claim(job_id, RUNNER) is None
    with pytest.raises(JobNotCancellable) as raised:
        await jobs.cancel(job.public_id, "key1")
    assert raised.value.state == CANCELLED

    running = await _new(jobs)
    claimed = await jobs.claim(running, RUNNER)
    assert claimed is not None
    with pytest.raises(JobNotCancellable):
        await jobs.cancel(claimed.public_id, "key1")


async def test_running_jobs_of_runners_not_alive_are_recovered(
    jobs: JobStore, store: Store
) -> None:
    dead = await _new(jobs)
    live = await _new(jobs, "other")
    legacy = await _new(jobs, "third")
    await jobs.claim(dead, "replica-b")
    await jobs.claim(live, RUNNER)
    await jobs.claim(legacy, RUNNER)
    async with store.engine.begin() as connection:  # as a relay older than the runner column
        await connection.execute(
            models.jobs.update().where(models.jobs.c.id == legacy).values(runner=None)
        )
    assert await jobs.recover_orphans(frozenset({RUNNER})) == 2
    for job_id in (dead, legacy):
        job = await jobs.job_by_id(job_id)
        assert job is not None and job.state == PENDING and job.runner is None
        assert job.attempts == 1
    kept = await jobs.job_by_id(live)
    assert kept is not None and kept.state == RUNNING and kept.runner == RUNNER
    assert await jobs.recover_orphans(frozenset({RUNNER})) == 0


async def test_claim_records_the_runner_and_release_clears_it(jobs: JobStore) -> None:
    job_id = await _new(jobs)
    claimed = await jobs.claim(job_id, RUNNER)
    assert claimed is not None and claimed.runner == RUNNER
    assert await jobs.release(job_id)
    job = await jobs.job_by_id(job_id)
    assert job is not None and job.state == PENDING and job.runner is None
    claimed = await jobs.claim(job_id, "replica-b")
    assert claimed is not None and claimed.runner == "replica-b"
    done = await jobs.finish(job_id, SUCCEEDED, result=b"1", runner="replica-b")
    assert done is not None and done.runner == "replica-b", "kept for the record"


async def test_a_job_moves_only_for_the_runner_that_holds_it(jobs: JobStore) -> None:
    job_id = await _new(jobs)
    await jobs.claim(job_id, "replica-b")
    assert not await jobs.release(job_id, runner=RUNNER)
    assert await jobs.finish(job_id, SUCCEEDED, result=b"1", runner=RUNNER) is None
    job = await jobs.job_by_id(job_id)
    assert job is not None and job.state == RUNNING
    assert await jobs.release(job_id, runner="replica-b")


async def test_claim_refuses_while_the_agent_has_a_job_running(jobs: JobStore) -> None:
    first = await _new(jobs)
    second = await _new(jobs)
    elsewhere = await _new(jobs, "other")
    assert await jobs.claim(first, "replica-b") is not None
    assert await jobs.claim(second, RUNNER) is None, "one job of an agent at a time"
    assert await jobs.claim(elsewhere, RUNNER) is not None, "other agents are not held back"
    await jobs.finish(first, SUCCEEDED, result=b"1")
    claimed = await jobs.claim(second, RUNNER)
    assert claimed is not None and claimed.state == RUNNING


async def test_claim_refuses_behind_an_older_pending_job(jobs: JobStore, clock: Clock) -> None:
    first = await _new(jobs)
    second = await _new(jobs)
    await jobs.claim(first, RUNNER)
    await jobs.release(first, not_before=clock.now + dt.timedelta(seconds=5))
    assert await jobs.claim(second, RUNNER) is None, "a job waiting for a retry holds back"
    await jobs.cancel(await _public_id(jobs, first), "key1")
    assert await jobs.claim(second, RUNNER) is not None


async def _public_id(jobs: JobStore, job_id: int) -> str:
    job = await jobs.job_by_id(job_id)
    assert job is not None
    return job.public_id


async def test_list_newest_first_with_filter(jobs: JobStore) -> None:
    ids = [await _new(jobs) for _ in range(3)]
    await _new(jobs, key="key2")
    await jobs.claim(ids[0], RUNNER)
    await jobs.finish(ids[0], SUCCEEDED, result=b"1")
    listed = await jobs.list_for("key1", "acme")
    assert [job.id for job in listed] == list(reversed(ids))
    assert [job.id for job in await jobs.list_for("key1", "acme", state=SUCCEEDED)] == [ids[0]]
    assert len(await jobs.list_for("key1", "acme", limit=2)) == 2


async def test_ending_a_job_with_a_webhook_queues_one_delivery(
    jobs: JobStore, clock: Clock
) -> None:
    job_id = await _new(jobs, webhook="https://crm.example/hook")
    plain = await _new(jobs)
    await jobs.claim(job_id, RUNNER)
    await jobs.finish(job_id, SUCCEEDED, result=b"1")
    await jobs.claim(plain, RUNNER)
    await jobs.finish(plain, SUCCEEDED, result=b"1")
    due = await jobs.due_deliveries()
    assert len(due) == 1 and due[0].job_id == job_id and due[0].state == DELIVERY_PENDING
    later = clock.now + dt.timedelta(seconds=5)
    await jobs.record_attempt(
        due[0].id, state=DELIVERY_PENDING, status=500, error="boom", next_attempt_at=later
    )
    assert await jobs.due_deliveries() == []
    clock.advance(5)
    (again,) = await jobs.due_deliveries()
    assert again.attempts == 1 and again.last_status == 500
    await jobs.record_attempt(
        again.id, state=DELIVERY_DELIVERED, status=204, error=None, next_attempt_at=None
    )
    (final,) = await jobs.deliveries_for(job_id)
    assert final.state == DELIVERY_DELIVERED and final.attempts == 2


async def test_results_are_purged_after_retention(jobs: JobStore, clock: Clock) -> None:
    job_id = await _new(jobs)
    await jobs.claim(job_id, RUNNER)
    await jobs.finish(job_id, SUCCEEDED, result=b"1")
    assert await jobs.purge_results(clock.now - DAY) == 0
    clock.advance(DAY.total_seconds() + 1)
    assert await jobs.purge_results(clock.now - DAY) == 1
    job = await jobs.job_by_id(job_id)
    assert job is not None and job.result is None and job.state == SUCCEEDED
