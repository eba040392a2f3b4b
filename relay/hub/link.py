"""One agent connection as seen from the relay: send calls, match answers, fail on close.

The protocol rules live in `protocol.session.RelaySession`; this class only adds the asyncio
plumbing: a future per call id, and the ASGI ``send`` callable of the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from protocol.errors import CloseCode
from protocol.frames import Error, Hello, JSONValue, Result
from protocol.session import RelaySession
from relay.hub.health import LinkHealth

SendBytes = Callable[[bytes], Awaitable[None]]
CloseSocket = Callable[[int, str], Coroutine[Any, Any, None]]

_closing: set[asyncio.Task[None]] = set()
"""Sockets being closed from the relay's side (a strong reference until they are)."""


class LinkClosed(Exception):
    """The connection ended while the call was in flight: the outcome is unknown."""


class CallTimedOut(Exception):
    """Nobody answered before the call's deadline."""


class CallerGone(Exception):
    """The HTTP caller disconnected before the answer came."""


class CallTarget(Protocol):
    """Where a call can be sent: a connection here (`AgentLink`) or at another replica
    (`relay.cluster.bus.RemoteLink`). ``start_call`` raises `LinkClosed` when the call could
    not be sent."""

    async def start_call(
        self,
        operation: str,
        args: JSONValue,
        deadline_ms: int,
        idempotency_key: str | None,
        request_id: str | None,
    ) -> tuple[int, asyncio.Future[Result | Error]]: ...

    async def cancel(self, call_id: int, reason: str) -> None: ...


class AgentLink:
    __slots__ = (
        "_close_socket",
        "_send",
        "agent",
        "calls",
        "closed",
        "connected_at",
        "drop_reason",
        "errors",
        "health",
        "hello",
        "leaving",
        "remote",
        "session",
        "session_id",
        "token_public_id",
        "waiters",
    )

    def __init__(
        self,
        *,
        agent: str,
        session_id: str,
        session: RelaySession,
        hello: Hello,
        send: SendBytes,
        remote: str,
        close_socket: CloseSocket | None = None,
        token_public_id: str = "",
    ) -> None:
        self.agent = agent
        self.token_public_id = token_public_id
        """The public id of the token the agent authenticated with: revoking it closes this."""
        self._close_socket = close_socket
        self.session_id = session_id
        self.session = session
        self.hello = hello
        self._send = send
        self.remote = remote
        self.connected_at = time.time()
        self.waiters: dict[int, asyncio.Future[Result | Error]] = {}
        self.closed = False
        self.leaving = False
        """Goaway was sent or received: it finishes its calls but takes no new ones (the agent
        is moving to another replica, or handing the connection over to a new one)."""
        self.calls = 0
        self.errors = 0
        self.drop_reason: str | None = None
        """Why the relay ended this connection (`drop`), for the disconnect event."""
        self.health: LinkHealth | None = None
        """The agent's last ``health`` event on this connection (None before the first)."""

    @property
    def usable(self) -> bool:
        return not self.closed and not self.leaving

    @property
    def in_flight(self) -> int:
        return len(self.waiters)

    def supports(self, operation: str) -> bool:
        return operation in self.hello.operations

    async def start_call(
        self,
        operation: str,
        args: JSONValue,
        deadline_ms: int,
        idempotency_key: str | None,
        request_id: str | None,
    ) -> tuple[int, asyncio.Future[Result | Error]]:
        """Send a call frame; the future resolves with the agent's result or error frame."""
        if self.closed:
            raise LinkClosed("connection closed")
        call_id, data = self.session.call(operation, args, deadline_ms, idempotency_key, request_id)
        future: asyncio.Future[Result | Error] = asyncio.get_running_loop().create_future()
        self.waiters[call_id] = future
        self.calls += 1
        try:
            await self._send(data)
        except Exception as exc:
            self.waiters.pop(call_id, None)
            # A socket that cannot send is going away: no further call may pick it while its
            # reader has not noticed yet (the next attempt goes to another connection).
            self.close(f"could not send a call: {exc}")
            raise LinkClosed(f"could not send the call: {exc}") from exc
        return call_id, future

    async def cancel(self, call_id: int, reason: str) -> None:
        """Tell the agent nobody waits for ``call_id``; harmless if it already answered."""
        self.waiters.pop(call_id, None)
        data = self.session.cancel(call_id, reason)
        if data is not None and not self.closed:
            with contextlib.suppress(Exception):  # the link is going away; its reader cleans up
                await self._send(data)

    def deliver(self, frame: Result | Error) -> None:
        future = self.waiters.pop(frame.id, None)
        if isinstance(frame, Error):
            self.errors += 1
        if future is not None and not future.done():
            future.set_result(frame)

    async def send(self, data: bytes) -> None:
        await self._send(data)

    def hand_over(self, reason: str, grace_s: float) -> None:
        """The agent sent goaway (a new token, a reloaded config): take no new call, let the
        ones in flight be answered for up to ``grace_s``, then close normally. The agent
        reconnects as soon as it sees the close; calls arriving meanwhile wait for it, as for
        an agent moving away from a draining replica (`Hub.is_moving`)."""
        if self.leaving or self.closed:
            return
        self.leaving = True
        task = asyncio.get_running_loop().create_task(self._drain(reason, grace_s))
        _closing.add(task)
        task.add_done_callback(_closing.discard)

    async def _drain(self, reason: str, grace_s: float) -> None:
        in_flight = list(self.waiters.values())
        if in_flight:
            await asyncio.wait(in_flight, timeout=grace_s)
        if not self.closed:
            self.drop(CloseCode.NORMAL, f"handed over: {reason}")

    def close(self, reason: str) -> None:
        """Fail every call still waiting: their outcome is unknown."""
        self.closed = True
        waiters, self.waiters = self.waiters, {}
        for future in waiters.values():
            if not future.done():
                future.set_exception(LinkClosed(reason))

    def drop(self, code: int, reason: str) -> None:
        """End the connection from the relay's side (replaced, revoked, disconnected by an
        operator)."""
        self.drop_reason = reason
        self.close(reason)
        if self._close_socket is not None:
            task = asyncio.get_running_loop().create_task(self._close_socket(code, reason))
            _closing.add(task)
            task.add_done_callback(_closing.discard)

    def describe(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "token_public_id": self.token_public_id,
            "leaving": self.leaving,
            "agent_version": self.hello.agent_version,
            "connector": self.hello.connector,
            "erp": self.hello.erp,
            "hostname": self.hello.hostname,
            "instance_id": self.hello.instance_id,
            "slot": self.hello.slot,
            "remote_address": self.remote,
            "connected_since": self.connected_at,
            "max_concurrency": self.hello.max_concurrency,
            "in_flight": self.in_flight,
            "calls": self.calls,
            "errors": self.errors,
            "rtt_ms": self.health.rtt_ms if self.health else None,
            "erp_state": self.health.erp if self.health else None,
            "erp_detail": self.health.detail if self.health else "",
            "not_allowed": list(self.hello.not_allowed),
        }
