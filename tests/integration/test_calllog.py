from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Sequence

import pytest
from sqlalchemy.exc import OperationalError

from relay.calllog import CallLog
from relay.store import CallLogRow, Store

T0 = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)
LONG = 3600.0  # an interval no test waits for: flushes must come from batches or stop()


def _row(i: int) -> CallLogRow:
    return CallLogRow(
        at=T0 + dt.timedelta(milliseconds=i),
        api_key_id="abcdefghijkl",
        agent_name="shop-1",
        operation="customers.get",
        status=200,
        code=None,
        duration_ms=1.0,
        request_id=f"secret-looking-request-{i}",
    )


class FakeStore:
    """Records batches; fails the next `failures` writes with `error`."""

    def __init__(self) -> None:
        self.batches: list[list[CallLogRow]] = []
        self.failures = 0
        self.error: Exception = OperationalError("INSERT", {}, Exception("database is down"))
        self.attempts = 0
        self._changed = asyncio.Event()

    async def write_call_log(self, rows: Sequence[CallLogRow]) -> None:
        self.attempts += 1
        self._changed.set()
        if self.failures:
            self.failures -= 1
            raise self.error
        self.batches.append(list(rows))

    @property
    def rows(self) -> list[CallLogRow]:
        return [row for batch in self.batches for row in batch]

    async def wait_until(self, predicate: object) -> None:
        assert callable(predicate)
        async with asyncio.timeout(5):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()


async def test_full_batches_are_written_without_waiting_for_the_interval() -> None:
    store = FakeStore()
    log = CallLog(store, flush_interval=LONG, max_batch=3)
    await log.start()
    try:
        for i in range(7):
            log.record(_row(i))
        # A full batch wakes the writer, which then drains the queue in batches.
        await store.wait_until(lambda: len(store.rows) == 7)
        assert [len(b) for b in store.batches] == [3, 3, 1]
        # Fewer than a batch waits for the interval (or stop).
        log.record(_row(7))
        log.record(_row(8))
        await asyncio.sleep(0.05)
        assert log.pending == 2
    finally:
        await log.stop()
    assert [len(b) for b in store.batches] == [3, 3, 1, 2]
    assert store.rows == [_row(i) for i in range(9)]
    assert log.written == 9
    assert log.dropped == 0


async def test_rows_are_written_every_interval() -> None:
    store = FakeStore()
    log = CallLog(store, flush_interval=0.01, max_batch=500)
    await log.start()
    try:
        log.record(_row(0))
        log.record(_row(1))
        await store.wait_until(lambda: len(store.rows) == 2)
        assert store.batches == [[_row(0), _row(1)]]
    finally:
        await log.stop()


async def test_stop_flushes_what_is_left() -> None:
    store = FakeStore()
    log = CallLog(store, flush_interval=LONG, max_batch=4)
    await log.start()
    for i in range(10):
        log.record(_row(i))
    await log.stop()
    assert store.rows == [_row(i) for i in range(10)]
    assert all(len(b) <= 4 for b in store.batches)
    assert log.written == 10
    assert log.pending == 0


async def test_stop_without_start_still_flushes() -> None:
    store = FakeStore()
    log = CallLog(store, flush_interval=LONG)
    log.record(_row(0))
    await log.stop()
    assert store.rows == [_row(0)]


async def test_overflow_drops_and_counts() -> None:
    store = FakeStore()
    log = CallLog(store, flush_interval=LONG, max_batch=100, max_queue=3)
    for i in range(5):
        log.record(_row(i))
    assert log.pending == 3
    assert log.dropped == 2
    await log.stop()
    assert store.rows == [_row(0), _row(1), _row(2)]


async def test_rows_recorded_after_stop_are_dropped() -> None:
    store = FakeStore()
    log = CallLog(store, flush_interval=LONG)
    await log.start()
    await log.stop()
    log.record(_row(0))
    assert log.dropped == 1
    assert log.pending == 0


async def test_a_failing_store_is_retried_in_order(caplog: pytest.LogCaptureFixture) -> None:
    store = FakeStore()
    store.failures = 3
    log = CallLog(store, flush_interval=0.01, max_batch=2)
    await log.start()
    try:
        for i in range(5):
            log.record(_row(i))
        await store.wait_until(lambda: len(store.rows) == 5)
    finally:
        await log.stop()
    assert store.rows == [_row(i) for i in range(5)]
    assert log.failures == 3
    assert log.written == 5
    assert log.dropped == 0
    assert "OperationalError" in caplog.text
    assert "secret-looking-request" not in caplog.text


async def test_connection_errors_are_transient_too() -> None:
    store = FakeStore()
    store.failures = 1
    store.error = ConnectionRefusedError("refused")
    log = CallLog(store, flush_interval=0.01)
    await log.start()
    try:
        log.record(_row(0))
        await store.wait_until(lambda: len(store.rows) == 1)
    finally:
        await log.stop()
    assert log.failures == 1
    assert log.dropped == 0


async def test_rows_the_database_refuses_are_dropped_not_retried_forever(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FakeStore()
    store.failures = 1
    store.error = ValueError("naive datetime")
    log = CallLog(store, flush_interval=0.01, max_batch=2)
    await log.start()
    try:
        for i in range(4):
            log.record(_row(i))
        await store.wait_until(lambda: len(store.rows) == 2)
    finally:
        await log.stop()
    assert store.rows == [_row(2), _row(3)]
    assert log.dropped == 2
    assert log.written == 2
    assert caplog.records
    assert all(r.levelno >= logging.WARNING for r in caplog.records)


async def test_rows_still_unwritable_at_stop_are_counted_as_dropped() -> None:
    store = FakeStore()
    store.failures = 1_000
    log = CallLog(store, flush_interval=LONG, max_batch=2)
    await log.start()
    for i in range(5):
        log.record(_row(i))
    await log.stop()
    assert log.written == 0
    assert log.dropped == 5
    assert log.pending == 0


async def test_start_twice_is_an_error() -> None:
    log = CallLog(FakeStore(), flush_interval=LONG)
    await log.start()
    try:
        with pytest.raises(RuntimeError):
            await log.start()
    finally:
        await log.stop()


@pytest.mark.parametrize("kwargs", [{"flush_interval": 0}, {"max_batch": 0}, {"max_queue": 0}])
def test_bad_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="positive"):
        CallLog(FakeStore(), **kwargs)  # type: ignore[arg-type]


async def test_with_the_real_store(store: Store) -> None:
    log = CallLog(store, flush_interval=LONG, max_batch=50)
    await log.start()
    for i in range(120):
        log.record(_row(i))
    await log.stop()
    assert log.written == 120
    recent = await store.recent_calls("shop-1", 200)
    assert len(recent) == 120
    assert recent[0] == _row(119)


async def test_steady_load_is_written_once_per_interval() -> None:
    """Rows arriving during a write wait for the next interval instead of forcing more writes."""

    class SlowStore:
        def __init__(self) -> None:
            self.writes = 0

        async def write_call_log(self, rows: Sequence[CallLogRow]) -> None:
            self.writes += 1
            await asyncio.sleep(0.02)

    store = SlowStore()
    log = CallLog(store, flush_interval=0.2)
    await log.start()
    loop = asyncio.get_running_loop()
    end = loop.time() + 0.5
    while loop.time() < end:
        log.record(_row(0))
        await asyncio.sleep(0.001)
    await log.stop()
    assert store.writes <= 5, f"{store.writes} writes for 0.5 s of load at a 0.2 s interval"
