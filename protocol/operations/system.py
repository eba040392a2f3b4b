"""``ping``: is the agent there, and can it reach its ERP database?"""

from __future__ import annotations

from datetime import datetime

from protocol.operations.types import Model


class PingArgs(Model):
    pass


class PingResult(Model):
    connector: str
    erp: str
    agent_version: str
    database_time: datetime | None = None
