"""``POST /v1/agents/{agent}/calls/{operation}``: the CRM's way into the ERP.

This is the hot path, so it is a raw ASGI handler that `relay.app.RelayApp` routes to before
FastAPI sees the request: no middleware stack, no request object, headers read in one pass.
The body is read once, validated once by the operation's model straight from bytes (pydantic's
Rust JSON parser) and forwarded as the same bytes inside the call frame (`orjson.Fragment`),
never re-serialised. No database access and no logging I/O happen here for reads: the API key
comes from the in-memory cache and the call log takes a row in a queue that a background task
writes. Writes (`Operation.writes`) add two small statements on the `idempotency_keys` table,
one to claim the Idempotency-Key before forwarding and one to record the outcome (`_write`,
`relay.idempotency`).

Order of checks, so that a caller learns nothing it is not granted: credentials (401), grant
for the agent (403), operation exists (404), grant for the operation (403), body (413/415/422),
for writes the Idempotency-Key (400 missing, 422 reused for another request, 409 still running,
or the stored answer replayed), agent known and online (404/503), operation supported by the
agent (501) and allowed by its site (403, `relay.site_policy`), then the call.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.types import Receive, Scope, Send

from protocol.errors import ErrorCode, parse_error_code
from protocol.frames import Error, Result
from protocol.logs import REQUEST_ID
from protocol.operations import Operation
from relay.api.admission import authorize, read_arguments, validate_arguments
from relay.cluster.bus import NotDelivered, RemoteLink
from relay.hub import CallerGone, CallTarget, CallTimedOut, LinkClosed
from relay.idempotency import REPLAYED_HEADER, agent_key
from relay.logs import log_call
from relay.problems import PROBLEM_MEDIA_TYPE, Problem, problem_body
from relay.site_policy import refusal
from relay.state import RelayState
from relay.store.idempotency import Claim
from relay.store.models import DOCUMENT_MAX
from relay.store.records import ApiKeyRecord, CallLogRow

log = logging.getLogger("relay.calls")

_MAX_HEADER_ID = 255
STATUS_OPERATION = "operations.status"
MAX_ATTEMPTS = 3
"""Connections tried per call: the first, and up to two more when it was not delivered (or, for
a read, lost before the answer)."""
MOVE_WAIT_S = 5.0
MOVE_POLL_S = 0.05
WATCH_CALLER_AFTER_S = 0.02
"""Most calls are answered sooner than this; only slower ones pay for a task that notices a
caller who hangs up (and then cancels the call at the agent)."""

_WANTED = frozenset(
    {b"authorization", b"content-type", b"content-length", b"x-request-id", b"idempotency-key"}
)


def parse_call_path(path: str) -> tuple[str, str] | None:
    """``/v1/agents/{agent}/calls/{operation}`` → (agent, operation), else None."""
    parts = path.split("/")
    if len(parts) != 6 or parts[1:3] != ["v1", "agents"] or parts[4] != "calls":
        return None
    return (parts[3], parts[5]) if parts[3] and parts[5] else None


async def handle_call(
    state: RelayState, scope: Scope, receive: Receive, send: Send, agent: str, operation: str
) -> None:
    started = time.perf_counter()
    headers: dict[bytes, str] = {}
    for name, value in scope["headers"]:
        if name in _WANTED:
            headers[name] = value.decode("latin-1")
    request_id = _request_id(headers.get(b"x-request-id"))
    REQUEST_ID.set(request_id)  # every line logged for this call carries it
    key: ApiKeyRecord | None = None
    status, code = 500, ErrorCode.INTERNAL_ERROR.value
    document: str | None = None
    try:
        key = await state.keys.authenticate(headers.get(b"authorization"))
        status, document = await _call(
            state, scope, receive, send, headers, key, agent, operation, request_id, started
        )
        code = ""
    except Problem as problem:
        status, code = problem.status, problem.code.value
        await _send(
            send,
            problem.status,
            problem_body(
                problem.code,
                problem.detail,
                status=problem.status,
                request_id=request_id,
                **problem.extra,
            ),
            request_id,
            problem.headers,
            PROBLEM_MEDIA_TYPE,
        )
    except Exception:
        log.exception("call failed", extra={"request_id": request_id})
        await _send(
            send,
            500,
            problem_body(ErrorCode.INTERNAL_ERROR, "internal error", request_id=request_id),
            request_id,
            {},
            PROBLEM_MEDIA_TYPE,
        )
    finally:
        duration_ms = (time.perf_counter() - started) * 1000  # one reading for every observer
        state.metrics.call_ended(operation, status, code, duration_ms / 1000)
        log_call(agent, operation, status, code, duration_ms)
        if key is not None:
            state.stats.record(agent, code or None, duration_ms)
            state.calllog.record(
                CallLogRow(
                    at=datetime.now(UTC),
                    api_key_id=key.public_id,
                    agent_name=agent[:63],
                    operation=operation[:64],
                    status=status,
                    code=code or None,
                    duration_ms=duration_ms,
                    request_id=request_id,
                    document=document,
                )
            )


async def _send(
    send: Send,
    status: int,
    body: bytes,
    request_id: str,
    headers: dict[str, str],
    media_type: str = "application/json",
) -> None:
    raw = [
        (b"content-type", media_type.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode()),
    ]
    raw.extend((name.lower().encode(), value.encode()) for name, value in headers.items())
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


_ID_PREFIX = os.urandom(4).hex()
_next_id = itertools.count(1).__next__


def _request_id(given: str | None) -> str:
    """The caller's X-Request-ID if sane, else a new one, unique per relay process."""
    if given and len(given) <= 128 and given.isascii() and given.isprintable():
        return given
    return f"{_ID_PREFIX}{_next_id():x}"


async def _call(
    state: RelayState,
    scope: Scope,
    receive: Receive,
    send: Send,
    headers: dict[bytes, str],
    key: ApiKeyRecord,
    agent: str,
    operation_name: str,
    request_id: str,
    started: float,
) -> tuple[int, str | None]:
    """Answer the call; returns the status and, for a write, the ERP document number."""
    operation = authorize(key, agent, operation_name)
    timeout = _timeout(scope, state)
    idempotency_key = _idempotency_key(headers.get(b"idempotency-key"))
    body = await read_arguments(receive, headers, state.settings.max_body_bytes)
    validate_arguments(operation, body)
    if operation.writes:
        return await _write(
            state,
            send,
            receive,
            key,
            agent,
            operation,
            body,
            idempotency_key,
            timeout,
            request_id,
            started,
        )

    caller_key: str | None = None
    if operation_name == STATUS_OPERATION:
        caller_key, body = _scope_status_key(key.public_id, body)
    frame = await _forward(
        state, receive, agent, operation, body, idempotency_key, request_id, timeout, _Delivery()
    )
    timing = _timing(frame, started, state, operation.name)
    if isinstance(frame, Result):
        value = frame.value
        if caller_key is not None:
            if isinstance(value, orjson.Fragment):  # answered through another replica
                value = orjson.loads(orjson.dumps(value))
            if isinstance(value, dict) and "idempotency_key" in value:
                value = {**value, "idempotency_key": caller_key}
        await _send(send, 200, orjson.dumps(value), request_id, timing)
        return 200, None
    raise _agent_problem(frame, timing)


class _Delivery:
    """Whether a call may have reached an agent: until it may, a failed write was never
    started and its Idempotency-Key is released instead of left with an unknown outcome."""

    __slots__ = ("maybe",)

    def __init__(self) -> None:
        self.maybe = False


async def _forward(
    state: RelayState,
    receive: Receive,
    agent: str,
    operation: Operation,
    body: bytes,
    idempotency_key: str | None,
    request_id: str,
    timeout_s: float,
    delivery: _Delivery,
) -> Result | Error:
    """Send the call to a connection of the agent, here or at another replica, and wait.

    A call that never reached an agent (`NotDelivered`: the replica holding the connection died
    or lost it meanwhile) is tried on another connection, writes included. A read also fails
    over when its connection is lost before the answer: repeating a read costs nothing. A write
    never does; its outcome is unknown and the caller retries with the same key.
    """
    deadline = time.monotonic() + timeout_s
    deadline_ms = int((time.time() + timeout_s) * 1000)
    tried: frozenset[str] = frozenset()
    moving = False
    for attempt in range(MAX_ATTEMPTS):
        last = attempt == MAX_ATTEMPTS - 1
        target = await _target(state, agent, operation.name, tried, moving, deadline)
        try:
            call_id, future = await target.start_call(
                operation.name, orjson.Fragment(body), deadline_ms, idempotency_key, request_id
            )
        except NotDelivered as exc:
            tried = _not_there(tried, target)
            moving = exc.moving
            if last:
                raise _offline(agent) from None
            continue
        except LinkClosed:
            delivery.maybe = True  # a local send that failed half-way
            if operation.writes or last:
                raise _offline(agent) from None
            continue
        delivery.maybe = delivery.maybe or not isinstance(target, RemoteLink)
        if isinstance(target, RemoteLink):
            state.metrics.forwarded.inc()
        remaining = max(deadline - time.monotonic(), 0.001)
        failover = not operation.writes and not last
        try:
            return await _wait(target, call_id, future, remaining, receive, operation, failover)
        except NotDelivered as exc:
            tried = _not_there(tried, target)
            moving = exc.moving
            if last:
                raise _offline(agent) from None
        except LinkClosed:  # only when `failover`: a read on a lost connection
            # Not added to `tried`: the replica may hold another connection of the agent
            # (a second agent process, or a link that just moved there).
            continue
        finally:
            if isinstance(target, RemoteLink):
                delivery.maybe = delivery.maybe or _reached(future)
    raise _offline(agent)


def _not_there(tried: frozenset[str], target: CallTarget) -> frozenset[str]:
    """A replica that answered "not delivered" is not asked again for this call."""
    return tried | {target.replica} if isinstance(target, RemoteLink) else tried


def _reached(future: asyncio.Future[Result | Error]) -> bool:
    """Whether a forwarded call may have reached the agent (anything but "not delivered")."""
    if not future.done() or future.cancelled():
        return True
    return not isinstance(future.exception(), NotDelivered)


def _scope_status_key(api_key_public_id: str, body: bytes) -> tuple[str, bytes]:
    """``operations.status`` asks the agent about a key as the agent knows it: scoped by the
    API key (`relay.idempotency.agent_key`), so a caller only ever sees its own writes. The
    caller's key goes back into the answer."""
    args = orjson.loads(body)
    caller_key: str = args["idempotency_key"]
    args["idempotency_key"] = agent_key(api_key_public_id, caller_key)
    return caller_key, orjson.dumps(args)


def _timing(
    frame: Result | Error, started: float, state: RelayState, operation: str
) -> dict[str, str]:
    total_ms = (time.perf_counter() - started) * 1000
    state.metrics.answered(operation, total_ms, frame.agent_ms, frame.erp_ms)
    return {
        "Server-Timing": (
            f"relay;dur={max(total_ms - frame.agent_ms, 0.0):.3f}, "
            f"agent;dur={max(frame.agent_ms - frame.erp_ms, 0.0):.3f}, "
            f"erp;dur={frame.erp_ms:.3f}"
        )
    }


def _agent_problem(frame: Error, timing: dict[str, str]) -> Problem:
    error_code = parse_error_code(frame.code)
    extra: dict[str, Any] = {}
    if error_code is ErrorCode.INVALID_ARGUMENTS and isinstance(frame.details, list):
        extra["errors"] = frame.details
    elif frame.details is not None:
        extra["details"] = frame.details
    return Problem(error_code, frame.message, headers=timing, **extra)


def _definite(code: ErrorCode) -> bool:
    """Whether an error the agent answered with settles the write for good.

    Conflict, not found, invalid arguments, an ERP error: the agent ran the write and it
    failed, so a retry with the same key gets the same answer. Retryable codes (the ERP was
    unreachable, the agent's own deadline passed, it crashed or was busy) and a cancellation
    leave the outcome open: the retry is forwarded again with the same key.
    """
    return not code.retryable and code is not ErrorCode.CANCELLED


_NOT_RUN = frozenset({ErrorCode.OPERATION_NOT_ALLOWED_BY_SITE, ErrorCode.OPERATION_NOT_SUPPORTED})
"""Refusals answered by another replica or by the agent itself: nothing ran, so the
Idempotency-Key is released, as when this replica refuses before forwarding, and a retry once
the site allows the write runs it."""


async def _write(
    state: RelayState,
    send: Send,
    receive: Receive,
    key: ApiKeyRecord,
    agent: str,
    operation: Operation,
    body: bytes,
    idempotency_key: str | None,
    timeout_s: float,
    request_id: str,
    started: float,
) -> tuple[int, str | None]:
    """A write: claim the Idempotency-Key, forward at most once per outcome, keep the answer.

    See `relay.idempotency` and docs/guarantees.md ("Idempotent writes at the relay").
    """
    if idempotency_key is None:
        raise Problem(
            ErrorCode.IDEMPOTENCY_KEY_REQUIRED,
            f"{operation.name} writes to the ERP: send an Idempotency-Key header (a unique value "
            "per intended write, reused unchanged on every retry of it)",
        )
    service = state.idempotency
    ticket, claimed = await service.begin(
        key.public_id, idempotency_key, agent, operation.name, body
    )
    if claimed.claim is Claim.MISMATCH:
        raise Problem(
            ErrorCode.IDEMPOTENCY_KEY_MISMATCH,
            "this Idempotency-Key was already used with a different request (agent, operation "
            "or arguments); use a new key for a new write",
        )
    if claimed.claim is Claim.IN_PROGRESS:
        raise Problem(
            ErrorCode.IDEMPOTENCY_IN_PROGRESS,
            "a request with this Idempotency-Key is still running; retry later with the same key",
            headers={"Retry-After": "1"},
        )
    if claimed.claim is Claim.REPLAY:
        record = claimed.record
        assert record is not None and record.status is not None and record.response is not None
        await _send(
            send,
            record.status,
            record.response,
            request_id,
            {REPLAYED_HEADER: "true"},
            record.content_type or "application/json",
        )
        return record.status, None

    delivery = _Delivery()
    try:
        frame = await _forward(
            state,
            receive,
            agent,
            operation,
            body,
            agent_key(key.public_id, idempotency_key),
            request_id,
            timeout_s,
            delivery,
        )
    except BaseException:
        await _settle(service.unknown(ticket) if delivery.maybe else service.release(ticket))
        raise
    timing = _timing(frame, started, state, operation.name)
    if isinstance(frame, Result):
        payload = orjson.dumps(frame.value)
        await _settle(service.finish(ticket, 200, "application/json", payload))
        await _send(send, 200, payload, request_id, timing)
        return 200, _document(frame.value, payload)
    problem = _agent_problem(frame, timing)
    if problem.code in _NOT_RUN:
        await _settle(service.release(ticket))
    elif _definite(problem.code):
        stored = problem_body(
            problem.code,
            problem.detail,
            status=problem.status,
            request_id=request_id,
            **problem.extra,
        )
        await _settle(service.finish(ticket, problem.status, PROBLEM_MEDIA_TYPE, stored))
    else:
        await _settle(service.unknown(ticket))
    raise problem


def _document(value: Any, payload: bytes) -> str | None:
    """The ERP document number a write created (an order's ``number``), for the call log;
    nothing else of the result is kept. A result forwarded by another replica is still JSON
    text (a fragment), parsed here: writes are rare and already cost database round trips."""
    if isinstance(value, orjson.Fragment):
        value = orjson.loads(payload)
    number = value.get("number") if isinstance(value, dict) else None
    return number[:DOCUMENT_MAX] if isinstance(number, str) else None


async def _settle(update: Coroutine[Any, Any, None]) -> None:
    """Record an outcome; a failing database must not change the caller's answer.

    A row left ``in_progress`` turns stale after the longest call timeout and is then taken
    over by a retry, which the agent's journal answers without writing twice.
    """
    try:
        await update
    except Exception as exc:
        log.error("could not record an idempotency outcome (%s)", type(exc).__name__)


async def _wait(
    link: CallTarget,
    call_id: int,
    future: asyncio.Future[Result | Error],
    timeout_s: float,
    receive: Receive,
    operation: Operation,
    failover: bool,
) -> Result | Error:
    """Wait for the answer, the deadline, or the caller hanging up, whichever comes first.

    A lost connection is raised as is (`LinkClosed`) when the caller may `failover`, and when
    the call was not delivered at all (`NotDelivered`)."""
    loop = asyncio.get_running_loop()
    watcher: asyncio.Task[None] | None = None

    def expire() -> None:
        if not future.done():
            future.set_exception(CallTimedOut())

    async def watch_caller() -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if not future.done():
                    future.set_exception(CallerGone())
                return

    def start_watching() -> None:
        nonlocal watcher
        if not future.done():
            watcher = loop.create_task(watch_caller())

    timer = loop.call_later(timeout_s, expire)
    watch_timer = loop.call_later(WATCH_CALLER_AFTER_S, start_watching)
    try:
        return await future
    except CallTimedOut:
        await link.cancel(call_id, "deadline passed")
        raise Problem(
            ErrorCode.TIMEOUT,
            f"no answer from the agent within {timeout_s:g} s; the call was cancelled",
            **_unknown_outcome(operation),
        ) from None
    except CallerGone:
        await link.cancel(call_id, "caller disconnected")
        raise Problem(ErrorCode.CANCELLED, "the caller disconnected") from None
    except LinkClosed as exc:
        if failover or isinstance(exc, NotDelivered):
            raise
        raise Problem(
            ErrorCode.AGENT_OFFLINE,
            "the agent connection was lost while the call was running",
            status=502,
            headers={"Retry-After": "1"},
            **_unknown_outcome(operation),
        ) from None
    finally:
        timer.cancel()
        watch_timer.cancel()
        if watcher is not None:
            watcher.cancel()


def _unknown_outcome(operation: Operation) -> dict[str, Any]:
    return {"outcome": "unknown"} if operation.writes else {}


def _offline(agent: str) -> Problem:
    return Problem(
        ErrorCode.AGENT_OFFLINE,
        f"agent {agent!r} is not connected",
        headers={"Retry-After": "5"},
    )


async def _target(
    state: RelayState,
    agent: str,
    operation: str,
    tried: frozenset[str],
    moving: bool,
    deadline: float,
) -> CallTarget:
    """A connection that can take the call: one here (fewest in flight), else one at another
    replica not `tried` yet; or the problem that says why there is none.

    An agent `moving` to another replica (its replica is shutting down and sent it goaway), or
    handing its connection over to a new one (it sent goaway: a new token, a reloaded config),
    reconnects within moments: the call waits for it, up to `MOVE_WAIT_S` and its deadline,
    so that a rolling deploy or a token rotation costs callers a little latency, not 503s.
    """
    link = state.hub.pick(agent, operation)
    if link is not None:
        return link
    if state.hub.is_online(agent):
        raise Problem(*refusal(state.hub, agent, operation))
    cluster = state.cluster
    if cluster is not None:
        remote, moved_elsewhere = await cluster.route(agent, tried)
        if remote is not None:
            return remote
        moving = moving or moved_elsewhere
    if moving or state.hub.is_moving(agent):
        give_up = min(time.monotonic() + MOVE_WAIT_S, deadline)
        while time.monotonic() < give_up:
            await asyncio.sleep(MOVE_POLL_S)
            link = state.hub.pick(agent, operation)
            if link is not None:
                return link
            if cluster is not None:
                remote, _ = await cluster.route(agent, tried)
                if remote is not None:
                    return remote
    record = await state.store.get_agent(agent)
    if record is None or record.revoked:
        raise Problem(ErrorCode.AGENT_NOT_FOUND, f"no agent named {agent[:64]!r}")
    raise _offline(agent)


def _timeout(scope: Scope, state: RelayState) -> float:
    query: bytes = scope.get("query_string", b"")
    raw = dict(parse_qsl(query.decode("latin-1"))).get("timeout") if query else None
    if raw is None:
        return state.settings.default_timeout_s
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= state.settings.max_timeout_s:
        raise Problem(
            ErrorCode.BAD_REQUEST,
            f"timeout must be a number of seconds between 0 and {state.settings.max_timeout_s:g}",
        )
    return value


def _idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not 0 < len(value) <= _MAX_HEADER_ID or not (value.isascii() and value.isprintable()):
        raise Problem(
            ErrorCode.BAD_REQUEST,
            f"Idempotency-Key must be 1 to {_MAX_HEADER_ID} printable ASCII characters",
        )
    return value
