"""The demo ERP's trade operations (issue 7)."""

from __future__ import annotations

from agent.connectors.demo.session import DemoSessionBase


class TradeHandlers(DemoSessionBase):
    """Handlers of `protocol.operations.trade`."""
