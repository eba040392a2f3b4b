"""The codec: every frame round-trips, and `decode` raises only `FrameError` for any input."""

from __future__ import annotations

import dataclasses
import math
from array import array
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.codec import decode, encode
from protocol.errors import CloseCode, ErrorCode, FrameError
from protocol.frames import (
    AGENT_FRAMES,
    FRAME_TYPES,
    RELAY_FRAMES,
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

LIMITS = DEFAULT_LIMITS
FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MEDIUM = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
QUICK = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- strategies -----------------------------------------------------------------------------

# Text that orjson can encode (no lone surrogates).
text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=30)


def bounded_text(max_size: int, min_size: int = 0) -> st.SearchStrategy[str]:
    return st.text(
        alphabet=st.characters(exclude_categories=("Cs",)),
        min_size=min_size,
        max_size=min(max_size, 40),
    )


# JSON values that survive orjson both ways and compare equal afterwards.
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(text, children, max_size=5),
    max_leaves=20,
)

call_ids = st.integers(min_value=1, max_value=LIMITS.max_call_id)
ms = st.floats(min_value=0, max_value=1e9, exclude_max=True, allow_nan=False)
unix_ms = st.integers(min_value=0, max_value=2**53)
names = bounded_text(LIMITS.max_name_length)
ids = bounded_text(LIMITS.max_id_length)
texts = bounded_text(LIMITS.max_text_length)

hellos = st.builds(
    Hello,
    agent_version=names,
    connector=names,
    operations=st.lists(bounded_text(LIMITS.max_name_length, min_size=1), max_size=8).map(tuple),
    max_concurrency=st.integers(min_value=1, max_value=10_000),
    erp=ids,
    instance_id=names,
    hostname=ids,
    not_allowed=st.lists(bounded_text(LIMITS.max_name_length, min_size=1), max_size=4).map(tuple),
)
welcomes = st.builds(
    Welcome,
    session_id=ids,
    relay_version=names,
    time_ms=unix_ms,
    max_frame_bytes=st.integers(min_value=1024, max_value=2**31),
)
calls = st.builds(
    Call,
    id=call_ids,
    operation=names,
    args=json_values,
    deadline_ms=unix_ms,
    idempotency_key=st.none() | ids,
    request_id=st.none() | ids,
)
results = st.builds(Result, id=call_ids, value=json_values, agent_ms=ms, erp_ms=ms)
errors = st.builds(
    Error,
    id=call_ids,
    code=names,
    message=texts,
    retryable=st.booleans(),
    details=json_values,
    agent_ms=ms,
    erp_ms=ms,
)
cancels = st.builds(Cancel, id=call_ids, reason=texts)
goaways = st.builds(
    GoAway, reason=texts, reconnect_delay_ms=st.integers(min_value=0, max_value=3_600_000)
)
events = st.builds(
    Event,
    kind=names,
    data=json_values,
    seq=st.integers(min_value=0, max_value=2**63 - 1),
    stream=st.just("") | ids,
)
acks = st.builds(Ack, stream=ids, seq=st.integers(min_value=1, max_value=2**63 - 1))

STRATEGIES: dict[type[Frame], st.SearchStrategy[Any]] = {
    Hello: hellos,
    Welcome: welcomes,
    Call: calls,
    Result: results,
    Error: errors,
    Cancel: cancels,
    GoAway: goaways,
    Event: events,
    Ack: acks,
}
frames = st.one_of(*STRATEGIES.values())

# A valid example of each frame, as a JSON object, to mutate field by field.
VALID: dict[str, dict[str, Any]] = {
    "hello": {
        "type": "hello",
        "agent_version": "1.0.0",
        "connector": "subiekt_gt",
        "erp": "Subiekt GT 1.74",
        "operations": ["ping", "customers.get"],
        "max_concurrency": 4,
        "instance_id": "i-1",
        "hostname": "office-pc",
    },
    "welcome": {
        "type": "welcome",
        "session_id": "s-1",
        "relay_version": "0.1.0",
        "time_ms": 1_760_000_000_000,
        "max_frame_bytes": 1_048_576,
    },
    "call": {
        "type": "call",
        "id": 1,
        "operation": "customers.get",
        "args": {"nip": "5260001246"},
        "deadline_ms": 1_760_000_030_000,
        "idempotency_key": "k-1",
        "request_id": "r-1",
    },
    "result": {"type": "result", "id": 1, "value": {"id": "1042"}, "agent_ms": 3.5, "erp_ms": 2},
    "error": {
        "type": "error",
        "id": 1,
        "code": "not_found",
        "message": "no such customer",
        "retryable": False,
        "details": None,
        "agent_ms": 1.0,
        "erp_ms": 0.5,
    },
    "cancel": {"type": "cancel", "id": 1, "reason": "deadline"},
    "goaway": {"type": "goaway", "reason": "deploy", "reconnect_delay_ms": 500},
    "event": {"type": "event", "kind": "health", "data": {"erp": "up"}, "seq": 7},
    "ack": {"type": "ack", "stream": "ob-1", "seq": 7},
}

# Fields without a default: dropping one must be refused.
REQUIRED: dict[str, tuple[str, ...]] = {
    "hello": ("agent_version", "connector", "operations", "max_concurrency"),
    "welcome": ("session_id", "relay_version", "time_ms", "max_frame_bytes"),
    "call": ("id", "operation", "args", "deadline_ms"),
    "result": ("id", "value"),
    "error": ("id", "code", "message"),
    "cancel": ("id",),
    "goaway": (),
    "event": ("kind",),
    "ack": ("stream", "seq"),
}

ID_FRAMES = ("call", "result", "error", "cancel")


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def assert_refused(data: bytes | str, close_code: CloseCode = CloseCode.MALFORMED_FRAME) -> None:
    with pytest.raises(FrameError) as info:
        decode(data)
    assert info.value.close_code == close_code
    assert len(info.value.reason.encode()) <= 123


def only_frame_error(data: bytes | str, limits: Limits = LIMITS) -> Frame | None:
    """Decode; the only acceptable failure is FrameError (any other exception fails the test)."""
    try:
        return decode(data, limits)
    except FrameError as exc:
        assert exc.close_code in (CloseCode.MALFORMED_FRAME, CloseCode.MESSAGE_TOO_BIG)  # noqa: PT017 - any other exception must escape
        return None


# --- the frame table ------------------------------------------------------------------------


def test_every_frame_type_has_a_name_and_a_side() -> None:
    assert set(FRAME_TYPES.values()) == set(TYPE_NAMES)
    assert set(TYPE_NAMES) == AGENT_FRAMES | RELAY_FRAMES
    either_side = AGENT_FRAMES & RELAY_FRAMES
    assert either_side == {GoAway}
    assert set(STRATEGIES) == set(TYPE_NAMES)
    assert set(VALID) == set(FRAME_TYPES)


@pytest.mark.parametrize("kind", sorted(VALID))
def test_valid_examples_decode(kind: str) -> None:
    frame = decode(dumps(VALID[kind]))
    assert isinstance(frame, FRAME_TYPES[kind])
    assert decode(encode(frame)) == frame


@pytest.mark.parametrize("kind", sorted(VALID))
def test_encoded_frames_name_their_type(kind: str) -> None:
    frame = decode(dumps(VALID[kind]))
    assert orjson.loads(encode(frame))["type"] == kind


# --- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", list(STRATEGIES), ids=lambda c: c.__name__)
@FAST
@given(data=st.data())
def test_round_trip(cls: type[Frame], data: st.DataObject) -> None:
    frame = data.draw(STRATEGIES[cls])
    raw = encode(frame)
    assert isinstance(raw, bytes)
    assert decode(raw) == frame
    assert decode(raw.decode()) == frame
    assert decode(bytearray(raw)) == frame
    assert decode(memoryview(raw)) == frame


@QUICK
@given(frames)
def test_encode_is_deterministic_and_fits_the_default_limit(frame: Frame) -> None:
    assert encode(frame) == encode(frame)
    assert len(encode(frame)) <= LIMITS.max_frame_bytes


def test_defaults_are_omitted_or_restored() -> None:
    for frame in (GoAway(), Cancel(5), Event("health"), Result(1, None), Error(2, "timeout", "")):
        assert decode(encode(frame)) == frame
    assert decode(dumps({"type": "goaway"})) == GoAway()
    assert decode(dumps({"type": "cancel", "id": 3})) == Cancel(3, "cancelled")
    assert decode(dumps({"type": "event", "kind": "x"})) == Event("x", None, 0)
    call = decode(
        dumps({"type": "call", "id": 1, "operation": "ping", "args": {}, "deadline_ms": 0})
    )
    assert call == Call(1, "ping", {}, 0, None, None)
    # Optional call fields are left out of the bytes when unset.
    assert b"idempotency_key" not in encode(call)
    assert b"request_id" not in encode(call)


def test_explicit_null_optional_strings_decode_as_none() -> None:
    obj = {**VALID["call"], "idempotency_key": None, "request_id": None}
    frame = decode(dumps(obj))
    assert isinstance(frame, Call)
    assert frame.idempotency_key is None
    assert frame.request_id is None


def test_unknown_members_are_ignored_for_forward_compatibility() -> None:
    frame = decode(dumps({**VALID["cancel"], "added_in_v2": [1, 2, 3]}))
    assert frame == Cancel(1, "deadline")


def test_integer_milliseconds_decode_as_float() -> None:
    frame = decode(dumps({"type": "result", "id": 1, "value": 1, "agent_ms": 3, "erp_ms": 0}))
    assert isinstance(frame, Result)
    assert type(frame.agent_ms) is float
    assert frame.agent_ms == 3.0


# --- orjson.Fragment ------------------------------------------------------------------------


@QUICK
@given(call=calls, result=results, error=errors, event=events)
def test_fragments_encode_like_the_values_they_hold(
    call: Call, result: Result, error: Error, event: Event
) -> None:
    def frag(value: Any) -> orjson.Fragment:
        return orjson.Fragment(orjson.dumps(value))

    pairs = [
        (call, dataclasses.replace(call, args=frag(call.args))),
        (result, dataclasses.replace(result, value=frag(result.value))),
        (error, dataclasses.replace(error, details=frag(error.details))),
        (event, dataclasses.replace(event, data=frag(event.data))),
    ]
    for plain, fragmented in pairs:
        assert encode(fragmented) == encode(plain)
        assert decode(encode(fragmented)) == plain


def test_fragment_from_an_http_body_is_not_reparsed() -> None:
    body = b'{"skus":["KAW-001","HER-002"]}'
    raw = encode(Call(7, "products.stock", orjson.Fragment(body), 1000))
    assert body in raw
    assert decode(raw) == Call(7, "products.stock", {"skus": ["KAW-001", "HER-002"]}, 1000)


# --- garbage in, FrameError out -------------------------------------------------------------


@FAST
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_frame_error(data: bytes) -> None:
    only_frame_error(data)


@FAST
@given(st.text(max_size=300))
def test_arbitrary_text_raises_only_frame_error(data: str) -> None:
    # Includes lone surrogates, which cannot be UTF-8.
    only_frame_error(data)


any_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(text, children, max_size=5),
    max_leaves=25,
)


@FAST
@given(any_json)
def test_arbitrary_json_values_raise_only_frame_error(value: Any) -> None:
    frame = only_frame_error(dumps(value))
    if not isinstance(value, dict):
        assert frame is None


@MEDIUM
@given(
    kind=st.sampled_from(sorted(VALID)) | text,
    members=st.dictionaries(
        st.sampled_from(sorted({key for obj in VALID.values() for key in obj} - {"type"})) | text,
        any_json,
        max_size=8,
    ),
)
def test_frame_shaped_objects_raise_only_frame_error(kind: str, members: dict[str, Any]) -> None:
    frame = only_frame_error(dumps({**members, "type": kind}))
    if frame is not None:
        assert decode(encode(frame)) == frame


@FAST
@given(kind=st.sampled_from(sorted(VALID)), data=st.data())
def test_one_field_replaced_by_any_json_raises_only_frame_error(
    kind: str, data: st.DataObject
) -> None:
    obj = dict(VALID[kind])
    key = data.draw(st.sampled_from(sorted(set(obj) - {"type"})))
    obj[key] = data.draw(any_json)
    frame = only_frame_error(dumps(obj))
    if frame is not None:
        assert decode(encode(frame)) == frame


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b" ",
        b"null",
        b"[]",
        b'"hello"',
        b"42",
        b"{",
        b'{"type": "hello"',
        b"\xff\xfe",
        b'{"type": "cancel", "id": 1}\x00',
        b"\xef\xbb\xbf{}",
        b'{"type": "cancel", "id": NaN}',
        b'{"type": "cancel", "id": Infinity}',
        b'{"type": "cancel", "id": -Infinity}',
        b'{"type": "result", "id": 1, "value": 1, "agent_ms": 1e400}',
        b'{"type": "result", "id": 1, "value": 1, "agent_ms": NaN}',
        b'{"type": "result", "id": 1, "value": 1e999}',
        b'{"type": "cancel", "id": 1} {"type": "cancel", "id": 2}',
        b"[" * 5000 + b"]" * 5000,
        b'{"type": "result", "id": 1, "value": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        "\ud800".encode("utf-8", "surrogatepass"),
    ],
)
def test_malformed_json_is_refused(data: bytes) -> None:
    assert_refused(data)


def test_lone_surrogate_text_is_refused() -> None:
    assert_refused('{"type": "event", "kind": "\ud800"}')


@pytest.mark.parametrize("kind", [None, 1, True, [], {}, "", "HELLO", "Hello", "ping", "ack"])
def test_unknown_types_are_refused(kind: Any) -> None:
    assert_refused(dumps({**VALID["cancel"], "type": kind}))


def test_missing_type_is_refused() -> None:
    obj = dict(VALID["cancel"])
    del obj["type"]
    assert_refused(dumps(obj))


@pytest.mark.parametrize(
    ("kind", "field"), [(kind, field) for kind, fields in REQUIRED.items() for field in fields]
)
def test_missing_required_fields_are_refused(kind: str, field: str) -> None:
    obj = dict(VALID[kind])
    del obj[field]
    assert_refused(dumps(obj))


def test_args_and_value_may_be_null_but_not_absent() -> None:
    assert decode(dumps({**VALID["call"], "args": None})).args is None  # type: ignore[union-attr]
    assert decode(dumps({**VALID["result"], "value": None})).value is None  # type: ignore[union-attr]


WRONG_TYPES: list[tuple[str, str, Any]] = [
    ("hello", "agent_version", 1),
    ("hello", "connector", None),
    ("hello", "erp", 5),
    ("hello", "operations", "ping"),
    ("hello", "operations", {"ping": True}),
    ("hello", "operations", [1]),
    ("hello", "operations", [""]),
    ("hello", "operations", [None]),
    ("hello", "max_concurrency", "4"),
    ("hello", "max_concurrency", 4.0),
    ("hello", "max_concurrency", True),
    ("hello", "max_concurrency", 0),
    ("hello", "max_concurrency", 10_001),
    ("hello", "instance_id", []),
    ("hello", "hostname", False),
    ("welcome", "session_id", 1),
    ("welcome", "relay_version", None),
    ("welcome", "time_ms", -1),
    ("welcome", "time_ms", 1.5),
    ("welcome", "time_ms", "1760000000000"),
    ("welcome", "time_ms", 2**53 + 1),
    ("welcome", "max_frame_bytes", 1023),
    ("welcome", "max_frame_bytes", 2**31 + 1),
    ("welcome", "max_frame_bytes", True),
    ("call", "operation", None),
    ("call", "operation", ["ping"]),
    ("call", "deadline_ms", -1),
    ("call", "deadline_ms", None),
    ("call", "deadline_ms", 1e12),
    ("call", "deadline_ms", False),
    ("call", "idempotency_key", 1),
    ("call", "request_id", {}),
    ("result", "agent_ms", -1),
    ("result", "agent_ms", -0.001),
    ("result", "agent_ms", "1"),
    ("result", "agent_ms", True),
    ("result", "agent_ms", None),
    ("result", "agent_ms", 1e9),
    ("result", "erp_ms", 1e300),
    ("error", "code", None),
    ("error", "code", 404),
    ("error", "message", None),
    ("error", "retryable", 1),
    ("error", "retryable", "true"),
    ("error", "retryable", None),
    ("error", "erp_ms", [1]),
    ("cancel", "reason", None),
    ("cancel", "reason", 5),
    ("goaway", "reason", None),
    ("goaway", "reconnect_delay_ms", -1),
    ("goaway", "reconnect_delay_ms", 3_600_001),
    ("goaway", "reconnect_delay_ms", 1.0),
    ("goaway", "reconnect_delay_ms", True),
    ("event", "kind", None),
    ("event", "kind", 1),
    ("event", "seq", -1),
    ("event", "seq", "1"),
    ("event", "seq", True),
    ("event", "seq", 2**63),
    ("event", "stream", 5),
    ("ack", "stream", None),
    ("ack", "seq", 0),
    ("ack", "seq", "1"),
]


@pytest.mark.parametrize(("kind", "field", "value"), WRONG_TYPES)
def test_wrong_field_types_and_ranges_are_refused(kind: str, field: str, value: Any) -> None:
    assert_refused(dumps({**VALID[kind], field: value}))


@pytest.mark.parametrize("kind", ID_FRAMES)
@pytest.mark.parametrize(
    "bad_id",
    [0, -1, -(2**63), True, False, None, 1.0, 1.5, "1", [1], {"id": 1}, 2**53, 2**64 - 1],
    ids=repr,
)
def test_bad_call_ids_are_refused(kind: str, bad_id: Any) -> None:
    # `True` is an int in Python; on the wire it is a boolean and never an id.
    assert_refused(dumps({**VALID[kind], "id": bad_id}))


@pytest.mark.parametrize("kind", ID_FRAMES)
@pytest.mark.parametrize("good_id", [1, 2, 2**31, LIMITS.max_call_id])
def test_call_id_bounds_are_inclusive(kind: str, good_id: int) -> None:
    frame = decode(dumps({**VALID[kind], "id": good_id}))
    assert frame.id == good_id  # type: ignore[union-attr]
    assert type(frame.id) is int  # type: ignore[union-attr]


def test_id_beyond_64_bits_is_refused() -> None:
    # orjson parses integers wider than 64 bits as floats; the codec must still refuse them.
    assert_refused(b'{"type": "cancel", "id": 18446744073709551616}')
    assert_refused(b'{"type": "cancel", "id": 1' + b"0" * 40 + b"}")
    assert_refused(b'{"type": "cancel", "id": 1e3}')
    assert_refused(b'{"type": "cancel", "id": 1.0}')


STRING_LIMITS: list[tuple[str, str, int]] = [
    ("hello", "agent_version", LIMITS.max_name_length),
    ("hello", "connector", LIMITS.max_name_length),
    ("hello", "erp", LIMITS.max_id_length),
    ("hello", "instance_id", LIMITS.max_name_length),
    ("hello", "hostname", LIMITS.max_id_length),
    ("welcome", "session_id", LIMITS.max_id_length),
    ("welcome", "relay_version", LIMITS.max_name_length),
    ("call", "operation", LIMITS.max_name_length),
    ("call", "idempotency_key", LIMITS.max_id_length),
    ("call", "request_id", LIMITS.max_id_length),
    ("error", "code", LIMITS.max_name_length),
    ("error", "message", LIMITS.max_text_length),
    ("cancel", "reason", LIMITS.max_text_length),
    ("goaway", "reason", LIMITS.max_text_length),
    ("event", "kind", LIMITS.max_name_length),
]


@pytest.mark.parametrize(("kind", "field", "limit"), STRING_LIMITS)
def test_string_limits(kind: str, field: str, limit: int) -> None:
    # The limit counts characters, so a multi-byte character counts once.
    at_limit = decode(dumps({**VALID[kind], field: "ż" * limit}))
    assert getattr(at_limit, field) == "ż" * limit
    assert_refused(dumps({**VALID[kind], field: "x" * (limit + 1)}))


def test_operation_list_limits() -> None:
    ops = [f"op{i}" for i in range(LIMITS.max_operations)]
    frame = decode(dumps({**VALID["hello"], "operations": ops}))
    assert isinstance(frame, Hello)
    assert frame.operations == tuple(ops)
    assert_refused(dumps({**VALID["hello"], "operations": [*ops, "one.more"]}))
    assert_refused(dumps({**VALID["hello"], "operations": ["x" * 65]}))


def test_huge_frames_close_with_message_too_big() -> None:
    big = dumps({**VALID["result"], "value": "x" * LIMITS.max_frame_bytes})
    assert_refused(big, CloseCode.MESSAGE_TOO_BIG)
    assert_refused(big.decode(), CloseCode.MESSAGE_TOO_BIG)
    assert_refused(b" " * (LIMITS.max_frame_bytes + 1), CloseCode.MESSAGE_TOO_BIG)


def test_frame_of_exactly_the_limit_is_decoded() -> None:
    frame = Result(1, "")
    overhead = len(encode(frame))
    fitting = Result(1, "x" * (LIMITS.max_frame_bytes - overhead))
    raw = encode(fitting)
    assert len(raw) == LIMITS.max_frame_bytes
    assert decode(raw) == fitting


def test_size_limit_counts_utf8_bytes_of_text_messages() -> None:
    # 600 000 two-byte characters are 1.2 MB on the wire although the str has fewer items.
    raw = encode(Result(1, "ż" * 600_000))
    assert len(raw) > LIMITS.max_frame_bytes
    assert len(raw.decode()) < LIMITS.max_frame_bytes
    assert_refused(raw, CloseCode.MESSAGE_TOO_BIG)
    assert_refused(raw.decode(), CloseCode.MESSAGE_TOO_BIG)


def test_size_limit_counts_bytes_of_wide_memoryviews() -> None:
    raw = encode(Result(1, "x" * (LIMITS.max_frame_bytes - 40)))
    padded = raw + b" " * (-len(raw) % 4) + b" " * 8
    view = memoryview(array("I", padded))
    assert view.nbytes > LIMITS.max_frame_bytes
    with pytest.raises(FrameError) as info:
        decode(view)
    assert info.value.close_code == CloseCode.MESSAGE_TOO_BIG


def test_smaller_limits_apply() -> None:
    small = Limits(max_frame_bytes=100, max_name_length=4)
    with pytest.raises(FrameError) as info:
        decode(encode(Result(1, "x" * 100)), small)
    assert info.value.close_code == CloseCode.MESSAGE_TOO_BIG
    with pytest.raises(FrameError):
        decode(encode(Event("health")), small)
    assert decode(encode(Event("ok")), small) == Event("ok")
    with pytest.raises(FrameError):
        decode(encode(Cancel(11)), Limits(max_call_id=10))


@QUICK
@given(frame=frames, limits=st.builds(Limits, max_frame_bytes=st.integers(0, 2000)))
def test_any_limits_raise_only_frame_error(frame: Frame, limits: Limits) -> None:
    result = only_frame_error(encode(frame), limits)
    assert result is None or result == frame


def test_frame_error_reasons_fit_a_close_frame() -> None:
    with pytest.raises(FrameError) as info:
        decode(dumps({"type": "ż" * 500}))
    assert len(info.value.reason.encode()) <= 123


def test_ms_fields_reject_non_finite_python_floats() -> None:
    # A peer cannot send NaN, but our own encoder turns it into null; decode must refuse that.
    raw = encode(Result(1, None, agent_ms=math.nan))
    assert_refused(raw)


# --- docs/protocol.md -----------------------------------------------------------------------

PROTOCOL_DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


@pytest.mark.skipif(not PROTOCOL_DOC.exists(), reason="docs/protocol.md not written yet")
def test_protocol_doc_covers_every_frame_close_code_and_error_code() -> None:
    text = PROTOCOL_DOC.read_text(encoding="utf-8")
    for kind, cls in FRAME_TYPES.items():
        assert f"### `{kind}`" in text, f"frame {kind} not documented"
        for field in cls.__slots__:
            assert f"`{field}`" in text, f"{kind}.{field} not documented"
    for close in CloseCode:
        assert f"| {close.value} | `{close.name}` |" in text, f"close code {close} not documented"
    for code in ErrorCode:
        row = f"| `{code.value}` | {code.status} | {'yes' if code.retryable else 'no'} |"
        assert row in text, f"error code {code.value} not documented as {row}"
