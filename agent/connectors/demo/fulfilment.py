"""The demo ERP's fulfilment operations (issue 7)."""

from __future__ import annotations

from agent.connectors.demo.session import DemoSessionBase


class FulfilmentHandlers(DemoSessionBase):
    """Handlers of `protocol.operations.fulfilment`."""
