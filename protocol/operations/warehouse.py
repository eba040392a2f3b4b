"""Warehouses: transfers (MM), pickup in store, availability with planned deliveries."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from pydantic import Field, model_validator

from protocol.operations.operation import Operation
from protocol.operations.orders import MAX_LINES, Order, OrderRef
from protocol.operations.products import ProductStock, StockArgs
from protocol.operations.types import ErpId, Model, Notes, Quantity, Sku, Symbol


class TransferLineIn(Model):
    sku: Sku
    quantity: Annotated[Quantity, Field(gt=0)]


class CreateTransferArgs(Model):
    from_warehouse: Symbol
    """Symbol of the warehouse the goods leave."""
    to_warehouse: Symbol
    """Symbol of the warehouse the goods arrive in."""
    lines: Annotated[list[TransferLineIn], Field(min_length=1, max_length=MAX_LINES)]
    notes: Notes = ""

    @model_validator(mode="after")
    def _two_warehouses(self) -> CreateTransferArgs:
        if self.from_warehouse.casefold() == self.to_warehouse.casefold():
            raise ValueError("from_warehouse and to_warehouse must differ")
        return self


class TransferLine(Model):
    position: int
    sku: str
    name: str
    quantity: Quantity
    unit: str


class Transfer(Model):
    """An inter-warehouse transfer (MM in Subiekt GT)."""

    id: ErpId
    number: str
    from_warehouse: str
    to_warehouse: str
    issued: date
    order_id: ErpId | None = None
    """The customer order the transfer was made for (``orders.ship_to_store``), if any."""
    notes: str = ""
    lines: list[TransferLine]


class ShipToStoreArgs(Model):
    order: OrderRef
    store: Symbol
    """Symbol of the store's warehouse, where the customer picks the order up."""
    notes: Notes = ""


class ShipToStoreResult(Model):
    order: Order
    """The order after the move: its lines now in the store's warehouse."""
    transfers: list[Transfer]
    """One transfer per warehouse the order's lines came from (usually one)."""


class PickedUpArgs(Model):
    order: OrderRef


class PickedUpResult(Model):
    order: Order
    store: str
    """Symbol of the store's warehouse the order was collected from."""
    picked_up: date


class PlannedDelivery(Model):
    """An open purchase order (ZD) line: goods expected in a warehouse."""

    warehouse: str
    quantity: Quantity
    expected: date | None
    """When the supplier promised it; null when the purchase order has no date."""
    purchase_order_id: ErpId
    purchase_order_number: str


class ProductAvailability(ProductStock):
    deliveries: list[PlannedDelivery]
    """Open purchase orders, earliest expected first."""


class AvailabilityResult(Model):
    items: list[ProductAvailability]
    unknown_skus: list[str]


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "transfers.create",
        CreateTransferArgs,
        Transfer,
        True,
        "Move stock between two warehouses with an inter-warehouse transfer (MM)",
    ),
    Operation(
        "orders.ship_to_store",
        ShipToStoreArgs,
        ShipToStoreResult,
        True,
        "Move a pickup order's goods and reservation to the store's warehouse (MM)",
    ),
    Operation(
        "orders.picked_up",
        PickedUpArgs,
        PickedUpResult,
        True,
        "Record that the customer collected a pickup order in the store",
    ),
    Operation(
        "products.availability",
        StockArgs,
        AvailabilityResult,
        False,
        "Stock per warehouse plus planned deliveries from open purchase orders (ZD)",
    ),
)
