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
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
)

from agent.changefeed import ChangeFeed
from agent.diagnosis import clock_warning, explain_connect_error
from agent.dispatch import Dispatcher, Success
from agent.executor import Running
from agent.health import ErpHealth, report
from agent.logs import log_call
from agent.settings import AgentSettings
from agent.status import Activity
from protocol.credentials import public_id
from protocol.errors import CloseCode, ProtocolError, close_reason
from protocol.frames import Ack, Call, Cancel, GoAway, Hello, Welcome
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
    handed_over: bool = False
    """The agent sent goaway (`Handover`): the next connection takes over at once."""


HANDOVER_GRACE_S = 60.0
"""How long a connection that sent goaway waits for the relay to close it (the relay closes
it once its calls are answered, within its own bounded drain) before closing it itself."""


class Handover:
    """A request to one connection to make way for a new one (a new token, a reloaded config).

    The connection sends goaway and keeps answering until the relay has closed it, so no call
    is lost: the relay stops sending new ones and holds them for the next connection."""

    def __init__(self) -> None:
        self.reason = ""
        self._asked = asyncio.Event()

    def ask(self, reason: str) -> None:
        self.reason = reason
        self._asked.set()

    @property
    def asked(self) -> bool:
        return self._asked.is_set()

    async def wait(self) -> None:
        await self._asked.wait()


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
    clock_warning: str = ""
    """Set while the skew measured at welcome is beyond `agent.diagnosis.CLOCK_SKEW_WARN_MS`:
    what to fix."""
    route: str = ""
    """``direct`` or the proxy the connection goes through, its password hidden."""
    last_error: str = ""
    calls: int = 0
    connections: int = 0
    """Connections of this link that opened and have ended."""
    token_id: str = ""
    """The public id of the token the connection authenticated with
    (`protocol.credentials.public_id`)."""
    activity: Activity = field(default_factory=Activity)
    """Where answered calls are noted for the status file; the supervisor shares one."""
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    """Set while a session is open (after welcome), cleared when it ends."""


async def run_link(
    settings: AgentSettings,
    dispatcher: Dispatcher,
    hello: Hello,
    status: LinkStatus,
    placement: Placement | None = None,
    health: ErpHealth | None = None,
    handover: Handover | None = None,
    changes: ChangeFeed | None = None,
) -> LinkEnded:
    """Connect once and serve until the connection ends; raise `ConnectFailed` if it never opens.

    With ``health``, the connection reports it to the relay (`agent.health.report`); with
    ``handover``, it can be asked to make way for a new connection; with ``changes``, it
    offers itself to send the change feed (`ChangeFeed.serve`) and hands it the acks."""
    token = settings.read_token()
    status.token_id = public_id(token)
    relay = settings.relay
    url = status.url = relay.link_url(hello.slot)
    route = relay.egress(url)
    status.route = route.shown
    try:
        ws = await connect(
            url,
            **route.connect_kwargs(),
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
        raise ConnectFailed(explain_connect_error(exc, url, route)) from exc
    try:
        return await _serve(
            ws, settings, dispatcher, hello, status, placement, health, handover, changes
        )
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
    handover: Handover | None,
    changes: ChangeFeed | None,
) -> LinkEnded:
    session = AgentSession(Limits(max_frame_bytes=settings.relay.max_frame_bytes))
    running: dict[int, tuple[asyncio.Task[None], Running]] = {}
    companions: list[asyncio.Task[None]] = []
    leaver: asyncio.Task[None] | None = None
    leave: str | None = None
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
            handover = _placed_elsewhere(leave, hello.slot)
        else:
            status.connected = True
            status.ready.set()
            _welcomed(status, welcome, sent_ms, hello.slot)
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
            companions = _companions(ws, session, hello.slot, health, changes)
        if handover is not None:
            leaver = asyncio.create_task(_hand_over(ws, session, handover, hello.slot))
        async for message in ws:
            frame = session.receive(message)
            if isinstance(frame, Call):
                handle = Running()
                task = asyncio.create_task(_answer(ws, session, dispatcher, frame, handle, status))
                running[frame.id] = (task, handle)
                task.add_done_callback(functools.partial(_forget, running, frame.id))
            elif isinstance(frame, Cancel | Ack):
                _settle(frame, running, changes)
            elif isinstance(frame, GoAway):
                log.info("relay asked to reconnect", extra={"reason": frame.reason})
                await _finish(running, settings.relay.connect_timeout_s)
                return LinkEnded(f"goaway: {frame.reason}", frame)
    except ConnectionClosed:
        pass
    except TimeoutError:
        return LinkEnded("the relay did not answer hello in time")
    except ProtocolError as exc:
        log.error("the relay broke the protocol", extra={"reason": exc.reason})
        await ws.close(exc.close_code, exc.reason)
        return LinkEnded(f"protocol error: {exc.reason}")
    finally:
        for helper in filter(None, (*companions, leaver)):
            helper.cancel()
        for task, handle in list(running.values()):
            handle.interrupt()
            task.cancel()
    if leave is not None:
        return LinkEnded(leave, moved=True)
    return LinkEnded(_closed_reason(ws), handed_over=handover is not None and handover.asked)


def _settle(
    frame: Cancel | Ack,
    running: dict[int, tuple[asyncio.Task[None], Running]],
    changes: ChangeFeed | None,
) -> None:
    """A call nobody waits for any more (stop it), or a change event the relay stored."""
    if isinstance(frame, Cancel):
        entry = running.get(frame.id)
        if entry is not None:
            entry[1].interrupt()
    elif changes is not None:
        changes.acked(frame)


def _companions(
    ws: ClientConnection,
    session: AgentSession,
    slot: int,
    health: ErpHealth | None,
    changes: ChangeFeed | None,
) -> list[asyncio.Task[None]]:
    """What runs beside a welcomed connection: its health reports, and its offer to send the
    change feed (only after welcome: no event goes out before it)."""
    tasks = []
    if health is not None:
        tasks.append(asyncio.create_task(report(ws, session, health)))
    if changes is not None:
        tasks.append(asyncio.create_task(changes.serve(ws, session, slot)))
    return tasks


def _forget(
    running: dict[int, tuple[asyncio.Task[None], Running]], call_id: int, _task: object
) -> None:
    running.pop(call_id, None)


async def _finish(running: dict[int, tuple[asyncio.Task[None], Running]], grace_s: float) -> None:
    """Let calls in flight send their answers before leaving after a goaway."""
    tasks = [task for task, _ in running.values()]
    if tasks:
        await asyncio.wait(tasks, timeout=grace_s)


def _placed_elsewhere(reason: str, slot: int) -> Handover:
    """Leave to be placed on another replica: handed over like any other connection, not just
    closed, because the relay may already have sent it a call, and a write lost on a closing
    socket has no known outcome."""
    log.info("leaving to be placed elsewhere", extra={"slot": slot, "reason": reason})
    handover = Handover()
    handover.ask(reason)
    return handover


async def _hand_over(
    ws: ClientConnection, session: AgentSession, handover: Handover, slot: int
) -> None:
    """Send goaway when asked, then wait (bounded) for the relay to close the connection;
    the reading loop keeps answering the calls that still arrive meanwhile."""
    await handover.wait()
    log.info("handing the connection over", extra={"slot": slot, "reason": handover.reason})
    with contextlib.suppress(ConnectionClosed):
        await ws.send(session.goaway(handover.reason))
        await asyncio.sleep(HANDOVER_GRACE_S)
        await ws.close(CloseCode.NORMAL, close_reason(f"handed over: {handover.reason}"))


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
    status.activity.call(call.operation, outcome, agent_ms)
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


def _welcomed(status: LinkStatus, welcome: Welcome, sent_ms: float, slot: int) -> None:
    """What the status learns at welcome. A large clock skew is a warning in the log and in
    the status, where `erp-agent check` and `erp-agent status` show it until a later welcome
    clears it."""
    status.session_id = welcome.session_id
    status.replica = welcome.replica
    status.connected_since = time.time()
    status.clock_skew_ms = clock_skew_ms(sent_ms, welcome.time_ms, time.time() * 1000)
    status.clock_warning = clock_warning(status.clock_skew_ms)
    if status.clock_warning:
        log.warning(status.clock_warning, extra={"slot": slot})


def _closed_reason(ws: ClientConnection) -> str:
    if ws.close_code is not None:
        return f"closed: {ws.close_code} {ws.close_reason or ''}".strip()
    return "connection lost"
