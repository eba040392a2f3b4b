"""``ping``: is the agent there, and can it reach its ERP database?"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from protocol.operations.types import Model


class PingArgs(Model):
    pass


class OperationStatusArgs(Model):
    idempotency_key: Annotated[str, Field(min_length=1, max_length=255)]


class OperationStatus(Model):
    """What became of a write, as the agent's journal (and the ERP) know it.

    ``state`` is ``unknown`` when this agent never received a write with that key,
    ``in_progress`` while it runs, ``done`` with the ``result`` the ERP returned, or ``failed``
    with the ``error`` code and message (the ERP did not change).
    """

    idempotency_key: str
    state: Literal["unknown", "in_progress", "done", "failed"]
    operation: str | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class PingResult(Model):
    connector: str
    erp: str
    agent_version: str
    database_time: datetime | None = None
