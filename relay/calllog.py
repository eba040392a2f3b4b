"""The call log writer: CRM calls are recorded in memory and written to the database in batches.

`record` runs on the hot path of every CRM call, so it only appends to a deque: no await, no
lock, no I/O. A background task writes what has accumulated every `flush_interval` seconds, or
sooner once `max_batch` rows wait, with one bulk insert per batch.

When the database is slow or down the queue grows up to `max_queue` rows; beyond that new rows
are dropped and counted in `dropped` rather than slowing calls down or exhausting memory. The
call log is an operator's aid, not an audit trail; losing rows under overload is the intended
trade.

A failed write is classified:

- transient (connection lost, database locked, timeout): the batch goes back to the front of
  the queue and is retried at the next interval, in order;
- anything else (the database refused the rows, e.g. a value that does not fit): retrying would
  fail forever and block every later row, so the batch is dropped and counted.

Logs carry counts and the error's type only: no rows (and never payloads, which rows do not
hold anyway). Use from the event loop's thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from typing import Protocol

from sqlalchemy.exc import InterfaceError, OperationalError

from relay.store.records import CallLogRow

logger = logging.getLogger(__name__)

TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    OSError,
    TimeoutError,
)
"""Write failures that waiting can cure; the batch is kept and retried."""


class CallLogWriter(Protocol):
    """What `CallLog` needs from the store (`relay.store.Store` provides it)."""

    async def write_call_log(self, rows: Sequence[CallLogRow]) -> None: ...


class CallLog:
    """Batches `CallLogRow`s and writes them in the background; see the module docstring."""

    def __init__(
        self,
        store: CallLogWriter,
        *,
        flush_interval: float = 1.0,
        max_batch: int = 500,
        max_queue: int = 100_000,
    ) -> None:
        if flush_interval <= 0 or max_batch < 1 or max_queue < 1:
            raise ValueError("flush_interval, max_batch and max_queue must be positive")
        self._store = store
        self._flush_interval = flush_interval
        self._max_batch = max_batch
        self._max_queue = max_queue
        self._queue: deque[CallLogRow] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._stopped = False
        self.written = 0
        """Rows the database accepted."""
        self.dropped = 0
        """Rows lost: queue full, refused by the database, or still unwritten at stop."""
        self.failures = 0
        """Failed write attempts (each logged)."""

    @property
    def pending(self) -> int:
        """Rows waiting to be written."""
        return len(self._queue)

    def record(self, row: CallLogRow) -> None:
        """Queue one row; O(1), never blocks, never raises for a full queue."""
        if self._stopped or len(self._queue) >= self._max_queue:
            self.dropped += 1
            return
        self._queue.append(row)
        if len(self._queue) >= self._max_batch:
            self._wake.set()

    async def start(self) -> None:
        """Start the background writer."""
        if self._task is not None:
            raise RuntimeError("CallLog already started")
        self._task = asyncio.create_task(self._run(), name="call-log-writer")

    async def stop(self) -> None:
        """Stop the writer and write what is left, one attempt per batch.

        Rows that still cannot be written are counted in `dropped`; rows recorded after this
        are dropped too.
        """
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            task, self._task = self._task, None
            await task
        self._stopped = True
        while self._queue:
            batch = self._take()
            try:
                await self._store.write_call_log(batch)
            except Exception as exc:
                self._fail(exc, len(batch))
                lost = len(batch) + len(self._queue)
                self.dropped += lost
                self._queue.clear()
                logger.error("call log: %d rows not written at shutdown", lost)
                return
            self.written += len(batch)

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._flush_interval):
                    await self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            if not await self._flush():
                # Back off for a whole interval, even if `record` wakes us: the database is
                # not going to be back sooner because more rows arrived.
                await self._sleep_unless_stopping()

    async def _sleep_unless_stopping(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._flush_interval):
                while not self._stopping:
                    await self._wake.wait()
                    self._wake.clear()

    async def _flush(self) -> bool:
        """Write the rows queued when the flush began; False after a transient failure.

        Rows that arrive while a batch is being written wait for the next interval: draining
        until the queue is empty would, under steady load, never stop writing, and turn one
        commit a second into one commit every few calls.
        """
        remaining = len(self._queue)
        while remaining > 0 and not self._stopping:
            batch = self._take(remaining)
            remaining -= len(batch)
            try:
                await self._store.write_call_log(batch)
            except TRANSIENT_ERRORS as exc:
                self._queue.extendleft(reversed(batch))
                self._fail(exc, len(batch))
                return False
            except Exception as exc:
                self._fail(exc, len(batch))
                self.dropped += len(batch)
                logger.error("call log: dropped %d rows the database refused", len(batch))
                continue
            self.written += len(batch)
        return True

    def _take(self, limit: int | None = None) -> list[CallLogRow]:
        count = min(self._max_batch, len(self._queue), limit or len(self._queue))
        return [self._queue.popleft() for _ in range(count)]

    def _fail(self, exc: Exception, rows: int) -> None:
        self.failures += 1
        # The type only: driver messages may quote statement parameters.
        logger.warning(
            "call log: write of %d rows failed (%s); %d rows queued",
            rows,
            type(exc).__name__,
            len(self._queue),
        )
