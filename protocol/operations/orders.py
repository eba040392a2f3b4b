"""Customer orders (ZK in Subiekt GT): create one with stock reservation, read one back."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import Field, model_validator

from protocol.operations.customers import CustomerRef, NewCustomer
from protocol.operations.types import (
    ErpId,
    Lookup,
    Model,
    Money,
    Notes,
    Price,
    Quantity,
    Rate,
    Sku,
    Symbol,
)

MAX_LINES = 500
MAX_WAREHOUSES = 20
SplitPolicy = Literal["none", "whole_line", "split_line"]
"""How ``orders.create`` spreads lines over the preferred warehouses:

- ``none``: the whole order from one warehouse, the first in preference order that has enough
  of every line (with one warehouse, that one or the refusal);
- ``whole_line``: each line from the first warehouse that has enough for the whole line;
- ``split_line``: a line takes what each warehouse has, in preference order, until it is
  covered (one requested line may become several order lines).
"""
ExternalNumber = Annotated[str, Field(min_length=1, max_length=30, examples=["SHOP-2026-000123"])]


class OrderLineIn(Model):
    sku: Sku
    quantity: Annotated[Quantity, Field(gt=0)]
    price_net: Price | None = None
    """Unit net price; the customer's price level applies when omitted."""


class CreateOrderArgs(Model):
    external_number: ExternalNumber
    """The shop's order number, stored in the ERP document."""
    customer: CustomerRef | None = None
    new_customer: NewCustomer | None = None
    lines: Annotated[list[OrderLineIn], Field(min_length=1, max_length=MAX_LINES)]
    warehouse: Symbol | None = None
    """Warehouse symbol; the ERP's main warehouse when omitted (and no ``warehouses``)."""
    warehouses: Annotated[list[Symbol], Field(min_length=1, max_length=MAX_WAREHOUSES)] | None = (
        None
    )
    """Warehouse symbols in order of preference, instead of ``warehouse``; ``split`` says how
    the lines are spread over them."""
    split: SplitPolicy = "none"
    delivery_method: Annotated[str, Field(max_length=50)] | None = None
    channel: Annotated[str, Field(min_length=1, max_length=50)] | None = None
    """The sales channel the order came from (``allegro``, ``web``, ``store``); reports group
    by it."""
    notes: Notes = ""

    @model_validator(mode="after")
    def _one_customer(self) -> CreateOrderArgs:
        if (self.customer is None) == (self.new_customer is None):
            raise ValueError("give exactly one of: customer, new_customer")
        if self.warehouse is not None and self.warehouses is not None:
            raise ValueError("give at most one of: warehouse, warehouses")
        if self.warehouses is not None and len(set(self.warehouses)) != len(self.warehouses):
            raise ValueError("warehouses must not repeat a symbol")
        return self

    @property
    def preference(self) -> list[str] | None:
        """The warehouses to take stock from, most preferred first; None means the main one."""
        if self.warehouses is not None:
            return list(self.warehouses)
        return None if self.warehouse is None else [self.warehouse]


class OrderRef(Lookup):
    """Identifies an order by the ERP id, the ERP number or the shop's external number."""

    id: ErpId | None = None
    number: Annotated[str, Field(min_length=1, max_length=50)] | None = None
    external_number: ExternalNumber | None = None


class OrderLine(Model):
    position: int
    sku: str
    name: str
    quantity: Quantity
    unit: str
    price_net: Price
    price_gross: Price
    vat_rate: Rate
    net: Money
    vat: Money
    gross: Money
    warehouse: str | None = None
    """Symbol of the warehouse this line's quantity is reserved in (and issued from)."""


class Order(Model):
    id: ErpId
    number: str
    external_number: str | None
    status: str
    customer_id: ErpId
    warehouse: str
    issued: date
    currency: str = "PLN"
    net: Money
    vat: Money
    gross: Money
    delivery_method: str | None = None
    channel: str | None = None
    """The sales channel given to ``orders.create``, if any."""
    notes: str = ""
    shop_status: str | None = None
    """The shop-facing status last set by ``orders.update_status``, if any."""
    lines: list[OrderLine]
