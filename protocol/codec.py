"""Turn frames into bytes and bytes into frames.

`decode` accepts any bytes and either returns a frame or raises `FrameError`: it never raises
anything else, whatever the peer sends (the property tests and the fuzz target hold it to that).
Fields are checked by hand rather than through a model library because this runs for every
frame on the hot path; the checks are exactly the documented wire rules in docs/protocol.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from protocol.errors import CloseCode, FrameError
from protocol.frames import (
    TYPE_NAMES,
    Ack,
    Call,
    Cancel,
    Error,
    Event,
    Frame,
    GoAway,
    Hello,
    Result,
    Welcome,
)
from protocol.limits import DEFAULT_LIMITS, Limits

_Obj = dict[str, Any]


def encode(frame: Frame) -> bytes:
    """Serialise a frame to the UTF-8 JSON bytes sent in one WebSocket message."""
    kind = TYPE_NAMES[type(frame)]
    if isinstance(frame, Call):
        obj: _Obj = {
            "type": kind,
            "id": frame.id,
            "operation": frame.operation,
            "args": frame.args,
            "deadline_ms": frame.deadline_ms,
        }
        if frame.idempotency_key is not None:
            obj["idempotency_key"] = frame.idempotency_key
        if frame.request_id is not None:
            obj["request_id"] = frame.request_id
    elif isinstance(frame, Result):
        obj = {
            "type": kind,
            "id": frame.id,
            "value": frame.value,
            "agent_ms": frame.agent_ms,
            "erp_ms": frame.erp_ms,
        }
    elif isinstance(frame, Hello):
        obj = {
            "type": kind,
            "agent_version": frame.agent_version,
            "connector": frame.connector,
            "erp": frame.erp,
            "operations": list(frame.operations),
            "max_concurrency": frame.max_concurrency,
            "instance_id": frame.instance_id,
            "hostname": frame.hostname,
            "slot": frame.slot,
        }
        if frame.not_allowed:  # omitted when empty: an unrestricted site's hello is unchanged
            obj["not_allowed"] = list(frame.not_allowed)
    else:
        obj = {"type": kind}
        for name in frame.__slots__:
            obj[name] = getattr(frame, name)
    return orjson.dumps(obj)


def decode(data: bytes | bytearray | memoryview | str, limits: Limits = DEFAULT_LIMITS) -> Frame:
    """Parse one message into a frame, enforcing `limits`; raise `FrameError` on anything else."""
    size = _byte_size(data, limits.max_frame_bytes)
    if size > limits.max_frame_bytes:
        raise FrameError(
            f"frame of {size} bytes exceeds the limit of {limits.max_frame_bytes}",
            CloseCode.MESSAGE_TOO_BIG,
        )
    try:
        obj = orjson.loads(data)
    except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
        raise FrameError(f"frame is not valid UTF-8 JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise FrameError("frame must be a JSON object")
    kind = obj.get("type")
    decoder = _DECODERS.get(kind) if isinstance(kind, str) else None
    if decoder is None:
        raise FrameError(f"unknown frame type {_show(kind)}")
    return decoder(obj, limits)


def _byte_size(data: bytes | bytearray | memoryview | str, limit: int) -> int:
    """The size of a message in bytes: a text message counts its UTF-8 bytes, not characters."""
    if isinstance(data, memoryview):
        return data.nbytes
    if isinstance(data, str) and limit // 4 < len(data) <= limit:
        # Only a string this long can hold more than `limit` bytes of UTF-8 yet pass on length.
        return len(data.encode("utf-8", "surrogatepass"))
    return len(data)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _str(obj: _Obj, key: str, max_len: int, *, default: str | None = None) -> str:
    value = obj.get(key, default)
    if not isinstance(value, str):
        raise FrameError(f"{obj['type']}.{key} must be a string")
    if len(value) > max_len:
        raise FrameError(f"{obj['type']}.{key} is longer than {max_len} characters")
    return value


def _opt_str(obj: _Obj, key: str, max_len: int) -> str | None:
    if obj.get(key) is None:
        return None
    return _str(obj, key, max_len)


def _int(obj: _Obj, key: str, low: int, high: int, *, default: int | None = None) -> int:
    value = obj.get(key, default)
    if type(value) is not int:
        raise FrameError(f"{obj['type']}.{key} must be an integer")
    if not low <= value <= high:
        raise FrameError(f"{obj['type']}.{key} is out of range")
    return value


def _ms(obj: _Obj, key: str) -> float:
    value = obj.get(key, 0.0)
    if type(value) not in (int, float) or not 0 <= value < 1e9:
        raise FrameError(f"{obj['type']}.{key} must be a non-negative number of milliseconds")
    return float(value)


def _bool(obj: _Obj, key: str, *, default: bool) -> bool:
    value = obj.get(key, default)
    if type(value) is not bool:
        raise FrameError(f"{obj['type']}.{key} must be true or false")
    return value


def _call_id(obj: _Obj, limits: Limits) -> int:
    return _int(obj, "id", 1, limits.max_call_id)


def _names(
    obj: _Obj, key: str, limits: Limits, *, default: list[str] | None = None
) -> tuple[str, ...]:
    names = obj.get(key, default)
    if not isinstance(names, list) or len(names) > limits.max_operations:
        raise FrameError(f"hello.{key} must be a list of at most {limits.max_operations}")
    for name in names:
        if not isinstance(name, str) or not 0 < len(name) <= limits.max_name_length:
            raise FrameError(f"hello.{key} must hold operation names")
    return tuple(names)


def _hello(obj: _Obj, limits: Limits) -> Hello:
    return Hello(
        agent_version=_str(obj, "agent_version", limits.max_name_length),
        connector=_str(obj, "connector", limits.max_name_length),
        erp=_str(obj, "erp", limits.max_id_length, default=""),
        operations=_names(obj, "operations", limits),
        max_concurrency=_int(obj, "max_concurrency", 1, 10_000),
        instance_id=_str(obj, "instance_id", limits.max_name_length, default=""),
        hostname=_str(obj, "hostname", limits.max_id_length, default=""),
        slot=_int(obj, "slot", 0, 15, default=0),
        not_allowed=_names(obj, "not_allowed", limits, default=[]),
    )


def _welcome(obj: _Obj, limits: Limits) -> Welcome:
    return Welcome(
        session_id=_str(obj, "session_id", limits.max_id_length),
        relay_version=_str(obj, "relay_version", limits.max_name_length),
        time_ms=_int(obj, "time_ms", 0, 2**53),
        max_frame_bytes=_int(obj, "max_frame_bytes", 1024, 2**31),
        replica=_str(obj, "replica", limits.max_name_length, default=""),
    )


def _call(obj: _Obj, limits: Limits) -> Call:
    if "args" not in obj:
        raise FrameError("call.args is missing")
    return Call(
        id=_call_id(obj, limits),
        operation=_str(obj, "operation", limits.max_name_length),
        args=obj["args"],
        deadline_ms=_int(obj, "deadline_ms", 0, 2**53),
        idempotency_key=_opt_str(obj, "idempotency_key", limits.max_id_length),
        request_id=_opt_str(obj, "request_id", limits.max_id_length),
    )


def _result(obj: _Obj, limits: Limits) -> Result:
    if "value" not in obj:
        raise FrameError("result.value is missing")
    return Result(
        id=_call_id(obj, limits),
        value=obj["value"],
        agent_ms=_ms(obj, "agent_ms"),
        erp_ms=_ms(obj, "erp_ms"),
    )


def _error(obj: _Obj, limits: Limits) -> Error:
    return Error(
        id=_call_id(obj, limits),
        code=_str(obj, "code", limits.max_name_length),
        message=_str(obj, "message", limits.max_text_length),
        retryable=_bool(obj, "retryable", default=False),
        details=obj.get("details"),
        agent_ms=_ms(obj, "agent_ms"),
        erp_ms=_ms(obj, "erp_ms"),
    )


def _cancel(obj: _Obj, limits: Limits) -> Cancel:
    return Cancel(
        id=_call_id(obj, limits),
        reason=_str(obj, "reason", limits.max_text_length, default="cancelled"),
    )


def _goaway(obj: _Obj, limits: Limits) -> GoAway:
    return GoAway(
        reason=_str(obj, "reason", limits.max_text_length, default="relay shutting down"),
        reconnect_delay_ms=_int(obj, "reconnect_delay_ms", 0, 3_600_000, default=0),
    )


def _event(obj: _Obj, limits: Limits) -> Event:
    return Event(
        kind=_str(obj, "kind", limits.max_name_length),
        data=obj.get("data"),
        seq=_int(obj, "seq", 0, 2**63 - 1, default=0),
        stream=_str(obj, "stream", limits.max_id_length, default=""),
    )


def _ack(obj: _Obj, limits: Limits) -> Ack:
    return Ack(
        stream=_str(obj, "stream", limits.max_id_length),
        seq=_int(obj, "seq", 1, 2**63 - 1),
    )


_DECODERS: dict[str, Callable[[_Obj, Limits], Frame]] = {
    "hello": _hello,
    "welcome": _welcome,
    "call": _call,
    "result": _result,
    "error": _error,
    "cancel": _cancel,
    "goaway": _goaway,
    "event": _event,
    "ack": _ack,
}
