"""Which relay replicas are alive: the one question the store's recovery needs answered.

A replica records its id on what it holds in the database (an idempotency key it is
forwarding, a job it is delivering). When that replica dies, another one must take such rows
over, and only those: a row of a live replica is still being worked on. `Membership` is the
answer the store code asks for; `relay.cluster.presence` answers it from Redis, and
`SoloMembership` for a relay that runs alone (everything not its own is an orphan).
"""

from __future__ import annotations

import os
import secrets
import socket
from typing import Protocol


class Membership(Protocol):
    @property
    def replica_id(self) -> str:
        """This replica: unique per process start."""
        ...

    async def live_replicas(self) -> frozenset[str] | None:
        """The replicas alive now, this one included; None when that cannot be told (the
        shared view is unreachable), in which case nothing may be taken over."""
        ...


class SoloMembership:
    """A relay that runs alone: it is the only live replica."""

    def __init__(self, replica_id: str | None = None) -> None:
        self._replica_id = replica_id or default_replica_id()

    @property
    def replica_id(self) -> str:
        return self._replica_id

    async def live_replicas(self) -> frozenset[str] | None:
        return frozenset({self._replica_id})


def default_replica_id() -> str:
    """Host name, process id and a random suffix: readable in logs, never reused."""
    host = "".join(c if c.isalnum() or c in "-." else "-" for c in socket.gethostname())
    return f"{host[:40] or 'relay'}-{os.getpid()}-{secrets.token_hex(3)}"
