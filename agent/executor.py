"""Runs connector calls in a bounded pool of worker threads, one ERP session per thread.

ERP databases are reached through blocking drivers (pyodbc, sqlite3, COM), so calls run in
threads; the pool size is the agent's concurrency limit, capped by the connector's licence
seats. Each thread lazily opens its own session and keeps it, so connections are reused and
never shared. A session that reports the ERP unreachable is dropped and reopened on the next
call, which is how the agent reconnects to a restarted database by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from pydantic import BaseModel

from agent.connectors.base import (
    CallContext,
    ChangePoll,
    Connector,
    ConnectorSession,
    ErpUnavailable,
)

_T = TypeVar("_T")


class NotStarted(Exception):
    """The call was cancelled or its deadline passed before it reached the ERP."""


class Running:
    """Handle of one call, so another thread can stop it."""

    __slots__ = ("cancelled", "session")

    def __init__(self) -> None:
        self.cancelled = False
        self.session: ConnectorSession | None = None

    def interrupt(self) -> None:
        self.cancelled = True
        session = self.session
        if session is not None:
            session.interrupt()


class Executor:
    def __init__(self, connector: Connector, max_concurrency: int) -> None:
        seats = connector.info().max_sessions
        self.workers = min(max_concurrency, seats) if seats else max_concurrency
        self._connector = connector
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="erp")
        self._local = threading.local()
        self._sessions: set[ConnectorSession] = set()
        self._lock = threading.Lock()
        self._inline_session: ConnectorSession | None = None

    @property
    def blocking(self) -> bool:
        """False when calls run on the event loop, where nothing can interrupt them."""
        return self._connector.blocking

    async def run(
        self, operation: str, args: BaseModel, ctx: CallContext, running: Running
    ) -> tuple[BaseModel, float]:
        """Run one call; returns the result and the milliseconds spent in the ERP."""
        if not self._connector.blocking:
            return self._execute(operation, args, ctx, running, inline=True)
        loop = asyncio.get_running_loop()
        # In the call's context, so that the connector's log lines carry its request id.
        run = contextvars.copy_context().run
        return await loop.run_in_executor(
            self._pool, run, self._execute, operation, args, ctx, running, False
        )

    async def find_write(self, operation: str, idempotency_key: str) -> BaseModel | None:
        """`ConnectorSession.find_write` in a worker's own session: recovery after a crash
        uses the same licence seats as calls, never one more."""
        return await self._in_session(lambda s: s.find_write(operation, idempotency_key))

    async def probe(self) -> None:
        """`ConnectorSession.probe` in a worker's own session, for the same reason."""
        await self._in_session(lambda session: session.probe())

    async def poll_changes(self, state: bytes | None) -> ChangePoll:
        """`ConnectorSession.poll_changes` in a worker's own session, for the same reason."""
        return await self._in_session(lambda session: session.poll_changes(state))

    async def _in_session(self, use: Callable[[ConnectorSession], _T]) -> _T:
        if not self._connector.blocking:
            return self._use_session(use, True)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._use_session, use, False)

    def _use_session(self, use: Callable[[ConnectorSession], _T], inline: bool) -> _T:
        session = self._session(inline)
        try:
            return use(session)
        except ErpUnavailable:
            self._drop(session, inline)
            raise

    def _execute(
        self,
        operation: str,
        args: BaseModel,
        ctx: CallContext,
        running: Running,
        inline: bool,
    ) -> tuple[BaseModel, float]:
        if running.cancelled:
            raise NotStarted("cancelled before it started")
        if ctx.deadline is not None and time.monotonic() >= ctx.deadline:
            raise NotStarted("the deadline passed before the call reached the ERP")
        session = self._session(inline)
        running.session = session
        started = time.perf_counter()
        try:
            result = session.execute(operation, args, ctx)
        except ErpUnavailable:
            self._drop(session, inline)
            raise
        finally:
            running.session = None
        return result, (time.perf_counter() - started) * 1000

    def _session(self, inline: bool) -> ConnectorSession:
        session: ConnectorSession | None = (
            self._inline_session if inline else getattr(self._local, "session", None)
        )
        if session is None:
            session = self._connector.open_session()
            with self._lock:
                self._sessions.add(session)
            if inline:
                self._inline_session = session
            else:
                self._local.session = session
        return session

    def _drop(self, session: ConnectorSession, inline: bool) -> None:
        if inline:
            self._inline_session = None
        else:
            self._local.session = None
        with self._lock:
            self._sessions.discard(session)
        with contextlib.suppress(Exception):  # a broken session may fail to close; it is gone
            session.close()

    def close(self) -> None:
        """Stop the pool after running calls finish, then close every session."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            sessions, self._sessions = self._sessions, set()
        for session in sessions:
            with contextlib.suppress(Exception):  # best effort at shutdown
                session.close()
