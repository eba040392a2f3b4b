"""`ConsoleStore` on SQLite and PostgreSQL: operators, sessions, audit log, events; and the
console's use of the jobs table (retry)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest

from relay.console import passwords
from relay.console.sessions import Sessions, csrf_token, token_hash
from relay.events import EventLog
from relay.problems import Problem
from relay.store import AlreadyExists, NotFoundError, Store, upgrade
from relay.store.console import ConsoleStore
from relay.store.jobs import (
    CANCELLED,
    EXPIRED,
    FAILED,
    PENDING,
    JobNotRetryable,
    JobStore,
)
from tests.support.clock import Clock

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
PASSWORD = "correct horse battery"


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
async def console(database_url: str, clock: Clock) -> AsyncIterator[ConsoleStore]:
    await upgrade(database_url)
    store = await Store.open(database_url, clock=clock)
    try:
        yield ConsoleStore(store.engine, clock=store.clock)
    finally:
        await store.close()


async def _operator(console: ConsoleStore, username: str = "ala", role: str = "admin") -> None:
    await console.create_operator(username, passwords.hash_password(PASSWORD), role)


async def test_operators_are_unique_and_validated(console: ConsoleStore) -> None:
    await _operator(console)
    with pytest.raises(AlreadyExists):
        await _operator(console)
    with pytest.raises(ValueError, match="role"):
        await console.create_operator("ola", "x", "root")
    with pytest.raises(ValueError, match="username"):
        await console.create_operator("Bad Name", "x", "viewer")
    found = await console.operator_for_sign_in("ala")
    assert found is not None and found[0].role == "admin"
    assert found[1].startswith("$argon2id$"), "Argon2id, never the password"
    assert "password" not in repr(found[0])


async def test_disabling_ends_sessions_and_sign_in(console: ConsoleStore, clock: Clock) -> None:
    await _operator(console)
    sessions = Sessions(console, idle_s=60, max_s=3600)
    secret, _ = await sessions.sign_in("ala", PASSWORD, "192.0.2.1")
    await console.disable_operator("ala")
    assert await console.session(token_hash(secret)) is None
    with pytest.raises(Problem) as raised:
        await sessions.sign_in("ala", PASSWORD, "192.0.2.2")
    assert raised.value.code == "unauthorized"
    with pytest.raises(NotFoundError):
        await console.disable_operator("nobody")


async def test_session_stores_only_a_hash(console: ConsoleStore) -> None:
    await _operator(console)
    sessions = Sessions(console, idle_s=60, max_s=3600)
    secret, view = await sessions.sign_in("ala", PASSWORD, "192.0.2.1")
    assert view.csrf_token == csrf_token(secret) != secret
    record = await console.session(token_hash(secret))
    assert record is not None and record.username == "ala"
    assert await console.session(secret) is None, "the secret itself is not a key"


async def test_idle_and_absolute_expiry(console: ConsoleStore, clock: Clock) -> None:
    await _operator(console)
    sessions = Sessions(console, idle_s=60, max_s=150)
    secret, _ = await sessions.sign_in("ala", PASSWORD, "192.0.2.1")
    for _ in range(2):  # busy: each request moves the idle deadline
        clock.advance(50)
        assert (await sessions.resume(secret)).username == "ala"
    clock.advance(50)  # 150 s after sign-in: the absolute limit, however busy
    with pytest.raises(Problem) as raised:
        await sessions.resume(secret)
    assert raised.value.code == "session_expired"
    with pytest.raises(Problem) as raised:
        await sessions.resume(secret)
    assert raised.value.code == "unauthorized", "an expired session is deleted"

    idle, _ = await sessions.sign_in("ala", PASSWORD, "192.0.2.1")
    clock.advance(61)
    with pytest.raises(Problem) as raised:
        await sessions.resume(idle)
    assert raised.value.code == "session_expired"


async def test_wrong_password_and_unknown_user_answer_alike(console: ConsoleStore) -> None:
    await _operator(console)
    sessions = Sessions(console, idle_s=60, max_s=3600)
    answers = []
    for username, password in (("ala", "wrong password!"), ("nobody", PASSWORD)):
        with pytest.raises(Problem) as raised:
            await sessions.sign_in(username, password, "192.0.2.9")
        answers.append((raised.value.status, raised.value.code, raised.value.detail))
    assert answers[0] == answers[1]


async def test_failed_sign_ins_are_throttled_per_address(console: ConsoleStore) -> None:
    await _operator(console)
    sessions = Sessions(console, idle_s=60, max_s=3600)
    for _ in range(5):
        with pytest.raises(Problem):
            await sessions.sign_in("ala", "wrong password!", "192.0.2.7")
    with pytest.raises(Problem) as raised:
        await sessions.sign_in("ala", PASSWORD, "192.0.2.7")
    assert raised.value.status == 429 and "Retry-After" in raised.value.headers
    await sessions.sign_in("ala", PASSWORD, "192.0.2.8")  # another address is not affected


async def test_outdated_hash_is_replaced_at_sign_in(console: ConsoleStore) -> None:
    from argon2 import PasswordHasher

    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    await console.create_operator("ala", weak, "viewer")
    await Sessions(console, idle_s=60, max_s=3600).sign_in("ala", PASSWORD, "192.0.2.1")
    found = await console.operator_for_sign_in("ala")
    assert found is not None and found[1] != weak and not passwords.needs_rehash(found[1])
    assert found[0].last_login_at is not None


async def test_audit_pages_and_export(console: ConsoleStore) -> None:
    for n in range(7):
        await console.append_audit(
            actor="operator:ala",
            action="agent.create",
            target=f"agent:a{n}",
            details={"n": n},
            address="192.0.2.1",
            request_id=f"req-{n}",
        )
    page = await console.audit_page(limit=3)
    assert [e.target for e in page] == ["agent:a6", "agent:a5", "agent:a4"]
    older = await console.audit_page(limit=3, before=page[-1].id)
    assert [e.target for e in older] == ["agent:a3", "agent:a2", "agent:a1"]
    exported = [e async for e in console.audit_since(None)]
    assert [e.details for e in exported] == [{"n": n} for n in range(7)]


async def test_events_append_follow_and_purge(console: ConsoleStore, clock: Clock) -> None:
    log = EventLog(console, retention_s=3600, poll_interval_s=0.05)
    await log.start()
    try:
        log.publish("agent.connected", "acme", {"session_id": "s1"})
        log.publish("agent.disconnected", "acme", {"session_id": "s1", "reason": "goaway"})
        log.publish("job.finished", "acme", {"job_id": "job_1", "state": "succeeded"})
        stream = log.stream(0)
        got = [await anext(stream) for _ in range(3)]
        assert [e.kind for e in got] == ["agent.connected", "agent.disconnected", "job.finished"]
        history = await log.history("acme", limit=10, before=None)
        assert [e.kind for e in history] == ["agent.disconnected", "agent.connected"]
        clock.advance(3601)
        assert await console.purge_events(clock.now - dt.timedelta(seconds=3600)) == 3
        await stream.aclose()
    finally:
        await log.stop()


async def test_a_second_writer_is_seen_by_polling(console: ConsoleStore) -> None:
    """Rows another replica writes reach this replica's followers by polling."""
    log = EventLog(console, retention_s=3600, poll_interval_s=0.05)
    await log.start()
    try:
        stream = log.stream(None)
        first = anext(stream)
        await console.append_events([(T0, "agent.recovered", "acme", {})])
        event = await first
        assert event.kind == "agent.recovered"
        await stream.aclose()
    finally:
        await log.stop()


async def _job(jobs: JobStore, **overrides: Any) -> str:
    job = await jobs.create(
        api_key_id="key1",
        agent_name="acme",
        operation="documents.create",
        args=b'{"a": 1}',
        ttl=dt.timedelta(seconds=60),
        writes=True,
        **overrides,
    )
    return job.public_id


async def test_retry_failed_and_expired_jobs(console: ConsoleStore, clock: Clock) -> None:
    jobs = JobStore(console._engine, clock=clock)
    failed_id = await _job(jobs)
    job = await jobs.get(failed_id)
    assert job is not None
    await jobs.claim(job.id, "r1")
    failed = await jobs.finish(job.id, FAILED, error_code="erp_error", runner="r1")
    assert failed is not None and failed.args == b'{"a": 1}', "kept for a retry"
    retried = await jobs.retry(failed_id)
    assert retried.state == PENDING and retried.attempts == 0 and retried.error_code is None
    assert retried.idempotency_key == f"job:{failed_id}", "same key: never written twice"
    with pytest.raises(JobNotRetryable):
        await jobs.retry(failed_id)

    expired_id = await _job(jobs)
    clock.advance(61)
    assert [j.public_id for j in await jobs.expire_due()] == [failed_id, expired_id]
    again = await jobs.retry(expired_id)
    assert again.expires_at == clock.now + dt.timedelta(seconds=60), "a fresh time to live"

    cancelled = await jobs.cancel(await _job(jobs), None)
    assert cancelled.state == CANCELLED
    with pytest.raises(JobNotRetryable):
        await jobs.retry(cancelled.public_id)

    assert await jobs.purge_results(clock.now + dt.timedelta(seconds=1)) >= 1
    gone = await jobs.get(failed_id)
    assert gone is not None and gone.state == EXPIRED and gone.args is None
    with pytest.raises(JobNotRetryable, match="erased"):
        await jobs.retry(failed_id)
