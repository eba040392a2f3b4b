"""The change feed, relay side: what agents report changed in their ERP, kept and handed out.

- `store`: the events and their per-agent cursors (commit-ordered), retention;
- `ingest`: ``change`` event frames from agent connections into the store, acked after commit;
- `wakeup`: waking long-polls and event streams when a feed moves, on every replica;
- `subscriptions` and `delivery`: webhook subscriptions and their ordered, signed deliveries;
- `grants`: which change types an API key sees; `views`: the shapes subscribers get;
- `feed`: `ChangeFeed`, which starts and stops all of it in the relay's lifespan.

docs/change-feed.md describes the whole feed, agent side included.
"""
