"""The change feed as subscribers see it: one shape for pages, server-sent events and webhooks.

The models type the HTTP API for the OpenAPI document (`ChangeItem.data` is the change union of
protocol/changes.py, so every event type is documented). Answers are rendered with orjson from
the stored data, which was validated when the agent sent it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field

from protocol.changes import Change
from relay.changefeed.store import ChangeRecord
from relay.changefeed.subscriptions import SubscriptionRecord
from relay.store.models import WEBHOOK_URL_MAX

ChangeType = Literal[
    "stock.changed", "price.changed", "invoice.issued", "payment.registered", "order.status_changed"
]
"""`protocol.changes.CHANGE_TYPES` as a type, so the API validates and documents type names."""


class ChangeItem(BaseModel):
    cursor: int = Field(description="Position in the agent's feed; resume with after=<cursor>")
    type: ChangeType
    occurred_at: dt.datetime
    data: Change


class ChangePage(BaseModel):
    items: list[ChangeItem]
    next_after: int = Field(
        description="Pass as `after` to read on: the last cursor returned, else `after` itself"
    )


class WebhookChange(ChangeItem):
    """The body of a change-feed webhook (one event per request)."""

    subscription: str
    agent: str


class SubscriptionIn(BaseModel):
    url: str = Field(max_length=WEBHOOK_URL_MAX, description="https URL each event is POSTed to")
    types: list[ChangeType] | None = Field(
        None, description="Change types to send (default: every type the key may read)"
    )
    after: int | None = Field(
        None, ge=0, description="Start after this cursor (default: with the next new event)"
    )


class SubscriptionView(BaseModel):
    id: str
    agent: str
    url: str
    types: list[ChangeType] | None
    created_at: dt.datetime
    position: int = Field(description="Every event up to this cursor was delivered or failed")
    delivered: int
    failed: int = Field(description="Events given up on after webhook_retry_for_s")
    last_delivered_cursor: int | None
    last_delivered_at: dt.datetime | None
    last_failed_cursor: int | None
    attempts: int = Field(description="Failed attempts of the event after `position`")
    last_attempt_at: dt.datetime | None
    next_attempt_at: dt.datetime | None
    last_status: int | None
    last_error: str | None


class SubscriptionList(BaseModel):
    items: list[SubscriptionView]


def change_view(record: ChangeRecord) -> dict[str, Any]:
    return {
        "cursor": record.cursor,
        "type": record.type,
        "occurred_at": record.occurred_at,
        "data": record.data,
    }


def webhook_body(subscription: str, record: ChangeRecord) -> dict[str, Any]:
    return {"subscription": subscription, "agent": record.agent, **change_view(record)}


def subscription_view(sub: SubscriptionRecord) -> dict[str, Any]:
    return {
        "id": sub.public_id,
        "agent": sub.agent,
        "url": sub.url,
        "types": None if sub.types is None else list(sub.types),
        "created_at": sub.created_at,
        "position": sub.position,
        "delivered": sub.delivered,
        "failed": sub.failed,
        "last_delivered_cursor": sub.last_delivered_cursor,
        "last_delivered_at": sub.last_delivered_at,
        "last_failed_cursor": sub.last_failed_cursor,
        "attempts": sub.attempts,
        "last_attempt_at": sub.last_attempt_at,
        "next_attempt_at": sub.next_attempt_at,
        "last_status": sub.last_status,
        "last_error": sub.last_error,
    }
