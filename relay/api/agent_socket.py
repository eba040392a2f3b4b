"""``GET /v1/agent/connect``: where agents hold their outbound WebSocket.

Everything that can be refused is refused *before* the upgrade, as plain HTTP with a problem
document, so an office admin sees "401 token revoked" instead of a socket that opens and dies:
a draining relay, tokens in the query string, no common protocol version, a missing or bad
token. After the upgrade the first frame must be hello within `hello_timeout_s`; a malformed
frame closes only that connection, with a close code and a reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from starlette.websockets import WebSocket

from protocol.errors import CloseCode, ErrorCode, ProtocolError, close_reason
from protocol.frames import CHANGE_EVENT, HEALTH_EVENT, Error, Event, GoAway, Hello, Result
from protocol.limits import Limits
from protocol.session import RelaySession
from protocol.version import refusal_reason, select_subprotocol
from relay.auth import bearer_token
from relay.events import AGENT_CONNECTED, AGENT_DISCONNECTED
from relay.hub import AgentLink
from relay.hub.health import LinkHealth
from relay.problems import Problem
from relay.state import RelayState, relay_state
from relay.store.records import AgentIdentity

log = logging.getLogger("relay.agents")

_SECRET_QUERY_NAMES = frozenset({"token", "access_token", "api_key", "key", "authorization"})


async def agent_socket(websocket: WebSocket) -> None:
    state = relay_state(websocket)
    client = websocket.client
    remote = f"{client.host}:{client.port}" if client else "unknown"
    try:
        identity, subprotocol = await _admit(state, websocket)
    except Problem as problem:
        log.info("agent connection refused", extra={"remote": remote, "code": problem.code})
        state.metrics.connection_refused(problem.code.value)
        await _deny(websocket, problem)
        return
    await websocket.accept(subprotocol=subprotocol)
    session = RelaySession(Limits(max_frame_bytes=state.settings.max_frame_bytes))
    try:
        link = await _handshake(state, websocket, session, identity, remote)
        if link is None:
            return
    except ProtocolError as exc:
        await _protocol_error(websocket, identity, remote, exc)
        return
    reason = "agent disconnected"
    state.hub.add(link)
    state.metrics.connections_opened.inc()
    if state.cluster is not None:
        state.cluster.agent_connected(link)
    if state.jobs is not None:
        state.jobs.agent_connected(link.agent)
    state.publish(
        AGENT_CONNECTED,
        link.agent,
        {
            "session_id": link.session_id,
            "replica": state.replica_id,
            "remote_address": link.remote,
            "agent_version": link.hello.agent_version,
            "connector": link.hello.connector,
            "erp": link.hello.erp,
            "slot": link.hello.slot,
        },
    )
    log.info(
        "agent connected",
        extra={
            "agent": link.agent,
            "session": link.session_id,
            "remote": remote,
            "agent_version": link.hello.agent_version,
            "connector": link.hello.connector,
        },
    )
    await _note_seen(state, link)
    try:
        reason = await _serve(state, websocket, session, link)
    except ProtocolError as exc:
        reason = exc.reason
        await _protocol_error(websocket, identity, remote, exc)
    finally:
        link.close(f"connection closed: {reason}")
        state.hub.remove(link)
        state.metrics.connections_closed.inc()
        if state.cluster is not None:
            state.cluster.agent_disconnected(link)
        log.info(
            "agent disconnected",
            extra={"agent": link.agent, "session": link.session_id, "reason": reason},
        )
        state.publish(
            AGENT_DISCONNECTED,
            link.agent,
            {
                "session_id": link.session_id,
                "replica": state.replica_id,
                "reason": link.drop_reason or ("goaway" if link.leaving else reason),
            },
        )
        await _note_seen(state, link)


async def _admit(state: RelayState, websocket: WebSocket) -> tuple[AgentIdentity, str]:
    """Every check that happens before the upgrade; raises `Problem` to refuse."""
    if state.draining:
        raise Problem(
            ErrorCode.AGENT_OFFLINE,
            "this relay is shutting down; connect again",
            status=503,
            headers={"Retry-After": "1"},
        )
    if _SECRET_QUERY_NAMES & {name.lower() for name in websocket.query_params}:
        raise Problem(
            ErrorCode.BAD_REQUEST,
            "credentials are never accepted in the URL; send 'Authorization: Bearer <token>'",
        )
    offered = list(websocket.scope.get("subprotocols", []))
    subprotocol = select_subprotocol(offered)
    if subprotocol is None:
        raise Problem(ErrorCode.BAD_REQUEST, refusal_reason(offered), status=426)
    token = bearer_token(websocket.headers.get("authorization"))
    identity = await state.store.authenticate_agent(token)
    if identity is None:
        raise Problem(ErrorCode.UNAUTHORIZED, "the agent token is unknown or revoked")
    return identity, subprotocol


async def _deny(websocket: WebSocket, problem: Problem) -> None:
    response = problem.response()
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(response)
    else:  # a server without the denial extension: the best left is a close frame
        await websocket.close(CloseCode.POLICY_VIOLATION, close_reason(problem.detail))


async def _handshake(
    state: RelayState,
    websocket: WebSocket,
    session: RelaySession,
    identity: AgentIdentity,
    remote: str,
) -> AgentLink | None:
    """Wait for hello, answer welcome; None when the agent left or stayed silent."""
    try:
        async with asyncio.timeout(state.settings.hello_timeout_s):
            message = await websocket.receive()
    except TimeoutError:
        await websocket.close(CloseCode.HELLO_TIMEOUT, "no hello in time")
        return None
    if message["type"] == "websocket.disconnect":
        return None
    hello = session.receive(_payload(message))
    assert isinstance(hello, Hello)
    raw_send = websocket._send

    async def send_bytes(data: bytes) -> None:
        await raw_send({"type": "websocket.send", "bytes": data})

    async def close_socket(code: int, reason: str) -> None:
        # The agent may have gone first (a replaced or handed-over connection often has):
        # then there is nothing left to close, and nobody to tell (uvicorn raises its
        # ClientDisconnected, an OSError; Starlette a RuntimeError once it saw the close).
        with contextlib.suppress(OSError, RuntimeError):
            await raw_send(
                {"type": "websocket.close", "code": code, "reason": close_reason(reason)}
            )

    link = AgentLink(
        agent=identity.agent_name,
        session_id=secrets.token_hex(8),
        session=session,
        hello=hello,
        send=send_bytes,
        remote=remote,
        close_socket=close_socket,
        token_public_id=identity.token_public_id,
    )
    welcome = session.welcome(
        link.session_id, state.version, int(time.time() * 1000), replica=state.replica_id
    )
    await send_bytes(welcome)
    return link


async def _serve(
    state: RelayState, websocket: WebSocket, session: RelaySession, link: AgentLink
) -> str:
    """Route the agent's frames until it leaves; returns why it ended."""
    # The raw ASGI receive: Starlette's wrapper re-checks the socket state on every frame.
    receive = websocket._receive
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return f"agent disconnected (close code {message.get('code', 1005)})"
        data = message.get("bytes")
        frame = session.receive(data if data is not None else _payload(message))
        if isinstance(frame, Result | Error):
            link.deliver(frame)
        elif isinstance(frame, Event):
            if frame.kind == HEALTH_EVENT:
                _note_health(state, link, frame)
            elif frame.kind == CHANGE_EVENT and state.changes is not None:
                # Queued, never awaited here: stored and acked by relay/changefeed/ingest.py.
                state.changes.ingest.offer(link, frame)
            else:
                log.info("agent event", extra={"agent": link.agent, "kind": frame.kind})
        elif isinstance(frame, GoAway):
            _hand_over(state, link, frame)


def _hand_over(state: RelayState, link: AgentLink, frame: GoAway) -> None:
    """The agent hands this connection over to a new one (`AgentLink.hand_over`)."""
    log.info(
        "agent hands its connection over",
        extra={"agent": link.agent, "session": link.session_id, "reason": frame.reason},
    )
    link.hand_over(frame.reason, state.settings.shutdown_grace_s)
    if state.cluster is not None:  # other replicas stop routing here, and wait for the new one
        state.cluster.agent_disconnected(link)


def _note_health(state: RelayState, link: AgentLink, frame: Event) -> None:
    health = LinkHealth.from_event(frame.data)
    if health is None:
        log.info("unreadable health event", extra={"agent": link.agent})
        return
    previous, link.health = link.health, health
    if previous is None or previous.erp != health.erp:
        log.info("agent health", extra={"agent": link.agent, "erp": health.erp})
        if state.fleet is not None:
            state.fleet.health_changed()


async def _protocol_error(
    websocket: WebSocket, identity: AgentIdentity, remote: str, exc: ProtocolError
) -> None:
    log.warning(
        "agent broke the protocol",
        extra={"agent": identity.agent_name, "remote": remote, "reason": exc.reason},
    )
    await websocket.close(exc.close_code, exc.reason)


def _payload(message: Any) -> bytes | str:
    data = message.get("bytes")
    if data is None:
        data = message.get("text")
    if not isinstance(data, bytes | str):
        raise ProtocolError("empty message")
    return data


async def _note_seen(state: RelayState, link: AgentLink) -> None:
    try:
        await state.store.record_agent_seen(
            link.agent,
            at=datetime.now(UTC),
            version=link.hello.agent_version,
            connector=link.hello.connector,
            erp=link.hello.erp,
            address=link.remote,
        )
    except Exception:
        log.exception("could not record agent presence", extra={"agent": link.agent})
