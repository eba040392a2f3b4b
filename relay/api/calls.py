"""``POST /v1/agents/{agent}/calls/{operation}``: the CRM's way into the ERP.

This is the hot path, so it is a raw ASGI handler that `relay.app.RelayApp` routes to before
FastAPI sees the request: no middleware stack, no request object, headers read in one pass.
The body is read once, validated once by the operation's model straight from bytes (pydantic's
Rust JSON parser) and forwarded as the same bytes inside the call frame (`orjson.Fragment`),
never re-serialised. No database access and no logging I/O happen here: the API key comes from
the in-memory cache and the call log takes a row in a queue that a background task writes.

Order of checks, so that a caller learns nothing it is not granted: credentials (401), grant
for the agent (403), operation exists (404), grant for the operation (403), body (413/415/422),
agent known and online (404/503), operation supported by the agent (501), then the call.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import orjson
from pydantic import ValidationError
from starlette.types import Receive, Scope, Send

from protocol.errors import ErrorCode, parse_error_code
from protocol.frames import Error, Result
from protocol.operations import CATALOGUE, Operation
from relay.hub import AgentLink, CallerGone, CallTimedOut, LinkClosed
from relay.problems import PROBLEM_MEDIA_TYPE, Problem, problem_body
from relay.state import RelayState
from relay.store.records import ApiKeyRecord, CallLogRow

log = logging.getLogger("relay.calls")

_MAX_HEADER_ID = 255
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
    key: ApiKeyRecord | None = None
    status, code = 500, ErrorCode.INTERNAL_ERROR.value
    try:
        key = await state.keys.authenticate(headers.get(b"authorization"))
        status = await _call(
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
        if key is not None:
            state.calllog.record(
                CallLogRow(
                    at=datetime.now(UTC),
                    api_key_id=key.public_id,
                    agent_name=agent[:63],
                    operation=operation[:64],
                    status=status,
                    code=code or None,
                    duration_ms=(time.perf_counter() - started) * 1000,
                    request_id=request_id,
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
) -> int:
    if not key.allows_agent(agent):
        raise Problem(ErrorCode.FORBIDDEN, "this API key is not granted this agent")
    operation = CATALOGUE.get(operation_name)
    if operation is None:
        raise Problem(
            ErrorCode.UNKNOWN_OPERATION,
            f"unknown operation {operation_name[:64]!r}; see /openapi.json for the catalogue",
        )
    if not key.allows_operation(operation_name):
        raise Problem(ErrorCode.FORBIDDEN, "this API key is not granted this operation")
    timeout = _timeout(scope, state)
    idempotency_key = _idempotency_key(headers.get(b"idempotency-key"))
    body = await _read_body(receive, headers, state.settings.max_body_bytes)
    _validate(operation, body)

    link = state.hub.pick(agent, operation_name)
    if link is None:
        link = await _explain_no_link(state, agent, operation_name)
    deadline_ms = int((time.time() + timeout) * 1000)
    try:
        call_id, future = await link.start_call(
            operation_name, orjson.Fragment(body), deadline_ms, idempotency_key, request_id
        )
    except LinkClosed:
        raise _offline(agent) from None
    frame = await _wait(link, call_id, future, timeout, receive, operation)
    total_ms = (time.perf_counter() - started) * 1000
    timing = {
        "Server-Timing": (
            f"relay;dur={max(total_ms - frame.agent_ms, 0.0):.3f}, "
            f"agent;dur={max(frame.agent_ms - frame.erp_ms, 0.0):.3f}, "
            f"erp;dur={frame.erp_ms:.3f}"
        )
    }
    if isinstance(frame, Result):
        await _send(send, 200, orjson.dumps(frame.value), request_id, timing)
        return 200
    error_code = parse_error_code(frame.code)
    extra: dict[str, Any] = {}
    if error_code is ErrorCode.INVALID_ARGUMENTS and isinstance(frame.details, list):
        extra["errors"] = frame.details
    elif frame.details is not None:
        extra["details"] = frame.details
    raise Problem(error_code, frame.message, headers=timing, **extra)


async def _wait(
    link: AgentLink,
    call_id: int,
    future: asyncio.Future[Result | Error],
    timeout_s: float,
    receive: Receive,
    operation: Operation,
) -> Result | Error:
    """Wait for the answer, the deadline, or the caller hanging up, whichever comes first."""
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
    except LinkClosed:
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


async def _explain_no_link(state: RelayState, agent: str, operation: str) -> AgentLink:
    """Raise the problem that says why no connection can take this call."""
    if state.hub.is_online(agent):
        raise Problem(
            ErrorCode.OPERATION_NOT_SUPPORTED,
            f"the ERP connector of agent {agent!r} does not support {operation}",
        )
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


async def _read_body(receive: Receive, headers: dict[bytes, str], limit: int) -> bytes:
    length = headers.get(b"content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise Problem(ErrorCode.PAYLOAD_TOO_LARGE, f"the body may be at most {limit} bytes")
    content_type = headers.get(b"content-type", "application/json")
    if not content_type.startswith("application/json"):
        raise Problem(ErrorCode.UNSUPPORTED_MEDIA_TYPE, "send the arguments as application/json")
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            raise Problem(ErrorCode.CANCELLED, "the caller disconnected")
        chunk: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        size += len(chunk)
        if size > limit:
            raise Problem(ErrorCode.PAYLOAD_TOO_LARGE, f"the body may be at most {limit} bytes")
        chunks.append(chunk)
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    return body if body.strip() else b"{}"


def _validate(operation: Operation, body: bytes) -> None:
    try:
        operation.args.model_validate_json(body)
    except ValidationError as exc:
        raise Problem(
            ErrorCode.INVALID_ARGUMENTS,
            f"the arguments of {operation.name} are invalid",
            errors=validation_errors(exc),
        ) from None


def validation_errors(exc: ValidationError) -> list[dict[str, str]]:
    """Field paths and messages, never the rejected values (they may be personal data)."""
    return [
        {
            "path": ".".join(str(part) for part in error["loc"]) or "(body)",
            "message": error["msg"],
        }
        for error in exc.errors(include_url=False, include_input=False)
    ]
