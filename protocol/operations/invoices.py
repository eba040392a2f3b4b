"""Sales invoices of a customer, for "my documents" pages and dunning."""

from __future__ import annotations

from datetime import date

from pydantic import model_validator

from protocol.operations.customers import CustomerRef
from protocol.operations.types import ErpId, Limit, Model, Money, Offset, Page


class InvoiceListArgs(Model):
    customer: CustomerRef
    date_from: date | None = None
    date_to: date | None = None
    unpaid_only: bool = False
    limit: Limit = 50
    offset: Offset = 0

    @model_validator(mode="after")
    def _range(self) -> InvoiceListArgs:
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ValueError("date_from is after date_to")
        return self


class Invoice(Model):
    id: ErpId
    number: str
    kind: str
    issued: date
    due: date | None
    currency: str = "PLN"
    net: Money
    vat: Money
    gross: Money
    open: Money
    paid: bool


class InvoicePage(Page):
    items: list[Invoice]
