"""`ChangeFeed`: the change feed's parts, built and started together in the relay's lifespan.

Retention runs here too: every `change_purge_interval_s` the events stored more than
`change_retention_s` ago are deleted (`ChangeStore.purge`). Every replica may run it; deleting
what another replica already deleted is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging

from relay.changefeed.delivery import KeyLookup, SubscriptionSender
from relay.changefeed.ingest import ChangeIngest
from relay.changefeed.store import ChangeRecord, ChangeStore
from relay.changefeed.subscriptions import SubscriptionStore
from relay.changefeed.wakeup import FeedWatch
from relay.settings import RelaySettings
from relay.store.console import Clock
from relay.webhooks import WebhookPoster

log = logging.getLogger("relay.changefeed")


class ChangeFeed:
    def __init__(
        self,
        store: ChangeStore,
        settings: RelaySettings,
        api_key: KeyLookup,
        *,
        runner: str,
        clock: Clock,
        user_agent: str = "erp-relay",
    ) -> None:
        self.store = store
        self.subscriptions = SubscriptionStore(store.engine, clock=clock)
        self.sender = SubscriptionSender(
            self.subscriptions,
            store,
            api_key,
            WebhookPoster.from_settings(settings, user_agent),
            runner=runner,
            poll_interval_s=settings.change_poll_interval_s,
        )
        self.watch = FeedWatch(
            store, poll_interval_s=settings.change_poll_interval_s, on_moved=self.sender.wake
        )
        self.ingest = ChangeIngest(store, on_stored=self._stored)
        self._retention = dt.timedelta(seconds=settings.change_retention_s)
        self._purge_interval_s = settings.change_purge_interval_s
        self._purger: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.watch.start()
        await self.ingest.start()
        await self.sender.start()
        self._purger = asyncio.create_task(self._purge_loop(), name="change-retention")

    async def stop(self) -> None:
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
            self._purger = None
        await self.ingest.stop()
        await self.sender.stop()
        await self.watch.stop()

    def _stored(self, agent: str, records: list[ChangeRecord]) -> None:
        self.watch.moved(agent, records[-1].cursor)
        self.sender.wake()

    async def purge(self) -> int:
        """Delete the events older than the retention period; how many were deleted."""
        deleted = await self.store.purge(self.store.now() - self._retention)
        if deleted:
            log.info("old change events deleted", extra={"count": deleted})
        return deleted

    async def _purge_loop(self) -> None:
        while True:
            try:
                await self.purge()
            except Exception:
                log.warning("could not delete old change events", exc_info=True)
            await asyncio.sleep(self._purge_interval_s)
