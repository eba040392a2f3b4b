"""The change feed over HTTP (docs/change-feed.md).

- ``GET /v1/agents/{agent}/events?after=&limit=&wait=&types=``: the agent's change events after
  a cursor, oldest first, as a JSON page; with ``wait`` (seconds, at most `MAX_WAIT_S`) an empty
  page is held until an event arrives (long-poll). With ``Accept: text/event-stream`` the same
  events as server-sent events, live, without end (``id`` is the cursor; ``Last-Event-ID``, sent
  by browsers on their own when they reconnect, wins over ``after``).
- ``POST/GET /v1/agents/{agent}/subscriptions``, ``GET/DELETE …/subscriptions/{id}``: webhook
  subscriptions to the feed, visible only to the API key that made them (like jobs).

A key must be granted the agent (else 403 forbidden); of its events it sees only the types
whose read operation it is granted (`relay.changefeed.grants`): the others are left out. After
omitted starts at the oldest event kept; an explicit cursor whose following events were deleted
by retention answers 410 ``cursor_expired`` with ``oldest_cursor``, so a subscriber that was
away too long knows it missed events instead of skipping them unseen.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any, get_args

import orjson
from fastapi import APIRouter, Header, Path, Query
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.responses import Response

from protocol.errors import ErrorCode
from relay.api.agents import Key, State
from relay.changefeed.feed import ChangeFeed
from relay.changefeed.grants import visible_types
from relay.changefeed.store import ChangeRecord
from relay.changefeed.views import (
    ChangePage,
    ChangeType,
    SubscriptionIn,
    SubscriptionList,
    SubscriptionView,
    change_view,
    subscription_view,
)
from relay.problems import PROBLEM_MEDIA_TYPE, Problem
from relay.state import RelayState
from relay.store.records import ApiKeyRecord
from relay.webhooks import WebhookRefused, check_url

router = APIRouter(tags=["change feed"])

MAX_WAIT_S = 30.0
MAX_LIMIT = 1000
KEEPALIVE_S = 15.0
_STREAM_PAGE = 500
_JSON = "application/json"
_SSE = "text/event-stream"

Agent = Annotated[str, Path(max_length=64)]


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    problem = {
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    }
    return {status: {"description": "A problem document", **problem} for status in statuses}


def _json(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type=_JSON)


def _feed(state: RelayState) -> ChangeFeed:
    if state.changes is None:
        raise Problem(ErrorCode.INTERNAL_ERROR, "the change feed is not running", status=503)
    return state.changes


async def _agent(key: ApiKeyRecord, state: RelayState, agent: str) -> None:
    """The checks of every route here, in the order of calls: grant first, then existence."""
    if not key.allows_agent(agent):
        raise Problem(ErrorCode.FORBIDDEN, "this API key is not granted this agent")
    record = await state.store.get_agent(agent)
    if record is None or record.revoked:
        raise Problem(ErrorCode.AGENT_NOT_FOUND, f"no agent named {agent!r}")


def _types(raw: str | None) -> list[str] | None:
    if raw is None or not raw.strip():
        return None
    wanted = [name.strip() for name in raw.split(",") if name.strip()]
    known = set(get_args(ChangeType))
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise Problem(
            ErrorCode.BAD_REQUEST,
            f"unknown change type {unknown[0][:64]!r}; the types are {', '.join(sorted(known))}",
        )
    return wanted


def _resume_after(last_event_id: str | None, after: int | None) -> int | None:
    if last_event_id is None or not last_event_id.strip():
        return after
    try:
        cursor = int(last_event_id)
    except ValueError:
        cursor = -1
    if cursor < 0:
        raise Problem(ErrorCode.BAD_REQUEST, "Last-Event-ID must be a cursor")
    return cursor


async def _start(feed: ChangeFeed, agent: str, after: int | None) -> int:
    """The cursor to read after: `after` if its followers are all kept, else cursor_expired."""
    bounds = await feed.store.bounds(agent)
    if after is None:
        return bounds.purged_through
    if after < bounds.purged_through:
        raise Problem(
            ErrorCode.CURSOR_EXPIRED,
            f"events after cursor {after} are no longer kept; resynchronise, then read after "
            f"cursor {bounds.purged_through}",
            oldest_cursor=bounds.purged_through,
        )
    return after


@router.get(
    "/v1/agents/{agent}/events",
    response_model=ChangePage,
    responses={
        200: {
            "description": "A page of change events, or (Accept: text/event-stream) a stream",
            "content": {_SSE: {"schema": {"type": "string"}}},
        },
        **_problems(400, 401, 403, 404, 410),
    },
    summary="The agent's change events after a cursor (long-poll, or server-sent events)",
)
async def events(
    key: Key,
    state: State,
    agent: Agent,
    after: Annotated[int | None, Query(ge=0, description="Read after this cursor")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    wait: Annotated[
        float, Query(ge=0, le=MAX_WAIT_S, description="Hold an empty page this many seconds")
    ] = 0.0,
    types: Annotated[
        str | None, Query(max_length=500, description="Comma-separated change types")
    ] = None,
    accept: Annotated[str | None, Header(max_length=500)] = None,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
) -> Response:
    await _agent(key, state, agent)
    feed = _feed(state)
    shown = visible_types(key, _types(types))
    if accept is not None and _SSE in accept:
        start = await _start(feed, agent, _resume_after(last_event_id, after))
        return EventSourceResponse(_stream(feed, agent, start, shown), ping=KEEPALIVE_S)
    start = await _start(feed, agent, after)
    page = await _long_poll(feed, agent, start, shown, limit=limit, wait_s=wait)
    return _json(
        {
            "items": [change_view(record) for record in page],
            "next_after": page[-1].cursor if page else start,
        }
    )


async def _long_poll(
    feed: ChangeFeed, agent: str, after: int, types: frozenset[str], *, limit: int, wait_s: float
) -> list[ChangeRecord]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        ticket = feed.watch.ticket(agent)
        page = await feed.store.page(agent, after, types=types, limit=limit)
        remaining = deadline - loop.time()
        if page or remaining <= 0 or feed.watch.closed:
            return page
        await feed.watch.wait(ticket, remaining)


async def _stream(
    feed: ChangeFeed, agent: str, after: int, types: frozenset[str]
) -> AsyncIterator[ServerSentEvent]:
    while not feed.watch.closed:
        ticket = feed.watch.ticket(agent)
        page = await feed.store.page(agent, after, types=types, limit=_STREAM_PAGE)
        for record in page:
            yield ServerSentEvent(
                data=orjson.dumps(change_view(record)).decode(),
                event=record.type,
                id=str(record.cursor),
            )
        if page:
            after = page[-1].cursor
        if len(page) < _STREAM_PAGE:
            await feed.watch.wait(ticket, KEEPALIVE_S)


# Webhook subscriptions


@router.post(
    "/v1/agents/{agent}/subscriptions",
    status_code=201,
    response_model=SubscriptionView,
    responses=_problems(401, 403, 404, 422),
    summary="Subscribe a webhook to the agent's change events",
)
async def create_subscription(
    key: Key, state: State, agent: Agent, body: SubscriptionIn
) -> Response:
    await _agent(key, state, agent)
    feed = _feed(state)
    settings = state.settings
    if settings.webhook_signing_key is None:
        raise Problem(
            ErrorCode.WEBHOOK_URL_REFUSED,
            "this relay sends no webhooks: its operator has not set a webhook signing key",
        )
    try:
        await check_url(
            body.url,
            allow_private=settings.webhook_allow_private,
            allow_http=settings.webhook_allow_http,
        )
    except WebhookRefused as exc:
        raise Problem(ErrorCode.WEBHOOK_URL_REFUSED, f"webhook URL refused: {exc}") from None
    if body.after is not None:
        await _start(feed, agent, body.after)
    sub = await feed.subscriptions.create(
        api_key_id=key.public_id,
        agent=agent,
        url=body.url,
        types=None if body.types is None else tuple(dict.fromkeys(body.types)),
        after=body.after,
    )
    location = f"/v1/agents/{agent}/subscriptions/{sub.public_id}"
    return _json(subscription_view(sub), 201, {"Location": location})


@router.get(
    "/v1/agents/{agent}/subscriptions",
    response_model=SubscriptionList,
    responses=_problems(401, 403, 404),
    summary="This key's webhook subscriptions to the agent's change events",
)
async def list_subscriptions(key: Key, state: State, agent: Agent) -> Response:
    await _agent(key, state, agent)
    subs = await _feed(state).subscriptions.list_for(key.public_id, agent)
    return _json({"items": [subscription_view(sub) for sub in subs]})


@router.get(
    "/v1/agents/{agent}/subscriptions/{subscription_id}",
    response_model=SubscriptionView,
    responses=_problems(401, 403, 404),
    summary="One webhook subscription: its position, deliveries and failures",
)
async def get_subscription(
    key: Key, state: State, agent: Agent, subscription_id: Annotated[str, Path(max_length=64)]
) -> Response:
    await _agent(key, state, agent)
    sub = await _feed(state).subscriptions.get(subscription_id, key.public_id, agent)
    if sub is None:
        raise Problem(ErrorCode.SUBSCRIPTION_NOT_FOUND, "no such subscription")
    return _json(subscription_view(sub))


@router.delete(
    "/v1/agents/{agent}/subscriptions/{subscription_id}",
    status_code=204,
    responses=_problems(401, 403, 404),
    summary="Stop a webhook subscription",
)
async def delete_subscription(
    key: Key, state: State, agent: Agent, subscription_id: Annotated[str, Path(max_length=64)]
) -> Response:
    await _agent(key, state, agent)
    if not await _feed(state).subscriptions.delete(subscription_id, key.public_id, agent):
        raise Problem(ErrorCode.SUBSCRIPTION_NOT_FOUND, "no such subscription")
    return Response(status_code=204)
