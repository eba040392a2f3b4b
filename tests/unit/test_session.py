"""The session state machines, driven end to end through a fake link (after h11's helpers)."""

from __future__ import annotations

from collections import deque
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.codec import decode, encode
from protocol.errors import CloseCode, FrameError, UnexpectedFrame
from protocol.frames import (
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
from protocol.limits import Limits
from protocol.session import AgentSession, RelaySession, State

HELLO = Hello(
    agent_version="1.0.0",
    connector="demo",
    operations=("ping", "customers.get"),
    max_concurrency=4,
    erp="Demo ERP",
    instance_id="i-1",
    hostname="office-pc",
)
NOW_MS = 1_760_000_000_000


class ConnectionPair:
    """A relay session and an agent session joined by an in-memory link.

    Each side's outgoing messages wait in a queue until `deliver` hands them to the other side,
    so a test can interleave sends (a cancel crossing a result on the wire) frame by frame.
    """

    def __init__(self, limits: Limits | None = None) -> None:
        self.relay = RelaySession(limits) if limits else RelaySession()
        self.agent = AgentSession(limits) if limits else AgentSession()
        self.to_relay: deque[bytes] = deque()
        self.to_agent: deque[bytes] = deque()

    # Sending: the sessions hand out bytes, the link queues them.
    def agent_sends(self, data: bytes) -> None:
        self.to_relay.append(data)

    def relay_sends(self, data: bytes | None) -> None:
        if data is not None:
            self.to_agent.append(data)

    # Delivering: one message at a time, returning what the receiving session made of it.
    def deliver_to_relay(self) -> Frame | None:
        return self.relay.receive(self.to_relay.popleft())

    def deliver_to_agent(self) -> Frame | None:
        return self.agent.receive(self.to_agent.popleft())

    def open(self, hello: Hello = HELLO) -> Welcome:
        """Run the handshake: hello, then welcome."""
        self.agent_sends(self.agent.hello(hello))
        assert self.deliver_to_relay() == hello
        self.relay_sends(self.relay.welcome("s-1", "0.1.0", NOW_MS))
        welcome = self.deliver_to_agent()
        assert isinstance(welcome, Welcome)
        assert self.relay.state is State.OPEN
        assert self.agent.state is State.OPEN
        return welcome

    def call(self, operation: str = "ping", args: Any = None) -> Call:
        """Relay sends a call and the agent receives it."""
        call_id, data = self.relay.call(operation, args or {}, NOW_MS + 30_000)
        self.relay_sends(data)
        frame = self.deliver_to_agent()
        assert isinstance(frame, Call)
        assert frame.id == call_id
        return frame


@pytest.fixture
def pair() -> ConnectionPair:
    return ConnectionPair()


@pytest.fixture
def opened() -> ConnectionPair:
    p = ConnectionPair()
    p.open()
    return p


def raw(frame: Frame) -> bytes:
    return encode(frame)


# --- handshake ------------------------------------------------------------------------------


def test_handshake(pair: ConnectionPair) -> None:
    assert pair.relay.state is State.HANDSHAKE
    assert pair.agent.state is State.HANDSHAKE
    welcome = pair.open()
    assert pair.relay.hello == HELLO
    assert pair.agent.welcome == welcome
    assert welcome == Welcome("s-1", "0.1.0", NOW_MS, Limits().max_frame_bytes)


def test_welcome_advertises_the_relay_frame_limit() -> None:
    pair = ConnectionPair(Limits(max_frame_bytes=4096))
    assert pair.open().max_frame_bytes == 4096


@pytest.mark.parametrize(
    "first",
    [Result(1, None), Error(1, "timeout", "x"), Event("health"), Welcome("s", "v", 0, 1024)],
    ids=lambda f: type(f).__name__,
)
def test_relay_requires_hello_first(pair: ConnectionPair, first: Frame) -> None:
    with pytest.raises(UnexpectedFrame) as info:
        pair.relay.receive(raw(first))
    assert info.value.close_code == CloseCode.UNEXPECTED_FRAME
    assert pair.relay.hello is None


@pytest.mark.parametrize(
    "first",
    [Call(1, "ping", {}, 0), Cancel(1), GoAway(), HELLO, Result(1, 1)],
    ids=lambda f: type(f).__name__,
)
def test_agent_requires_welcome_first(pair: ConnectionPair, first: Frame) -> None:
    with pytest.raises(UnexpectedFrame) as info:
        pair.agent.receive(raw(first))
    assert info.value.close_code == CloseCode.UNEXPECTED_FRAME
    assert pair.agent.state is State.HANDSHAKE


def test_malformed_first_frame_is_a_frame_error(pair: ConnectionPair) -> None:
    with pytest.raises(FrameError):
        pair.relay.receive(b"{not json")
    with pytest.raises(FrameError):
        pair.agent.receive(b'{"type": "welcome"}')


def test_welcome_before_hello_is_a_local_error(pair: ConnectionPair) -> None:
    with pytest.raises(RuntimeError):
        pair.relay.welcome("s-1", "0.1.0", NOW_MS)


def test_welcome_is_sent_once(opened: ConnectionPair) -> None:
    with pytest.raises(RuntimeError):
        opened.relay.welcome("s-2", "0.1.0", NOW_MS)


def test_second_hello_after_welcome_is_rejected(opened: ConnectionPair) -> None:
    with pytest.raises(UnexpectedFrame):
        opened.relay.receive(raw(HELLO))


def test_second_hello_before_welcome_is_rejected(pair: ConnectionPair) -> None:
    pair.relay.receive(raw(HELLO))
    other = Hello("9.9.9", "other", (), 1)
    with pytest.raises(UnexpectedFrame):
        pair.relay.receive(raw(other))
    assert pair.relay.hello == HELLO


def test_event_right_after_hello_is_accepted(pair: ConnectionPair) -> None:
    # "event frames may come at any time after hello", even before the welcome went out.
    pair.relay.receive(raw(HELLO))
    assert pair.relay.receive(raw(Event("health", {"erp": "up"}))) == Event("health", {"erp": "up"})
    pair.relay.welcome("s-1", "0.1.0", NOW_MS)
    assert pair.relay.state is State.OPEN


def test_answer_before_any_call_is_rejected(pair: ConnectionPair) -> None:
    pair.relay.receive(raw(HELLO))
    with pytest.raises(UnexpectedFrame):
        pair.relay.receive(raw(Result(1, None)))


def test_second_welcome_is_rejected(opened: ConnectionPair) -> None:
    with pytest.raises(UnexpectedFrame):
        opened.agent.receive(raw(Welcome("s-2", "0.1.0", NOW_MS, 1024)))


# --- calls ----------------------------------------------------------------------------------


def test_call_ids_count_up_from_one_and_are_never_reused(opened: ConnectionPair) -> None:
    ids = [opened.relay.call("ping", {}, NOW_MS)[0] for _ in range(5)]
    assert ids == [1, 2, 3, 4, 5]
    assert opened.relay.pending == {1, 2, 3, 4, 5}
    opened.relay.cancel(5, "gone")
    assert opened.relay.call("ping", {}, NOW_MS)[0] == 6


def test_call_frame_carries_everything(opened: ConnectionPair) -> None:
    call_id, data = opened.relay.call(
        "customers.get", {"nip": "5260001246"}, NOW_MS + 5000, "idem-1", "req-1"
    )
    assert decode(data) == Call(
        call_id, "customers.get", {"nip": "5260001246"}, NOW_MS + 5000, "idem-1", "req-1"
    )


def test_call_args_may_be_a_fragment(opened: ConnectionPair) -> None:
    body = b'{"skus":["A","B"]}'
    _, data = opened.relay.call("products.stock", orjson.Fragment(body), NOW_MS)
    assert body in data
    opened.relay_sends(data)
    frame = opened.deliver_to_agent()
    assert isinstance(frame, Call)
    assert frame.args == {"skus": ["A", "B"]}


def test_result_for_pending_call_is_accepted(opened: ConnectionPair) -> None:
    call = opened.call()
    assert opened.agent.running == {call.id}
    opened.agent_sends(opened.agent.result(call.id, {"ok": True}, 2.5, 1.0))
    assert opened.agent.running == set()
    frame = opened.deliver_to_relay()
    assert frame == Result(call.id, {"ok": True}, 2.5, 1.0)
    assert opened.relay.pending == set()


def test_error_for_pending_call_is_accepted(opened: ConnectionPair) -> None:
    call = opened.call()
    opened.agent_sends(
        opened.agent.error(
            call.id, "not_found", "no such customer", retryable=False, details={"nip": "x"}
        )
    )
    frame = opened.deliver_to_relay()
    assert frame == Error(call.id, "not_found", "no such customer", False, {"nip": "x"})
    assert opened.relay.pending == set()


def test_answers_may_come_in_any_order(opened: ConnectionPair) -> None:
    calls = [opened.call() for _ in range(3)]
    for call in reversed(calls):
        opened.agent_sends(opened.agent.result(call.id, call.id, 0, 0))
    assert [opened.deliver_to_relay() for _ in calls] == [
        Result(3, 3),
        Result(2, 2),
        Result(1, 1),
    ]


def test_late_result_after_cancel_is_dropped(opened: ConnectionPair) -> None:
    call = opened.call()
    # The agent answers while the relay cancels: the frames cross on the wire.
    opened.agent_sends(opened.agent.result(call.id, "late", 0, 0))
    cancel = opened.relay.cancel(call.id, "deadline")
    assert cancel is not None
    assert decode(cancel) == Cancel(call.id, "deadline")
    opened.relay_sends(cancel)
    assert opened.deliver_to_relay() is None
    # The agent already finished the call, so it ignores the cancel.
    assert opened.deliver_to_agent() is None


def test_late_error_after_cancel_is_dropped(opened: ConnectionPair) -> None:
    call = opened.call()
    opened.relay.cancel(call.id, "caller went away")
    opened.agent_sends(opened.agent.error(call.id, "cancelled", "stopped"))
    assert opened.deliver_to_relay() is None


def test_cancel_reaches_a_running_call(opened: ConnectionPair) -> None:
    call = opened.call()
    opened.relay_sends(opened.relay.cancel(call.id, "deadline"))
    assert opened.deliver_to_agent() == Cancel(call.id, "deadline")
    # The agent still answers (with cancelled); the relay drops it as late.
    opened.agent_sends(opened.agent.error(call.id, "cancelled", "stopped"))
    assert opened.deliver_to_relay() is None
    assert opened.agent.running == set()


def test_cancel_after_answer_sends_nothing(opened: ConnectionPair) -> None:
    call = opened.call()
    opened.agent_sends(opened.agent.result(call.id, 1, 0, 0))
    opened.deliver_to_relay()
    assert opened.relay.cancel(call.id, "too late") is None
    assert opened.relay.cancel(999, "never sent") is None


@pytest.mark.parametrize("answer", [Result(1, None), Error(1, "timeout", "x")])
def test_answer_for_never_sent_id_is_rejected(opened: ConnectionPair, answer: Frame) -> None:
    with pytest.raises(UnexpectedFrame) as info:
        opened.relay.receive(raw(answer))
    assert info.value.close_code == CloseCode.UNEXPECTED_FRAME
    opened.call()
    with pytest.raises(UnexpectedFrame):
        opened.relay.receive(raw(Result(2, None)))


@pytest.mark.parametrize(
    "frame",
    [Call(1, "ping", {}, 0), Welcome("s", "v", 0, 1024), Cancel(1), HELLO],
    ids=lambda f: type(f).__name__,
)
def test_agent_may_not_send_relay_frames(opened: ConnectionPair, frame: Frame) -> None:
    with pytest.raises(UnexpectedFrame):
        opened.relay.receive(raw(frame))


@pytest.mark.parametrize(
    "frame",
    [Result(1, None), Error(1, "x", "y"), Event("health")],
    ids=lambda f: type(f).__name__,
)
def test_relay_may_not_send_agent_frames(opened: ConnectionPair, frame: Frame) -> None:
    with pytest.raises(UnexpectedFrame):
        opened.agent.receive(raw(frame))


def test_events_flow_at_any_time_after_hello(opened: ConnectionPair) -> None:
    opened.agent_sends(opened.agent.event("stock_changed", {"sku": "KAW-001"}, seq=1))
    assert opened.deliver_to_relay() == Event("stock_changed", {"sku": "KAW-001"}, 1)
    call = opened.call()
    opened.agent_sends(opened.agent.event("health", None, seq=2))
    assert opened.deliver_to_relay() == Event("health", None, 2)
    assert opened.relay.pending == {call.id}


def test_goaway_reaches_the_agent(opened: ConnectionPair) -> None:
    opened.relay_sends(opened.relay.goaway("deploy", 250))
    assert opened.deliver_to_agent() == GoAway("deploy", 250)


def test_agent_goaway_hands_over_and_answers_still_flow(opened: ConnectionPair) -> None:
    call = opened.call()
    opened.agent_sends(opened.agent.goaway("token rotated"))
    assert opened.deliver_to_relay() == GoAway("token rotated")
    # a call that crossed the goaway on the wire is still answered on this connection
    crossed = opened.call()
    opened.agent_sends(opened.agent.result(call.id, 1, 0.1, 0.1))
    opened.agent_sends(opened.agent.result(crossed.id, 2, 0.1, 0.1))
    assert opened.deliver_to_relay() == Result(call.id, 1, 0.1, 0.1)
    assert opened.deliver_to_relay() == Result(crossed.id, 2, 0.1, 0.1)
    assert opened.relay.pending == set()


def test_agent_goaway_before_hello_is_rejected(pair: ConnectionPair) -> None:
    with pytest.raises(UnexpectedFrame):
        pair.relay.receive(raw(GoAway("token rotated")))


def test_agent_goaway_needs_an_open_session(pair: ConnectionPair) -> None:
    with pytest.raises(RuntimeError):
        pair.agent.goaway("token rotated")


# --- agent side -----------------------------------------------------------------------------


def test_agent_rejects_reused_call_ids(opened: ConnectionPair) -> None:
    opened.agent.receive(raw(Call(1, "ping", {}, 0)))
    opened.agent.receive(raw(Call(2, "ping", {}, 0)))
    with pytest.raises(UnexpectedFrame):
        opened.agent.receive(raw(Call(2, "ping", {}, 0)))
    with pytest.raises(UnexpectedFrame):
        opened.agent.receive(raw(Call(1, "ping", {}, 0)))


def test_agent_rejects_a_finished_call_id_again(opened: ConnectionPair) -> None:
    call = opened.call()
    opened.agent.result(call.id, None, 0, 0)
    with pytest.raises(UnexpectedFrame):
        opened.agent.receive(raw(call))


def test_agent_ignores_cancel_for_finished_or_unknown_calls(opened: ConnectionPair) -> None:
    call = opened.call()
    opened.agent.error(call.id, "erp_error", "boom")
    assert opened.agent.receive(raw(Cancel(call.id))) is None
    assert opened.agent.receive(raw(Cancel(12345))) is None


def test_agent_reports_cancel_for_running_call(opened: ConnectionPair) -> None:
    call = opened.call()
    assert opened.agent.receive(raw(Cancel(call.id, "deadline"))) == Cancel(call.id, "deadline")


def test_agent_checks_frame_limits() -> None:
    pair = ConnectionPair(Limits(max_frame_bytes=2048))
    pair.open()
    with pytest.raises(FrameError) as info:
        pair.agent.receive(raw(Call(1, "ping", {"x": "y" * 4096}, 0)))
    assert info.value.close_code == CloseCode.MESSAGE_TOO_BIG


# --- a property: any interleaving of answers and cancels stays consistent ---------------------


@settings(max_examples=100, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["call", "answer", "cancel", "deliver"]), st.integers(0, 10)),
        max_size=40,
    )
)
def test_any_interleaving_of_calls_answers_and_cancels(steps: list[tuple[str, int]]) -> None:
    pair = ConnectionPair()
    pair.open()
    sent: list[int] = []
    answered: set[int] = set()
    cancelled: set[int] = set()
    delivered: set[int] = set()
    for action, n in steps:
        if action == "call":
            sent.append(pair.call().id)
        elif action == "answer" and sent:
            call_id = sent[n % len(sent)]
            if call_id not in answered:
                answered.add(call_id)
                pair.agent_sends(pair.agent.result(call_id, call_id, 0, 0))
        elif action == "cancel" and sent:
            call_id = sent[n % len(sent)]
            if pair.relay.cancel(call_id, "x") is not None:
                cancelled.add(call_id)
        elif action == "deliver" and pair.to_relay:
            frame = pair.deliver_to_relay()
            if frame is not None:
                assert isinstance(frame, Result)
                assert frame.id not in cancelled
                assert frame.id not in delivered
                delivered.add(frame.id)
    while pair.to_relay:
        frame = pair.deliver_to_relay()
        if frame is not None:
            assert isinstance(frame, Result)
            delivered.add(frame.id)
    assert sent == list(range(1, len(sent) + 1))
    assert pair.relay.pending == set(sent) - answered - cancelled
    assert delivered == answered - cancelled
