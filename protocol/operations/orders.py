"""Customer orders (ZK in Subiekt GT): create one with stock reservation, read one back."""

from __future__ import annotations

from datetime import date
from typing import Annotated

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
    """Warehouse symbol; the ERP's main warehouse when omitted."""
    delivery_method: Annotated[str, Field(max_length=50)] | None = None
    notes: Notes = ""

    @model_validator(mode="after")
    def _one_customer(self) -> CreateOrderArgs:
        if (self.customer is None) == (self.new_customer is None):
            raise ValueError("give exactly one of: customer, new_customer")
        return self


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
    notes: str = ""
    lines: list[OrderLine]
