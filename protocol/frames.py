"""The frames of the ERP Relay protocol.

Every frame is one WebSocket message holding one UTF-8 JSON object whose ``type`` member names
the frame. Who sends what, and when:

=========  ==========  ================================================================
frame      sender      when
=========  ==========  ================================================================
hello      agent       first frame on a new connection: what the agent can do
welcome    relay       answer to hello; from then on calls may flow
call       relay       run one operation; ``id`` is unique on this connection
result     agent       the successful answer to a call
error      agent       the failed answer to a call (stable ``code``, ``retryable``)
cancel     relay       the caller gave up or the deadline passed; stop the call if possible
goaway     relay       the relay is draining: reconnect (elsewhere) now
goaway     agent       the agent hands this connection over (token rotated, config
                       reloaded): take no new call on it, close it once answered
event      agent       something happened at the site, not tied to a call
ack        relay       a change event (``event`` with a ``stream``) is stored durably
=========  ==========  ================================================================

Values that are already JSON (call arguments forwarded from an HTTP body, a result the agent
serialised once) can be carried as `orjson.Fragment` so they are never parsed twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeAlias

JSONValue: TypeAlias = Any
"""A JSON-compatible value (or an `orjson.Fragment` holding serialised JSON)."""


@dataclass(frozen=True, slots=True)
class Hello:
    """Agent → relay, first frame: identity and capabilities of this agent process.

    ``slot`` numbers the agent process's connections (0 for the first; an agent may keep
    several, to different replicas). A new connection with the same ``instance_id`` and
    ``slot`` as an older one replaces it: the old one is dead even if no replica noticed yet.

    ``operations`` are the ones this agent serves *and* its site allows; ``not_allowed`` the ones
    its connector serves but the site's owner refuses (``[agent] allow`` / ``read_only``), so the
    relay can answer ``operation_not_allowed_by_site`` without a round trip instead of
    ``operation_not_supported``. Empty from an agent older than the field.
    """

    agent_version: str
    connector: str
    operations: tuple[str, ...]
    max_concurrency: int
    erp: str = ""
    instance_id: str = ""
    hostname: str = ""
    slot: int = 0
    not_allowed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Welcome:
    """Relay → agent: the session is open. ``time_ms`` lets the agent estimate clock skew.

    ``replica`` names the relay process that holds this connection, so that an agent keeping
    two connections can tell whether the load balancer put both on the same replica (empty
    from a relay that does not say).
    """

    session_id: str
    relay_version: str
    time_ms: int
    max_frame_bytes: int
    replica: str = ""


@dataclass(frozen=True, slots=True)
class Call:
    """Relay → agent: run ``operation`` with ``args``.

    ``deadline_ms`` is the wall-clock instant (Unix milliseconds, relay clock) after which
    nobody waits for the answer; the agent converts it with the skew it measured from
    ``Welcome.time_ms`` and never starts a call whose deadline has passed.
    """

    id: int
    operation: str
    args: JSONValue
    deadline_ms: int
    idempotency_key: str | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Result:
    """Agent → relay: the call succeeded. Times are milliseconds spent in agent and ERP."""

    id: int
    value: JSONValue
    agent_ms: float = 0.0
    erp_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class Error:
    """Agent → relay: the call failed with a stable ``code`` (see `protocol.errors.ErrorCode`)."""

    id: int
    code: str
    message: str
    retryable: bool = False
    details: JSONValue = None
    agent_ms: float = 0.0
    erp_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class Cancel:
    """Relay → agent: nobody waits for call ``id`` any more."""

    id: int
    reason: str = "cancelled"


@dataclass(frozen=True, slots=True)
class GoAway:
    """Relay → agent: this relay is going away; reconnect after ``reconnect_delay_ms``.

    Agent → relay: this connection is being handed over (a new token, a reloaded config): the
    relay sends no new call on it, lets the ones in flight be answered, then closes it
    normally; the agent answers until then and reconnects at once. ``reconnect_delay_ms`` means
    nothing in this direction.
    """

    reason: str = "relay shutting down"
    reconnect_delay_ms: int = 0


@dataclass(frozen=True, slots=True)
class Event:
    """Agent → relay: something happened at the site (a change in the ERP, a health change).

    A change event (`CHANGE_EVENT`) comes from the agent's durable outbox: ``stream`` names the
    outbox (a random id made when it was created, so a reinstalled agent starting again at seq 1
    is not mistaken for a replay) and ``seq`` numbers the event in it. The agent sends it again
    until the relay answers `Ack`; the relay stores each (agent, stream, seq) once.
    """

    kind: str
    data: JSONValue = field(default=None)
    seq: int = 0
    stream: str = ""


@dataclass(frozen=True, slots=True)
class Ack:
    """Relay → agent: the change event ``seq`` of ``stream`` is stored; the agent may forget it.

    Sent only in answer to a change event, so an agent that never sends one never sees it.
    """

    stream: str
    seq: int


HEALTH_EVENT = "health"
"""`Event.kind` of the agent's health report (docs/protocol.md): ``data`` is ``{"erp": "ok" |
"unreachable", "rtt_ms": number | null, "detail": string}``."""

CHANGE_EVENT = "change"
"""`Event.kind` of a change in the ERP (`protocol.changes`): ``data`` is one change."""


Frame: TypeAlias = Hello | Welcome | Call | Result | Error | Cancel | GoAway | Event | Ack

FRAME_TYPES: dict[str, type[Frame]] = {
    "hello": Hello,
    "welcome": Welcome,
    "call": Call,
    "result": Result,
    "error": Error,
    "cancel": Cancel,
    "goaway": GoAway,
    "event": Event,
    "ack": Ack,
}
TYPE_NAMES: dict[type[Frame], str] = {cls: name for name, cls in FRAME_TYPES.items()}

AGENT_FRAMES: frozenset[type[Frame]] = frozenset({Hello, Result, Error, Event, GoAway})
RELAY_FRAMES: frozenset[type[Frame]] = frozenset({Welcome, Call, Cancel, GoAway, Ack})
