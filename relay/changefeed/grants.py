"""Which change types an API key may see: the feed never shows what the key could not read.

A change is visible when the key is granted the agent and the read operation that shows the
same data (`protocol.changes.READ_OPERATION`): a key limited to ``customers.*`` sees payments
(``customers.balance``) but no stock. Types a key may not read are left out, never refused, so
narrowing a key's grants narrows its feed instead of breaking it.
"""

from __future__ import annotations

from collections.abc import Iterable

from protocol.changes import CHANGE_TYPES, READ_OPERATION
from relay.store.records import ApiKeyRecord


def visible_types(key: ApiKeyRecord, wanted: Iterable[str] | None = None) -> frozenset[str]:
    """The change types among `wanted` (None: all) that `key` may read."""
    return frozenset(
        kind
        for kind in (CHANGE_TYPES if wanted is None else wanted)
        if kind in READ_OPERATION and key.allows_operation(READ_OPERATION[kind])
    )
