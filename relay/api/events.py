"""``GET /v1/events``: the event log as server-sent events, for integrations and the dashboard.

Any API key may follow it: a CRM key sees the events of the agents it is granted, an admin key
or an operator session sees all. ``Last-Event-ID`` (sent by browsers on their own when they
reconnect) resumes after that event, from any replica; without it the stream starts now.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Header
from sse_starlette import EventSourceResponse, ServerSentEvent

from protocol.errors import ErrorCode
from relay.console.access import Caller
from relay.events import EventLog, event_view
from relay.problems import Problem
from relay.state import RelayState, relay_state

router = APIRouter(tags=["events"])

KEEPALIVE_S = 15.0


def _resume_after(last_event_id: str | None) -> int | None:
    if last_event_id is None or not last_event_id.strip():
        return None
    try:
        after = int(last_event_id)
    except ValueError:
        after = -1
    if after < 0:
        raise Problem(ErrorCode.BAD_REQUEST, "Last-Event-ID must be an event id")
    return after


@router.get(
    "/v1/events",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-sent events"}},
    summary="Agent and job events as server-sent events (resumable with Last-Event-ID)",
)
async def events(
    caller: Caller,
    state: Annotated[RelayState, Depends(relay_state)],
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
) -> EventSourceResponse:
    log = state.events
    if log is None:
        raise Problem(ErrorCode.INTERNAL_ERROR, "the event log is not running", status=503)
    after = _resume_after(last_event_id)

    async def stream(log: EventLog) -> AsyncIterator[ServerSentEvent]:
        async for event in log.stream(after):
            if caller.sees_agent(event.agent):
                yield ServerSentEvent(
                    data=orjson.dumps(event_view(event)).decode(),
                    event=event.kind,
                    id=str(event.id),
                )

    return EventSourceResponse(stream(log), ping=KEEPALIVE_S)
