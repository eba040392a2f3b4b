"""One connection to the relay, from the handshake to its end.

`run_link` connects, says hello, waits for welcome, then serves calls until the connection
ends, and reports how it ended. It never retries: deciding what happens next is the
supervisor's job (the chisel split of connectionLoop and connectionOnce). An agent may run
several at once (``[relay] connections``); each is one `run_link` at a time, numbered by
``hello.slot``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from agent.dispatch import Dispatcher, Success
from agent.executor import Running
from agent.health import ErpHealth, report
from agent.logs import log_call
from agent.settings import AgentSettings
from protocol.errors import CloseCode, ProtocolError, close_reason
from protocol.frames import Call, Cancel, GoAway, Hello, Welcome
from protocol.limits import Limits
from protocol.logs import REQUEST_ID
from protocol.session import AgentSession
from protocol.version import SUBPROTOCOL

log = logging.getLogger("agent.link")


class ConnectFailed(Exception):
    """The connection could not be opened; ``message`` tells the office admin what to fix."""


@dataclass(frozen=True, slots=True)
class LinkEnded:
    reason: str
    goaway: GoAway | None = None
    moved: bool = False
    """The agent left on its own after welcome, to be placed on another relay replica."""


Placement = Callable[[Welcome], str | None]
"""Asked once per connection, right after welcome and before any call is taken: why this
connection should not stay where the load balancer put it (None: stay). Synchronous, so that
two links welcomed at the same moment cannot both decide on stale information."""


@dataclass
class LinkStatus:
    """What the agent knows about one of its connections, for status output and logs."""

    slot: int = 0
    url: str = ""
    connected: bool = False
    session_id: str = ""
    replica: str = ""
    """The relay replica holding the connection (empty when the relay does not say)."""
    connected_since: float = 0.0
    clock_skew_ms: int = 0
    last_error: str = ""
    calls: int = 0
    connections: int = 0
    """Connections of this link that opened and have ended."""
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    """Set while a session is open (after welcome), cleared when it ends."""


async def run_link(
    settings: AgentSettings,
    dispatcher: Dispatcher,
    hello: Hello,
    status: LinkStatus,
    placement: Placement | None = None,
    health: ErpHealth | None = None,
) -> LinkEnded:
    """Connect once and serve until the connection ends; raise `ConnectFailed` if it never opens.

    With ``health``, the connection reports it to the relay (`agent.health.report`)."""
    token = settings.read_token()
    relay = settings.relay
    url = status.url = relay.link_url(hello.slot)
    try:
        ws = await connect(
            url,
            subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
            additional_headers={"Authorization": f"Bearer {token}"},
            compression=None,
            open_timeout=relay.connect_timeout_s,
            ping_interval=relay.ping_interval_s,
            ping_timeout=relay.ping_timeout_s,
            close_timeout=5,
            max_size=relay.max_frame_bytes,
            user_agent_header=f"erp-agent/{hello.agent_version}",
        )
    except Exception as exc:
        raise ConnectFailed(explain_connect_error(exc, url)) from exc
    try:
        return await _serve(ws, settings, dispatcher, hello, status, placement, health)
    finally:
        status.connected = False
        status.ready.clear()
        await ws.close()


async def _serve(
    ws: ClientConnection,
    settings: AgentSettings,
    dispatcher: Dispatcher,
    hello: Hello,
    status: LinkStatus,
    placement: Placement | None,
    health: ErpHealth | None,
) -> LinkEnded:
    session = AgentSession(Limits(max_frame_bytes=settings.relay.max_frame_bytes))
    running: dict[int, tuple[asyncio.Task[None], Running]] = {}
    reporter: asyncio.Task[None] | None = None
    try:
        sent_ms = time.time() * 1000
        await ws.send(session.hello(hello))
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
        # arrives as the inner future completes, and the supervisor's stop would be lost.
        async with asyncio.timeout(settings.relay.connect_timeout_s):
            first = await ws.recv()
        welcome = session.receive(first)
        assert isinstance(welcome, Welcome)
        leave = placement(welcome) if placement is not None else None
        if leave is not None:
            log.info("leaving to be placed elsewhere", extra={"slot": hello.slot, "reason": leave})
            await ws.close(CloseCode.NORMAL, close_reason(leave))
            return LinkEnded(leave, moved=True)
        status.connected = True
        status.ready.set()
        status.session_id = welcome.session_id
        status.replica = welcome.replica
        status.connected_since = time.time()
        status.clock_skew_ms = clock_skew_ms(sent_ms, welcome.time_ms, time.time() * 1000)
        log.info(
            "connected to the relay",
            extra={
                "slot": hello.slot,
                "session": welcome.session_id,
                "replica": welcome.replica,
                "relay_version": welcome.relay_version,
                "clock_skew_ms": status.clock_skew_ms,
            },
        )
        if health is not None:
            reporter = asyncio.create_task(report(ws, session, health))
        async for message in ws:
            frame = session.receive(message)
            if isinstance(frame, Call):
                handle = Running()
                task = asyncio.create_task(_answer(ws, session, dispatcher, frame, handle, status))
                running[frame.id] = (task, handle)
                task.add_done_callback(functools.partial(_forget, running, frame.id))
            elif isinstance(frame, Cancel):
                entry = running.get(frame.id)
                if entry is not None:
                    entry[1].interrupt()
            elif isinstance(frame, GoAway):
                log.info("relay asked to reconnect", extra={"reason": frame.reason})
                await _finish(running, settings.relay.connect_timeout_s)
                return LinkEnded(f"goaway: {frame.reason}", frame)
        return LinkEnded(_closed_reason(ws))
    except ConnectionClosed:
        return LinkEnded(_closed_reason(ws))
    except TimeoutError:
        return LinkEnded("the relay did not answer hello in time")
    except ProtocolError as exc:
        log.error("the relay broke the protocol", extra={"reason": exc.reason})
        await ws.close(exc.close_code, exc.reason)
        return LinkEnded(f"protocol error: {exc.reason}")
    finally:
        if reporter is not None:
            reporter.cancel()
        for task, handle in list(running.values()):
            handle.interrupt()
            task.cancel()


def _forget(
    running: dict[int, tuple[asyncio.Task[None], Running]], call_id: int, _task: object
) -> None:
    running.pop(call_id, None)


async def _finish(running: dict[int, tuple[asyncio.Task[None], Running]], grace_s: float) -> None:
    """Let calls in flight send their answers before leaving after a goaway."""
    tasks = [task for task, _ in running.values()]
    if tasks:
        await asyncio.wait(tasks, timeout=grace_s)


async def _answer(
    ws: ClientConnection,
    session: AgentSession,
    dispatcher: Dispatcher,
    call: Call,
    handle: Running,
    status: LinkStatus,
) -> None:
    started = time.perf_counter()
    REQUEST_ID.set(call.request_id)  # this task's lines, and the threads it runs, carry it
    deadline = (
        time.monotonic() + (call.deadline_ms - status.clock_skew_ms - time.time() * 1000) / 1000
    )
    outcome = await dispatcher.run(call, deadline, handle)
    agent_ms = (time.perf_counter() - started) * 1000
    status.calls += 1
    log_call(call, outcome, agent_ms)
    if isinstance(outcome, Success):
        data = session.result(call.id, outcome.value, agent_ms, outcome.erp_ms)
    else:
        data = session.error(
            call.id,
            outcome.code.value,
            outcome.message,
            retryable=outcome.retryable,
            details=outcome.details,
            agent_ms=agent_ms,
            erp_ms=outcome.erp_ms,
        )
    with contextlib.suppress(ConnectionClosed):
        await ws.send(data)


def clock_skew_ms(sent_ms: float, relay_ms: int, received_ms: float) -> int:
    """Relay clock minus agent clock, NTP-style: the relay stamped welcome about halfway
    between our hello leaving and its welcome arriving. Assuming zero transit instead would
    add the one-way delay to every deadline, and a call could start after its deadline."""
    return round(relay_ms - (sent_ms + received_ms) / 2)


def _closed_reason(ws: ClientConnection) -> str:
    if ws.close_code is not None:
        return f"closed: {ws.close_code} {ws.close_reason or ''}".strip()
    return "connection lost"


def explain_connect_error(exc: BaseException, url: str) -> str:
    """One sentence an office admin can act on, for each failure a first install meets."""
    if isinstance(exc, InvalidStatus):
        response = exc.response
        detail = ""
        try:
            body = orjson.loads(response.body or b"{}")
            detail = str(body.get("detail", "")) if isinstance(body, dict) else ""
        except orjson.JSONDecodeError:
            pass
        status = response.status_code
        if status == 401:
            return f"the relay rejected the agent token (401): {detail or 'unknown or revoked'}"
        if status == 403:
            return f"the relay refused this agent (403): {detail}"
        if status == 426:
            return f"protocol version refused by the relay: {detail}"
        return f"the relay answered HTTP {status} instead of opening the connection: {detail}"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the relay's host name in {url} (DNS): {exc}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"the relay's TLS certificate is not trusted: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake with the relay failed: {exc}"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection to {url} refused: is the relay running, is a firewall in the way?"
    if isinstance(exc, TimeoutError):
        return f"no answer from {url} in time: check the network, firewall or proxy"
    if isinstance(exc, InvalidHandshake):
        return f"the WebSocket handshake with {url} failed: {exc}"
    if isinstance(exc, OSError):
        return f"cannot reach {url}: {exc}"
    return f"cannot connect to {url}: {type(exc).__name__}: {exc}"
