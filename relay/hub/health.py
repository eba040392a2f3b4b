"""The last health an agent connection reported (its ``health`` event, docs/protocol.md).

The agent sends it on connect, every few seconds and when its ERP's reachability changes; the
relay keeps only the newest per connection. The event's data comes from the agent, so it is
read defensively: anything unexpected reads as "not reported".
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from protocol.frames import JSONValue

ERP_OK = "ok"
ERP_UNREACHABLE = "unreachable"
_MAX_DETAIL = 200


@dataclass(frozen=True, slots=True)
class LinkHealth:
    erp: str
    """`ERP_OK` or `ERP_UNREACHABLE`."""
    rtt_ms: float | None
    """The agent's keepalive round trip (None until its first pong)."""
    detail: str
    at: float

    @classmethod
    def from_event(cls, data: JSONValue) -> LinkHealth | None:
        if not isinstance(data, dict):
            return None
        erp = data.get("erp")
        if erp not in (ERP_OK, ERP_UNREACHABLE):
            return None
        rtt = data.get("rtt_ms")
        rtt_ms = (
            float(rtt)
            if isinstance(rtt, int | float) and not isinstance(rtt, bool) and 0 <= rtt < 1e9
            else None
        )
        detail = data.get("detail")
        return cls(
            erp=str(erp),
            rtt_ms=rtt_ms,
            detail=detail[:_MAX_DETAIL] if isinstance(detail, str) else "",
            at=time.time(),
        )
