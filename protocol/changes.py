"""The changes the agent reports from the ERP (the change feed), typed once for both sides.

The agent finds changes by polling cheap markers (docs/change-feed.md), turns each into one of
these models and sends it as the ``data`` of a ``change`` event frame; the relay stores it and
hands it to subscribers unchanged. Every change names the catalogue read operation that shows
the same data (`READ_OPERATION`): a caller sees a change only when its API key may call that
operation on the agent, so the feed never leaks what the caller could not read anyway.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from types import MappingProxyType
from typing import Annotated, Literal, TypeAlias

from pydantic import Field, TypeAdapter

from protocol.operations.products import PriceLevel
from protocol.operations.types import ErpId, Model, Money, Quantity


class _Change(Model):
    occurred_at: datetime
    """When the agent saw the change (UTC); the ERP rarely records when a row changed."""


class StockChanged(_Change):
    """A product's stock in one warehouse changed (a sale, a delivery, a reservation)."""

    type: Literal["stock.changed"] = "stock.changed"
    sku: str
    product_id: ErpId
    warehouse: str
    quantity: Quantity
    reserved: Quantity
    available: Quantity


class PriceChanged(_Change):
    """A product's price levels or VAT rate changed; ``levels`` are all of them, as now."""

    type: Literal["price.changed"] = "price.changed"
    sku: str
    product_id: ErpId
    levels: list[PriceLevel]


class InvoiceIssued(_Change):
    """A sales document (invoice FS, receipt PA, correction) was issued, by anyone."""

    type: Literal["invoice.issued"] = "invoice.issued"
    id: ErpId
    number: str
    kind: str
    """``FS``, ``PA``, ``KFS``… as the ERP names the document type."""
    customer_id: ErpId | None = None
    order_id: ErpId | None = None
    issued: date
    currency: str = "PLN"
    net: Money
    vat: Money
    gross: Money


class PaymentRegistered(_Change):
    """A payment was booked against a customer's order or document."""

    type: Literal["payment.registered"] = "payment.registered"
    id: ErpId
    customer_id: ErpId | None = None
    document_id: ErpId | None = None
    document_number: str | None = None
    amount: Money
    currency: str = "PLN"
    paid_on: date
    method: str = ""


class OrderStatusChanged(_Change):
    """A customer order (ZK) changed status, or appeared already in one."""

    type: Literal["order.status_changed"] = "order.status_changed"
    id: ErpId
    number: str
    external_number: str | None = None
    status: str
    previous_status: str | None = None


Change: TypeAlias = Annotated[
    StockChanged | PriceChanged | InvoiceIssued | PaymentRegistered | OrderStatusChanged,
    Field(discriminator="type"),
]

CHANGE_ADAPTER: TypeAdapter[Change] = TypeAdapter(Change)
"""Validates a change from the wire (``CHANGE_ADAPTER.validate_python(frame.data)``)."""

READ_OPERATION: Mapping[str, str] = MappingProxyType(
    {
        "stock.changed": "products.stock",
        "price.changed": "products.prices",
        "invoice.issued": "invoices.list",
        "payment.registered": "customers.balance",
        "order.status_changed": "orders.get",
    }
)
"""Change type → the read operation a caller must be granted to see it."""

CHANGE_TYPES: tuple[str, ...] = tuple(READ_OPERATION)
