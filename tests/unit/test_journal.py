"""The agent's write journal, alone and under the dispatcher, against the demo ERP."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from agent.connectors.base import CallContext
from agent.connectors.demo import DemoConnector, DemoSession
from agent.dispatch import STATUS_OPERATION, Dispatcher, Failure, Outcome, Success
from agent.executor import Executor, Running
from agent.journal import Journal, JournalUnavailable, fingerprint
from protocol.errors import ErrorCode
from protocol.frames import Call
from protocol.operations.catalogue import CATALOGUE
from protocol.operations.customers import NewCustomer

# -- the journal alone ---------------------------------------------------------------------------


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "state" / "journal.sqlite")
    yield j
    j.close()


def test_wal_and_synchronous_full(journal: Journal) -> None:
    assert journal.pragmas() == {"journal_mode": "wal", "synchronous": "full"}
    assert journal.path.exists()


def test_state_transitions(journal: Journal) -> None:
    assert journal.get("k1") is None
    assert journal.receive("k1", "orders.create", "fp", "req-1")
    entry = journal.get("k1")
    assert entry is not None and entry.state == "received" and entry.owner == journal.owner
    assert not journal.receive("k1", "orders.create", "fp")  # a key is journalled once
    journal.executing("k1")
    assert journal.get("k1").state == "executing"  # type: ignore[union-attr]
    journal.done("k1", '{"id":"7"}')
    done = journal.get("k1")
    assert done is not None and done.state == "done" and done.result == '{"id":"7"}'

    journal.receive("k2", "customers.create", "fp2")
    journal.executing("k2")
    journal.failed("k2", "conflict", "a customer with this NIP already exists", {"nip": "1"})
    failed = journal.get("k2")
    assert failed is not None and failed.state == "failed"
    assert (failed.error_code, failed.error_details) == ("conflict", {"nip": "1"})
    journal.forget("k2")
    assert journal.get("k2") is None


def test_rows_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    first = Journal(path)
    first.receive("k", "orders.create", "fp")
    first.executing("k")
    first.close()
    second = Journal(path)
    entry = second.get("k")
    assert entry is not None and entry.state == "executing"
    assert entry.owner != second.owner  # left by "another process"
    second.close()


def test_purge_deletes_old_rows_only(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite", retention_days=30)
    journal.receive("old", "orders.create", "fp")
    journal.done("old", "{}")
    assert journal.purge(now=time.time() + 29 * 86400) == 0
    journal.receive("new", "orders.create", "fp")
    db = sqlite3.connect(journal.path)
    db.execute(
        "UPDATE write_journal SET updated_at = updated_at - 31 * 86400"
        " WHERE idempotency_key = 'old'"
    )
    db.commit()
    db.close()
    assert journal.purge() == 1
    assert journal.get("old") is None
    assert journal.get("new") is not None
    journal.close()


def test_fingerprint_is_canonical() -> None:
    a = NewCustomer.model_validate({"name": "Delta", "nip": "5260001246"})
    b = NewCustomer.model_validate({"nip": "5260001246", "name": "Delta"})
    assert fingerprint(a) == fingerprint(b) == fingerprint(a.model_dump(mode="json"))
    assert fingerprint(a) != fingerprint(NewCustomer.model_validate({"name": "Gamma"}))


def test_a_file_where_the_folder_should_be(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    journal = Journal(blocker / "journal.sqlite")
    with pytest.raises(JournalUnavailable, match="journal"):
        journal.open()
    with pytest.raises(JournalUnavailable):
        journal.receive("k", "orders.create", "fp")


def test_a_directory_where_the_file_should_be(tmp_path: Path) -> None:
    (tmp_path / "journal.sqlite").mkdir()
    with pytest.raises(JournalUnavailable):
        Journal(tmp_path / "journal.sqlite").open()


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes to read-only folders"
)
def test_a_read_only_folder(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(JournalUnavailable):
            Journal(folder / "journal.sqlite").open()
    finally:
        folder.chmod(0o700)


def test_recovers_when_the_disk_is_fixed(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("x")
    journal = Journal(blocker / "journal.sqlite")
    with pytest.raises(JournalUnavailable):
        journal.receive("k", "orders.create", "fp")
    blocker.unlink()
    assert journal.receive("k", "orders.create", "fp")
    journal.close()


# -- the dispatcher with a journal -----------------------------------------------------------------


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every operation that reached the demo ERP session."""
    seen: list[str] = []
    original = DemoSession.execute

    def spy(self: DemoSession, operation: str, args: Any, ctx: CallContext) -> Any:
        seen.append(operation)
        return original(self, operation, args, ctx)

    monkeypatch.setattr(DemoSession, "execute", spy)
    return seen


@pytest.fixture
def connector(erp_path: Path) -> Iterator[DemoConnector]:
    c = DemoConnector(str(erp_path), seed=False)
    yield c
    c.close()


def _dispatcher(connector: DemoConnector, journal: Journal | None) -> tuple[Dispatcher, Executor]:
    executor = Executor(connector, 2)
    operations = frozenset(connector.info().operations) | {STATUS_OPERATION}
    return Dispatcher(executor, operations, journal=journal), executor


_CALL_IDS = iter(range(1, 1_000_000))


async def _run(
    dispatcher: Dispatcher, operation: str, args: dict[str, Any], key: str | None = None
) -> Outcome:
    call = Call(next(_CALL_IDS), operation, args, int(time.time() * 1000) + 30_000, key, "req")
    return await dispatcher.run(call, time.monotonic() + 30, Running())


def _json(outcome: Outcome) -> Any:
    assert isinstance(outcome, Success), outcome
    return orjson.loads(orjson.dumps(outcome.value))


def _customers(erp_path: Path) -> int:
    db = sqlite3.connect(erp_path)
    try:
        return int(db.execute("SELECT COUNT(*) FROM kh__Kontrahent").fetchone()[0])
    finally:
        db.close()


NEW = {"name": "Delta Journal Sp. z o.o.", "nip": "5260001246"}


async def test_a_duplicate_gets_the_recorded_result(
    connector: DemoConnector, journal: Journal, erp_path: Path, writes: list[str]
) -> None:
    dispatcher, executor = _dispatcher(connector, journal)
    try:
        before = _customers(erp_path)
        first = _json(await _run(dispatcher, "customers.create", NEW, "k-dup"))
        again = _json(await _run(dispatcher, "customers.create", NEW, "k-dup"))
        assert first == again
        assert writes == ["customers.create"]
        assert _customers(erp_path) == before + 1
        entry = journal.get("k-dup")
        assert entry is not None and entry.state == "done"
        assert orjson.loads(entry.result or "") == first
        status = _json(await _run(dispatcher, STATUS_OPERATION, {"idempotency_key": "k-dup"}))
        assert status == {
            "idempotency_key": "k-dup",
            "state": "done",
            "operation": "customers.create",
            "result": first,
            "error": None,
        }
    finally:
        executor.close()


async def test_concurrent_duplicates_write_once(
    connector: DemoConnector, journal: Journal, erp_path: Path, writes: list[str]
) -> None:
    dispatcher, executor = _dispatcher(connector, journal)
    try:
        results = await asyncio.gather(
            *(_run(dispatcher, "customers.create", NEW, "k-race") for _ in range(5))
        )
        assert len({orjson.dumps(_json(r)) for r in results}) == 1
        assert writes == ["customers.create"]
    finally:
        executor.close()


async def test_a_reused_key_with_other_arguments_is_refused(
    connector: DemoConnector, journal: Journal, writes: list[str]
) -> None:
    dispatcher, executor = _dispatcher(connector, journal)
    try:
        _json(await _run(dispatcher, "customers.create", NEW, "k-mis"))
        other = await _run(dispatcher, "customers.create", {"name": "Other"}, "k-mis")
        assert isinstance(other, Failure) and other.code is ErrorCode.IDEMPOTENCY_KEY_MISMATCH
        assert writes == ["customers.create"]
    finally:
        executor.close()


async def test_a_definite_failure_is_recorded_and_replayed(
    connector: DemoConnector, journal: Journal, writes: list[str]
) -> None:
    dispatcher, executor = _dispatcher(connector, journal)
    try:
        _json(await _run(dispatcher, "customers.create", NEW, "k-a"))
        taken = {**NEW, "name": "Same NIP"}
        first = await _run(dispatcher, "customers.create", taken, "k-b")
        assert isinstance(first, Failure) and first.code is ErrorCode.CONFLICT
        again = await _run(dispatcher, "customers.create", taken, "k-b")
        assert again == first
        assert writes == ["customers.create", "customers.create"]
        status = _json(await _run(dispatcher, STATUS_OPERATION, {"idempotency_key": "k-b"}))
        assert status["state"] == "failed"
        assert status["error"]["code"] == "conflict"
    finally:
        executor.close()


async def test_unwritable_journal_refuses_and_leaves_the_erp_alone(
    connector: DemoConnector, tmp_path: Path, erp_path: Path, writes: list[str]
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    dispatcher, executor = _dispatcher(connector, Journal(blocker / "journal.sqlite"))
    try:
        before = _customers(erp_path)
        refused = await _run(dispatcher, "customers.create", NEW, "k-nojournal")
        assert isinstance(refused, Failure)
        assert refused.code is ErrorCode.JOURNAL_UNAVAILABLE and refused.retryable
        assert "ERP was not touched" in refused.message
        assert writes == []
        assert _customers(erp_path) == before
        read = await _run(dispatcher, "customers.get", {"id": "1"})
        assert isinstance(read, Success)  # reads do not need the journal
    finally:
        executor.close()


async def test_an_interrupted_write_that_committed_is_found_in_the_erp(
    connector: DemoConnector, tmp_path: Path, erp_path: Path, writes: list[str]
) -> None:
    path = tmp_path / "journal.sqlite"
    dead = Journal(path)  # the process that died between the ERP commit and the journal
    args = NewCustomer.model_validate(NEW)
    dead.receive("k-crash", "customers.create", fingerprint(args))
    dead.executing("k-crash")
    dead.close()
    session = connector.open_session()
    committed = session.execute(
        "customers.create", args, CallContext("customers.create", "k-crash")
    )
    session.close()
    writes.clear()
    before = _customers(erp_path)

    journal = Journal(path)
    dispatcher, executor = _dispatcher(connector, journal)
    try:
        status = _json(await _run(dispatcher, STATUS_OPERATION, {"idempotency_key": "k-crash"}))
        assert status["state"] == "done"
        assert status["result"] == committed.model_dump(mode="json")
        retried = _json(await _run(dispatcher, "customers.create", NEW, "k-crash"))
        assert retried == committed.model_dump(mode="json")
        assert writes == []  # answered from the ERP lookup and then the journal
        assert _customers(erp_path) == before
    finally:
        executor.close()
        journal.close()


async def test_an_interrupted_write_that_never_reached_the_erp_runs_once(
    connector: DemoConnector, tmp_path: Path, erp_path: Path, writes: list[str]
) -> None:
    path = tmp_path / "journal.sqlite"
    dead = Journal(path)
    dead.receive("k-early", "customers.create", fingerprint(NewCustomer.model_validate(NEW)))
    dead.executing("k-early")
    dead.close()
    journal = Journal(path)
    dispatcher, executor = _dispatcher(connector, journal)
    try:
        status = _json(await _run(dispatcher, STATUS_OPERATION, {"idempotency_key": "k-early"}))
        assert status["state"] == "failed"
        assert status["error"]["code"] == "timeout"
        before = _customers(erp_path)
        _json(await _run(dispatcher, "customers.create", NEW, "k-early"))
        _json(await _run(dispatcher, "customers.create", NEW, "k-early"))
        assert writes == ["customers.create"]
        assert _customers(erp_path) == before + 1
    finally:
        executor.close()
        journal.close()


async def test_status_of_an_unknown_key(connector: DemoConnector, journal: Journal) -> None:
    dispatcher, executor = _dispatcher(connector, journal)
    try:
        status = _json(await _run(dispatcher, STATUS_OPERATION, {"idempotency_key": "nope"}))
        assert status["state"] == "unknown"
        assert CATALOGUE[STATUS_OPERATION].writes is False
    finally:
        executor.close()


async def test_a_write_without_a_key_runs_unjournalled(
    connector: DemoConnector, journal: Journal, writes: list[str]
) -> None:
    dispatcher, executor = _dispatcher(connector, journal)
    try:
        _json(await _run(dispatcher, "customers.create", NEW))
        assert writes == ["customers.create"]
    finally:
        executor.close()


async def test_a_cancelled_delivery_still_records_the_outcome(
    connector: DemoConnector,
    journal: Journal,
    erp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The link dropped while the ERP worked: the write finishes, the journal knows it."""
    release = threading.Event()
    started = threading.Event()
    original = DemoSession.execute

    def slow(self: DemoSession, operation: str, args: Any, ctx: CallContext) -> Any:
        started.set()
        release.wait(10)
        return original(self, operation, args, ctx)

    monkeypatch.setattr(DemoSession, "execute", slow)
    dispatcher, executor = _dispatcher(connector, journal)
    try:
        before = _customers(erp_path)
        first = asyncio.create_task(_run(dispatcher, "customers.create", NEW, "k-cancel"))
        await asyncio.to_thread(started.wait, 10)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        duplicate = asyncio.create_task(_run(dispatcher, "customers.create", NEW, "k-cancel"))
        await asyncio.sleep(0.05)
        assert not duplicate.done()  # waits for the first delivery, does not write again
        release.set()
        result = _json(await duplicate)
        entry = journal.get("k-cancel")
        assert entry is not None and entry.state == "done"
        assert orjson.loads(entry.result or "") == result
        assert _customers(erp_path) == before + 1
    finally:
        release.set()
        executor.close()
