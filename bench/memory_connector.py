"""A connector answering customers.balance from memory, on the agent's event loop.

`blocking = False` makes the agent's executor call it inline (no worker thread), so scenario
(b) measures the relay and the agent's own code, with no ERP cost at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel

from agent.connectors.base import (
    CallContext,
    Connector,
    ConnectorInfo,
    ConnectorSession,
    handles,
)
from bench.answer import BALANCE
from protocol.operations.customers import CustomerRef
from protocol.operations.system import PingArgs, PingResult


class MemoryConnector(Connector):
    name: ClassVar[str] = "bench-memory"
    blocking: ClassVar[bool] = False

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> MemoryConnector:
        return cls()

    def info(self) -> ConnectorInfo:
        return ConnectorInfo(self.name, "in-memory benchmark ERP", MemorySession.operations())

    def open_session(self) -> ConnectorSession:
        return MemorySession()


class MemorySession(ConnectorSession):
    @handles("customers.balance")
    def balance(self, args: CustomerRef, ctx: CallContext) -> BaseModel:
        return BALANCE

    @handles("ping")
    def ping(self, args: PingArgs, ctx: CallContext) -> BaseModel:
        return PingResult(connector=MemoryConnector.name, erp="memory", agent_version="bench")

    def close(self) -> None:
        pass
