"""A scripted connector: calls that block until told, and a record of interrupts."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel

from agent.connectors.base import (
    CallContext,
    Connector,
    ConnectorInfo,
    ConnectorSession,
    ErpFailure,
    ErpUnavailable,
    handles,
)
from protocol.operations.customers import Customer, CustomerRef
from protocol.operations.system import PingArgs, PingResult


class ScriptedConnector(Connector):
    """``ping`` blocks for ``delay_s`` (or until interrupted); ``customers.get`` answers at once."""

    name: ClassVar[str] = "scripted"

    def __init__(self, delay_s: float = 0.0, label: str = "scripted") -> None:
        self.delay_s = delay_s
        self.label = label
        self.started = threading.Event()
        self.interrupted = threading.Event()
        self.calls: list[str] = []

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> ScriptedConnector:
        return cls(float(options.get("delay_s", 0)))

    def info(self) -> ConnectorInfo:
        return ConnectorInfo(self.name, f"Scripted ERP {self.label}", ScriptedSession.operations())

    def open_session(self) -> ConnectorSession:
        return ScriptedSession(self)


class ScriptedSession(ConnectorSession):
    def __init__(self, connector: ScriptedConnector) -> None:
        self.connector = connector
        self._stop = threading.Event()

    @handles("ping")
    def ping(self, args: PingArgs, ctx: CallContext) -> BaseModel:
        self.connector.calls.append("ping")
        self.connector.started.set()
        if self.connector.delay_s and self._stop.wait(self.connector.delay_s):
            self._stop.clear()
            self.connector.interrupted.set()
            raise ErpFailure("interrupted")
        return PingResult(
            connector=self.connector.name, erp=self.connector.label, agent_version="test"
        )

    @handles("customers.get")
    def customer(self, args: CustomerRef, ctx: CallContext) -> BaseModel:
        """Ids ``unavailable``, ``broken`` and ``crash`` fail the three ways an ERP can."""
        self.connector.calls.append("customers.get")
        if args.id == "unavailable":
            raise ErpUnavailable("database is restarting")
        if args.id == "broken":
            raise ErpFailure("the ERP refused: document locked")
        if args.id == "crash":
            raise RuntimeError("Kowalski Jan, NIP 5260001246: secret ERP text")
        return Customer(id=args.id or "1", symbol="S", name=self.connector.label)

    def probe(self) -> None:
        """Always reachable: tests count, block and time this connector's pings, so the
        agent's health probe must not run them."""

    def interrupt(self) -> None:
        self._stop.set()

    def close(self) -> None:
        pass
