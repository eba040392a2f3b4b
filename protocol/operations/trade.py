"""B2B trade: quotes, a customer's commercial terms, sales reports.

A wholesaler's shop shows a logged-in business customer the terms the ERP holds for it (price
level, discount, credit, payment days), turns a basket into a priced offer the customer can
accept later, and the back office reads sales figures grouped the way it plans by.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import Field, model_validator

from protocol.operations.customers import CustomerRef
from protocol.operations.operation import Operation
from protocol.operations.orders import MAX_LINES, OrderLine, OrderLineIn
from protocol.operations.types import (
    ErpId,
    Model,
    Money,
    Notes,
    Offset,
    Page,
    Quantity,
    Rate,
    Symbol,
)

MAX_REPORT_DAYS = 366
"""The longest date range one ``reports.sales`` call covers (a leap year, both ends included)."""
MAX_REPORT_ROWS = 1000


class CreateQuoteArgs(Model):
    customer: CustomerRef
    lines: Annotated[list[OrderLineIn], Field(min_length=1, max_length=MAX_LINES)]
    valid_until: date | None = None
    """The last day the offer holds; 30 days after issue when omitted."""
    warehouse: Symbol | None = None
    """Warehouse symbol the goods would ship from; the ERP's main warehouse when omitted."""
    notes: Notes = ""


class Quote(Model):
    id: ErpId
    number: str
    status: str
    """``offer`` while it is one."""
    customer_id: ErpId
    warehouse: str
    issued: date
    valid_until: date
    currency: str = "PLN"
    discount: Rate
    """The customer's discount in percent, taken off the price level on lines priced by the ERP."""
    net: Money
    vat: Money
    gross: Money
    notes: str = ""
    lines: list[OrderLine]


class CustomerPriceLevel(Model):
    level: int
    name: str


class PaymentTerms(Model):
    deferred: bool
    """Whether the customer may pay after delivery (on credit)."""
    days: int
    """Payment days granted on invoices (0 when payment is due at once)."""
    method: str | None = None
    """The default payment method's name in the ERP (``Przelew``, ``Gotówka``)."""


class CustomerTerms(Model):
    customer_id: ErpId
    blocked: bool
    price_level: CustomerPriceLevel | None = None
    discount: Rate
    currency: str = "PLN"
    credit_limit: Money | None = None
    receivables: Money
    credit_available: Money | None = None
    payment: PaymentTerms


SalesGrouping = Literal["day", "product", "customer", "channel", "warehouse"]


class SalesReportArgs(Model):
    date_from: date
    date_to: date
    """Inclusive; at most 366 days after ``date_from`` counting both ends."""
    group_by: SalesGrouping = "day"
    limit: Annotated[int, Field(ge=1, le=MAX_REPORT_ROWS)] = 100
    offset: Offset = 0

    @model_validator(mode="after")
    def _range(self) -> SalesReportArgs:
        if self.date_from > self.date_to:
            raise ValueError("date_from is after date_to")
        if (self.date_to - self.date_from).days >= MAX_REPORT_DAYS:
            raise ValueError(f"the date range covers more than {MAX_REPORT_DAYS} days")
        return self


class SalesFigures(Model):
    documents: int
    quantity: Quantity
    net: Money
    gross: Money
    cost: Money | None = None
    """Purchase value of what was sold; null when the ERP lacks it for any line counted."""
    margin: Money | None = None
    """``net`` − ``cost``; null with ``cost``."""


class SalesRow(SalesFigures):
    key: str | None
    """The day (``YYYY-MM-DD``), SKU, customer id, channel or warehouse symbol; null for
    documents without a channel."""
    name: str | None = None
    """The product's, customer's or warehouse's name."""


class SalesReport(Page):
    date_from: date
    date_to: date
    group_by: SalesGrouping
    currency: str = "PLN"
    totals: SalesFigures
    """Over the whole range, every group (not only this page)."""
    items: list[SalesRow]


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "quotes.create",
        CreateQuoteArgs,
        Quote,
        True,
        "Create a priced offer for a B2B customer; reserves no stock",
    ),
    Operation(
        "customers.terms",
        CustomerRef,
        CustomerTerms,
        False,
        "A customer's price level, discount, credit, payment terms and blocked flag",
    ),
    Operation(
        "reports.sales",
        SalesReportArgs,
        SalesReport,
        False,
        "Sales (net, gross, quantity, margin) in a date range by day, product, customer, "
        "channel or warehouse",
    ),
)
