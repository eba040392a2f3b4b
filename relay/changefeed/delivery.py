"""`SubscriptionSender`: posts each subscription's change events to its webhook, in order.

One background task per relay. Every pass takes the subscriptions with undelivered events
(`SubscriptionStore.lease_due`, a lease so replicas never deliver one subscription twice at
once) and, for each, posts its next events one at a time in cursor order, moving its stored
position after each success. The request is the job webhooks' (relay/webhooks.py): the same
signature with the subscribing key's secret, the same SSRF guard before every attempt, the same
backoff (5 s doubling to 1 h). An event still failing `webhook_retry_for_s` after it was stored
is given up on: counted in the subscription's ``failed``, and the next one goes out. Basing the
limit on the event's age (not on the first attempt) keeps a receiver that was down for days
from holding the feed back a full retry period per event.

What a subscription sends follows its key's grants at the time of sending (`visible_types`);
a revoked key, or one no longer granted the agent, sends nothing until that changes.

Woken at once when this replica stores events, and every `poll_interval_s` for the events
other replicas store and for retries that fall due.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable

import orjson

from relay.changefeed.grants import visible_types
from relay.changefeed.store import ChangeRecord, ChangeStore
from relay.changefeed.subscriptions import Lease, SubscriptionStore
from relay.changefeed.views import webhook_body
from relay.store.records import ApiKeyRecord
from relay.webhooks import NO_SIGNING_KEY, WebhookPoster, backoff_s

log = logging.getLogger("relay.changefeed")

KeyLookup = Callable[[str], Awaitable[ApiKeyRecord | None]]

_PAGE = 20
_MAX_PER_PASS = 200
"""Events one subscription sends in a pass before the others get their turn."""
_BLOCKED_RETRY_S = 60.0


class SubscriptionSender:
    def __init__(
        self,
        subscriptions: SubscriptionStore,
        changes: ChangeStore,
        api_key: KeyLookup,
        poster: WebhookPoster,
        *,
        runner: str,
        poll_interval_s: float = 1.0,
    ) -> None:
        self._subscriptions = subscriptions
        self._changes = changes
        self._api_key = api_key
        self._poster = poster
        self._runner = runner
        self._lease_s = 2 * poster.timeout_s + 30.0
        self._poll_interval_s = poll_interval_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="change-webhooks")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self._subscriptions.release_all(self._runner)
        await self._poster.aclose()

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.run_once()
            except Exception:
                log.warning("change webhook pass failed", exc_info=True)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_interval_s):
                    await self._wake.wait()

    async def run_once(self) -> int:
        """One pass over the subscriptions with events to send; how many were taken."""
        leases = await self._subscriptions.lease_due(self._runner, self._lease_s)
        if leases:
            await asyncio.gather(*(self._serve(lease) for lease in leases))
        return len(leases)

    async def _serve(self, lease: Lease) -> None:
        sub = lease.subscription
        try:
            key = await self._api_key(sub.api_key_id)
            problem = self._why_not(key, sub.agent)
            if problem is not None or key is None:
                retry_at = self._subscriptions.now() + dt.timedelta(seconds=_BLOCKED_RETRY_S)
                await self._subscriptions.blocked(
                    sub.id, self._runner, error=problem or "", retry_at=retry_at
                )
                return
            await self._send_events(lease, visible_types(key, sub.types))
        except Exception:
            log.warning("change webhook delivery failed", extra={"subscription": sub.public_id})
            with contextlib.suppress(Exception):
                await self._subscriptions.release(sub.id, self._runner)
            raise

    def _why_not(self, key: ApiKeyRecord | None, agent: str) -> str | None:
        if self._poster.signing_key is None:
            return NO_SIGNING_KEY
        if key is None or key.revoked:
            return "the subscription's API key was revoked"
        if not key.allows_agent(agent):
            return "the subscription's API key is no longer granted this agent"
        return None

    async def _send_events(self, lease: Lease, types: frozenset[str]) -> None:
        sub = lease.subscription
        position = sub.position
        attempts = sub.attempts  # failed attempts of the first event only
        sent = 0
        while sent < _MAX_PER_PASS:
            page = await self._changes.page(
                sub.agent, position, types=types, limit=_PAGE, through=lease.last_cursor
            )
            if not page:
                # Nothing this subscription may see up to the newest cursor when it was taken:
                # every event there is committed (cursors follow commit order), so skip them.
                await self._subscriptions.advance(
                    sub.id,
                    self._runner,
                    position=lease.last_cursor,
                    delivered=False,
                    lease_s=self._lease_s,
                )
                break
            for record in page:
                if not await self._attempt(lease, record, attempts):
                    return
                position = record.cursor
                attempts = 0
                sent += 1
        await self._subscriptions.release(sub.id, self._runner)

    async def _attempt(self, lease: Lease, record: ChangeRecord, failed_before: int) -> bool:
        """Post one event; True when delivered and the position moved past it."""
        sub = lease.subscription
        body = orjson.dumps(webhook_body(sub.public_id, record))
        attempt = await self._poster.post(
            sub.url, body, sub.api_key_id, f"{sub.public_id}:{record.cursor}"
        )
        if attempt.delivered:
            return await self._subscriptions.advance(
                sub.id,
                self._runner,
                position=record.cursor,
                delivered=True,
                status=attempt.status,
                lease_s=self._lease_s,
            )
        status, error = attempt.status, attempt.error or ""
        attempts = failed_before + 1
        next_at = self._subscriptions.now() + dt.timedelta(seconds=backoff_s(attempts))
        gave_up = self._poster.gives_up(record.stored_at, next_at)
        log.info(
            "change webhook attempt failed",
            extra={
                "subscription": sub.public_id,
                "cursor": record.cursor,
                "attempts": attempts,
                "gave_up": gave_up,
            },
        )
        await self._subscriptions.failed_attempt(
            sub.id,
            self._runner,
            cursor=record.cursor,
            status=status,
            error=error,
            next_attempt_at=None if gave_up else next_at,
        )
        return False
