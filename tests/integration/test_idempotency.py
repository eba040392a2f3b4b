"""`IdempotencyRepository` and the `Idempotency` service on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from relay.api.calls import _scope_status_key
from relay.idempotency import (
    AGENT_KEY_MAX,
    Idempotency,
    IdempotencyPurger,
    agent_key,
    fingerprint,
)
from relay.store import create_engine, upgrade
from relay.store.idempotency import (
    BeginResult,
    Claim,
    IdempotencyRepository,
    IdempotencyState,
)
from relay.store.models import idempotency_keys, metadata
from tests.support.clock import Clock

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
WEEK = dt.timedelta(days=7)
STALE = dt.timedelta(seconds=150)
FP = fingerprint("acme", "orders.create", b'{"a": 1}')
OTHER_FP = fingerprint("acme", "orders.create", b'{"a": 2}')


@pytest.fixture
async def repo(database_url: str) -> AsyncIterator[IdempotencyRepository]:
    await upgrade(database_url)
    engine = create_engine(database_url)
    try:
        yield IdempotencyRepository(engine)
    finally:
        await engine.dispose()


async def _begin(
    repo: IdempotencyRepository,
    key: str = "k-1",
    *,
    fp: str = FP,
    now: dt.datetime = T0,
    api_key_id: str = "pub1",
    owner: str = "replica-a",
) -> BeginResult:
    return await repo.begin(
        api_key_id=api_key_id,
        key=key,
        agent_name="acme",
        operation="orders.create",
        fingerprint=fp,
        now=now,
        expires_at=now + WEEK,
        stale_before=now - STALE,
        owner=owner,
    )


async def _finish(repo: IdempotencyRepository, key: str = "k-1", *, now: dt.datetime = T0) -> bool:
    return await repo.finish(
        "pub1",
        key,
        status=200,
        content_type="application/json",
        response=b'{"id":"7"}',
        now=now,
        expires_at=now + WEEK,
    )


# Fingerprints and agent keys


def test_fingerprint_ignores_whitespace_and_key_order() -> None:
    a = fingerprint("acme", "orders.create", b'{"a": 1, "b": [1, 2]}')
    b = fingerprint("acme", "orders.create", b'{ "b":[1,2],\n "a":1 }')
    assert a == b and len(a) == 64
    assert a != fingerprint("acme", "orders.create", b'{"a": 1, "b": [2, 1]}')
    assert a != fingerprint("other", "orders.create", b'{"a": 1, "b": [1, 2]}')
    assert a != fingerprint("acme", "customers.create", b'{"a": 1, "b": [1, 2]}')


def test_agent_key_is_scoped_by_the_api_key_and_fits_a_frame() -> None:
    assert agent_key("pub1", "order-42") == "pub1:order-42"
    assert agent_key("pub1", "k") != agent_key("pub2", "k")
    long = agent_key("abcdefghijkl", "x" * 255)
    assert len(long) <= AGENT_KEY_MAX
    assert long.startswith("abcdefghijkl:sha256:")
    assert long == agent_key("abcdefghijkl", "x" * 255)
    assert long != agent_key("abcdefghijkl", "x" * 254 + "y")


def test_operations_status_asks_about_the_scoped_key() -> None:
    caller_key, body = _scope_status_key("pub1", b'{"idempotency_key": "order-1"}')
    assert caller_key == "order-1"
    assert orjson.loads(body) == {"idempotency_key": "pub1:order-1"}


# The table


async def test_table_matches_the_migration(database_url: str) -> None:
    await upgrade(database_url)
    engine = create_engine(database_url)
    try:

        def diff(sync_connection: Connection) -> list[Any]:
            context = MigrationContext.configure(sync_connection, opts={"compare_type": True})
            return [
                change
                for change in compare_metadata(context, metadata)
                if "idempotency_keys" in repr(change)
            ]

        async with engine.connect() as connection:
            assert await connection.run_sync(diff) == []
    finally:
        await engine.dispose()


# The repository


async def test_begin_finish_then_replay(repo: IdempotencyRepository) -> None:
    assert (await _begin(repo)).claim is Claim.STARTED
    in_flight = await _begin(repo)
    assert in_flight.claim is Claim.IN_PROGRESS
    assert await _finish(repo)
    replay = await _begin(repo, now=T0 + dt.timedelta(days=1))
    assert replay.claim is Claim.REPLAY
    assert replay.record is not None
    assert (replay.record.status, replay.record.response) == (200, b'{"id":"7"}')
    assert replay.record.content_type == "application/json"
    assert replay.record.state is IdempotencyState.DONE
    assert not await _finish(repo), "a finished row is not finished twice"


async def test_mismatch_whatever_the_state(repo: IdempotencyRepository) -> None:
    await _begin(repo)
    mismatch = await _begin(repo, fp=OTHER_FP)
    assert mismatch.claim is Claim.MISMATCH
    await _finish(repo)
    assert (await _begin(repo, fp=OTHER_FP)).claim is Claim.MISMATCH


async def test_keys_are_per_api_key(repo: IdempotencyRepository) -> None:
    assert (await _begin(repo, api_key_id="pub1")).claim is Claim.STARTED
    assert (await _begin(repo, api_key_id="pub2", fp=OTHER_FP)).claim is Claim.STARTED


async def test_unknown_is_taken_over_not_replayed(repo: IdempotencyRepository) -> None:
    await _begin(repo)
    later = T0 + dt.timedelta(seconds=5)
    assert await repo.mark_unknown("pub1", "k-1", now=later, expires_at=later + WEEK)
    record = await repo.get("pub1", "k-1")
    assert record is not None and record.state is IdempotencyState.UNKNOWN
    assert record.response is None and record.status is None
    retry = await _begin(repo, now=later)
    assert retry.claim is Claim.RESUMED
    assert (await _begin(repo, now=later)).claim is Claim.IN_PROGRESS
    assert await _finish(repo, now=later)
    assert (await _begin(repo, now=later)).claim is Claim.REPLAY


async def test_stale_in_progress_is_taken_over(repo: IdempotencyRepository) -> None:
    await _begin(repo)
    assert (await _begin(repo, now=T0 + STALE)).claim is Claim.IN_PROGRESS
    taken = await _begin(repo, now=T0 + STALE + dt.timedelta(seconds=1))
    assert taken.claim is Claim.RESUMED


async def test_release_lets_a_retry_start_afresh(repo: IdempotencyRepository) -> None:
    await _begin(repo)
    assert await repo.release("pub1", "k-1")
    assert await repo.get("pub1", "k-1") is None
    assert (await _begin(repo, fp=OTHER_FP)).claim is Claim.STARTED
    await _finish(repo)
    assert not await repo.release("pub1", "k-1"), "a settled row is never released"


async def test_expired_rows_are_replaced_and_purged(repo: IdempotencyRepository) -> None:
    await _begin(repo, "old")
    await _finish(repo, "old")
    await _begin(repo, "fresh", now=T0 + dt.timedelta(days=3))
    after = T0 + WEEK
    assert (await _begin(repo, "old", fp=OTHER_FP, now=after)).claim is Claim.STARTED
    assert await repo.purge(after) == 0, "the replaced row lives on"
    await _begin(repo, "gone")
    assert await repo.purge(after) == 1
    assert await repo.get("pub1", "gone") is None
    assert await repo.get("pub1", "fresh") is not None
    assert await repo.purge(after + WEEK) == 2


async def test_twenty_concurrent_begins_have_one_winner(repo: IdempotencyRepository) -> None:
    results = await asyncio.gather(*(_begin(repo, "race") for _ in range(20)))
    claims = [result.claim for result in results]
    assert claims.count(Claim.STARTED) == 1
    assert claims.count(Claim.IN_PROGRESS) == 19


async def test_twenty_concurrent_takeovers_have_one_winner(repo: IdempotencyRepository) -> None:
    await _begin(repo, "race")
    await repo.mark_unknown("pub1", "race", now=T0, expires_at=T0 + WEEK)
    results = await asyncio.gather(*(_begin(repo, "race") for _ in range(20)))
    claims = [result.claim for result in results]
    assert claims.count(Claim.RESUMED) == 1
    assert claims.count(Claim.IN_PROGRESS) == 19


# The service


async def test_service_round_trip_and_purger(database_url: str) -> None:
    await upgrade(database_url)
    engine = create_engine(database_url)
    clock = Clock(T0)
    service = Idempotency(
        IdempotencyRepository(engine), retention_s=3600, stale_after_s=150, clock=clock
    )
    try:
        ticket, first = await service.begin("pub1", "k", "acme", "orders.create", b'{"a":1}')
        assert first.claim is Claim.STARTED
        _, again = await service.begin("pub1", "k", "acme", "orders.create", b'{ "a" : 1 }')
        assert again.claim is Claim.IN_PROGRESS
        await service.finish(ticket, 409, "application/problem+json", b'{"code":"conflict"}')
        _, replay = await service.begin("pub1", "k", "acme", "orders.create", b'{"a":1}')
        assert replay.claim is Claim.REPLAY
        assert replay.record is not None and replay.record.status == 409

        clock.now = T0 + dt.timedelta(hours=2)
        purger = IdempotencyPurger(service, interval_s=3600)
        await purger.start()
        try:
            for _ in range(200):
                if purger.purged:
                    break
                await asyncio.sleep(0.01)
        finally:
            await purger.stop()
        assert purger.purged == 1
        async with engine.connect() as connection:
            assert (
                await connection.scalar(sa.select(sa.func.count()).select_from(idempotency_keys))
                == 0
            )
    finally:
        await engine.dispose()


async def test_claims_record_their_owner(repo: IdempotencyRepository) -> None:
    await _begin(repo, owner="replica-a")
    record = await repo.get("pub1", "k-1")
    assert record is not None and record.owner == "replica-a"
    later = T0 + dt.timedelta(seconds=5)
    await repo.mark_unknown("pub1", "k-1", now=later, expires_at=later + WEEK)
    assert (await _begin(repo, now=later, owner="replica-b")).claim is Claim.RESUMED
    record = await repo.get("pub1", "k-1")
    assert record is not None and record.owner == "replica-b", "a takeover changes the owner"


async def test_rows_of_owners_not_alive_become_unknown(repo: IdempotencyRepository) -> None:
    await _begin(repo, "mine", owner="replica-a")
    await _begin(repo, "dead", owner="replica-b")
    await _begin(repo, "done", owner="replica-b")
    await _finish(repo, "done")
    later = T0 + dt.timedelta(seconds=1)
    assert await repo.abandon_orphans(frozenset({"replica-a"}), later) == 1
    states = {key: (await repo.get("pub1", key)) for key in ("mine", "dead", "done")}
    assert {key: r.state if r else None for key, r in states.items()} == {
        "mine": IdempotencyState.IN_PROGRESS,
        "dead": IdempotencyState.UNKNOWN,
        "done": IdempotencyState.DONE,
    }
    assert (await _begin(repo, "dead", now=later)).claim is Claim.RESUMED
    assert await repo.abandon_orphans(frozenset({"replica-a"}), later) == 0


async def test_settling_needs_the_claim_when_an_owner_is_given(
    repo: IdempotencyRepository,
) -> None:
    await _begin(repo, owner="replica-b")
    assert not await repo.release("pub1", "k-1", owner="replica-a")
    assert not await repo.mark_unknown("pub1", "k-1", now=T0, expires_at=T0 + WEEK, owner="x")
    assert not await repo.finish(
        "pub1",
        "k-1",
        status=200,
        content_type="application/json",
        response=b"{}",
        now=T0,
        expires_at=T0 + WEEK,
        owner="replica-a",
    )
    record = await repo.get("pub1", "k-1")
    assert record is not None and record.state is IdempotencyState.IN_PROGRESS
    assert await repo.release("pub1", "k-1", owner="replica-b")
