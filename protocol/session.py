"""What each side may send and receive, and when: the session state machines.

Rules (the relay's view of one agent connection, `RelaySession`):

- The first frame from the agent must be ``hello``; anything else closes the connection.
- After ``welcome`` the relay sends ``call`` frames with ids 1, 2, 3, … (never reused), and
  ``cancel`` for calls nobody waits for any more.
- The agent answers each call at most once, with ``result`` or ``error``. An answer for a call
  that was cancelled or timed out is *late* and dropped quietly (it crossed the cancel on the
  wire). An answer for an id the relay never sent, a second ``hello``, or a relay-only frame
  from the agent is a protocol violation.
- ``event`` frames may come at any time after ``hello``.
- ``goaway`` from the agent (after hello) hands the connection over: the relay sends no new
  call on it and closes it once the calls in flight are answered; answers keep flowing.

The agent's view (`AgentSession`) mirrors it: the first frame from the relay is ``welcome``;
``call`` ids must be new; ``cancel`` for an unknown id is ignored (the call already finished).
Either side may send ``goaway``; what it asks of the other is in `protocol.frames.GoAway`.

Neither class does I/O: they take bytes in and hand bytes and frames out, so the relay and the
agent are thin shells and these rules are unit-tested on plain values.
"""

from __future__ import annotations

import enum

from protocol.codec import decode, encode
from protocol.errors import UnexpectedFrame
from protocol.frames import (
    Ack,
    Call,
    Cancel,
    Error,
    Event,
    Frame,
    GoAway,
    Hello,
    JSONValue,
    Result,
    Welcome,
)
from protocol.limits import DEFAULT_LIMITS, Limits


class State(enum.Enum):
    HANDSHAKE = "handshake"
    OPEN = "open"
    CLOSED = "closed"


class RelaySession:
    """The relay's end of one agent connection."""

    __slots__ = ("_limits", "_next_id", "hello", "pending", "state")

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._next_id = 1
        self.state = State.HANDSHAKE
        self.hello: Hello | None = None
        self.pending: set[int] = set()

    def receive(self, data: bytes | str) -> Frame | None:
        """Decode a message from the agent; None means a late answer, already dropped."""
        frame = decode(data, self._limits)
        if self.hello is None:
            if not isinstance(frame, Hello):
                raise UnexpectedFrame(f"expected hello first, got {type(frame).__name__.lower()}")
            self.hello = frame
            return frame
        if isinstance(frame, Result | Error):
            if frame.id in self.pending:
                self.pending.discard(frame.id)
                return frame
            if frame.id < self._next_id:
                return None
            raise UnexpectedFrame(f"answer for call {frame.id}, which was never sent")
        if isinstance(frame, Event | GoAway):
            return frame
        raise UnexpectedFrame(f"an agent may not send {type(frame).__name__.lower()} now")

    def welcome(self, session_id: str, relay_version: str, now_ms: int, replica: str = "") -> bytes:
        if self.state is not State.HANDSHAKE or self.hello is None:
            raise RuntimeError("welcome is sent once, after hello")
        self.state = State.OPEN
        return encode(
            Welcome(
                session_id=session_id,
                relay_version=relay_version,
                time_ms=now_ms,
                max_frame_bytes=self._limits.max_frame_bytes,
                replica=replica,
            )
        )

    def call(
        self,
        operation: str,
        args: JSONValue,
        deadline_ms: int,
        idempotency_key: str | None = None,
        request_id: str | None = None,
    ) -> tuple[int, bytes]:
        """Allocate the next call id and return it with the encoded call frame."""
        call_id = self._next_id
        self._next_id += 1
        self.pending.add(call_id)
        return call_id, encode(
            Call(call_id, operation, args, deadline_ms, idempotency_key, request_id)
        )

    def cancel(self, call_id: int, reason: str) -> bytes | None:
        """Forget a call; return the cancel frame, or None when it was already answered."""
        if call_id not in self.pending:
            return None
        self.pending.discard(call_id)
        return encode(Cancel(call_id, reason))

    def goaway(self, reason: str, reconnect_delay_ms: int = 0) -> bytes:
        return encode(GoAway(reason, reconnect_delay_ms))

    def ack(self, stream: str, seq: int) -> bytes:
        """Tell the agent that change event ``seq`` of ``stream`` is stored durably."""
        return encode(Ack(stream, seq))


class AgentSession:
    """The agent's end of one connection to the relay."""

    __slots__ = ("_limits", "_max_seen_id", "running", "state", "welcome")

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._max_seen_id = 0
        self.state = State.HANDSHAKE
        self.welcome: Welcome | None = None
        self.running: set[int] = set()

    def hello(self, hello: Hello) -> bytes:
        return encode(hello)

    def receive(self, data: bytes | str) -> Frame | None:
        """Decode a message from the relay; None means a cancel for a call already finished."""
        frame = decode(data, self._limits)
        if self.state is State.HANDSHAKE:
            if not isinstance(frame, Welcome):
                raise UnexpectedFrame(f"expected welcome first, got {type(frame).__name__.lower()}")
            self.welcome = frame
            self.state = State.OPEN
            return frame
        if isinstance(frame, Call):
            if frame.id <= self._max_seen_id:
                raise UnexpectedFrame(f"call id {frame.id} was already used")
            self._max_seen_id = frame.id
            self.running.add(frame.id)
            return frame
        if isinstance(frame, Cancel):
            return frame if frame.id in self.running else None
        if isinstance(frame, GoAway | Ack):
            return frame
        raise UnexpectedFrame(f"a relay may not send {type(frame).__name__.lower()} now")

    def result(self, call_id: int, value: JSONValue, agent_ms: float, erp_ms: float) -> bytes:
        self.running.discard(call_id)
        return encode(Result(call_id, value, agent_ms, erp_ms))

    def error(
        self,
        call_id: int,
        code: str,
        message: str,
        *,
        retryable: bool = False,
        details: JSONValue = None,
        agent_ms: float = 0.0,
        erp_ms: float = 0.0,
    ) -> bytes:
        self.running.discard(call_id)
        return encode(Error(call_id, code, message, retryable, details, agent_ms, erp_ms))

    def event(self, kind: str, data: JSONValue, seq: int = 0, stream: str = "") -> bytes:
        return encode(Event(kind, data, seq, stream))

    def goaway(self, reason: str) -> bytes:
        """Hand this connection over; keep answering the calls that still arrive on it."""
        if self.state is not State.OPEN:
            raise RuntimeError("goaway is sent on an open session")
        return encode(GoAway(reason))
