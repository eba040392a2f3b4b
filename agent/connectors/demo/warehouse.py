"""The demo ERP's warehouse operations (issue 7)."""

from __future__ import annotations

from agent.connectors.demo.session import DemoSessionBase


class WarehouseHandlers(DemoSessionBase):
    """Handlers of `protocol.operations.warehouse`."""
