"""After the order: status, cancellation, payments, the sales document, returns and complaints.

The order (ZK) made by ``orders.create`` goes on from here: the shop sets its own status on it,
cancels it (the reservation goes back to stock), registers payments (before the invoice as a
prepayment, after it against the receivable), issues the sales document (invoice FS or receipt
PA) from it, and takes goods back (a correction) or a complaint about them.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import Field, model_validator

from protocol.operations.operation import Operation
from protocol.operations.orders import MAX_LINES, Order, OrderRef
from protocol.operations.types import ErpId, Lookup, Model, Money, Quantity, Sku

SalesKind = Literal["FS", "PA"]
"""FS: VAT invoice (with the customer's NIP); PA: receipt."""


class DocumentRef(Lookup):
    """Identifies a sales document (FS or PA) by the ERP id or the ERP number."""

    id: ErpId | None = None
    number: (
        Annotated[str, Field(min_length=1, max_length=50, examples=["FS 12/05/2026"])] | None
    ) = None


class UpdateOrderStatusArgs(Model):
    order: OrderRef
    status: Annotated[str, Field(min_length=1, max_length=50, examples=["packed"])]
    """The shop's own status text (``packed``, ``shipped``…), shown in the ERP on the order."""


class CancelOrderArgs(Model):
    order: OrderRef


class RegisterPaymentArgs(Model):
    order: OrderRef | None = None
    """Pay an order: a prepayment before it is fulfilled, the sales document's receivable after."""
    document: DocumentRef | None = None
    """Pay an invoice or receipt: reduces its receivable."""
    amount: Annotated[Money, Field(gt=0)]
    paid_on: date | None = None
    """The day the money came in; today when omitted."""
    method: Annotated[str, Field(min_length=1, max_length=50, examples=["transfer"])]
    """How it was paid: ``transfer``, ``card``, ``cash``, ``blik``, the payment gateway's name…"""
    reference: Annotated[str, Field(max_length=100, examples=["PAYU-8F3K2"])] = ""
    """The payment's own id (bank transfer title, gateway transaction id)."""

    @model_validator(mode="after")
    def _one_target(self) -> RegisterPaymentArgs:
        if (self.order is None) == (self.document is None):
            raise ValueError("give exactly one of: order, document")
        return self


class Payment(Model):
    id: ErpId
    amount: Money
    currency: str = "PLN"
    paid_on: date
    method: str
    reference: str
    order_id: ErpId | None
    """The order the payment was booked against, when it was (a prepayment or its invoice)."""
    document_id: ErpId | None
    """The FS/PA whose receivable it paid; null for a prepayment on an unfulfilled order."""
    document_number: str | None
    open: Money
    """What is still to be paid on the order or document after this payment."""


class FulfilOrderArgs(Model):
    order: OrderRef
    kind: SalesKind


class SalesDocument(Model):
    id: ErpId
    number: str
    kind: SalesKind
    issued: date
    due: date | None
    """Payment due date: the customer's payment terms for FS, the day of issue for PA."""
    customer_id: ErpId
    nip: str | None
    currency: str = "PLN"
    net: Money
    vat: Money
    gross: Money
    prepaid: Money
    """Payments registered on the order before it was fulfilled, applied to this document."""
    amount_due: Money
    order_id: ErpId
    order_number: str


class ReturnLineIn(Model):
    sku: Sku
    quantity: Annotated[Quantity, Field(gt=0)]


class CreateReturnArgs(Model):
    document: DocumentRef
    lines: Annotated[list[ReturnLineIn], Field(min_length=1, max_length=MAX_LINES)]
    reason: Annotated[str, Field(min_length=1, max_length=200, examples=["withdrawal (14 days)"])]


class ReturnLine(Model):
    sku: str
    quantity: Quantity
    """Taken back (positive); the correction's own line carries it negative."""
    warehouse: str
    """Where the goods went back into stock: the warehouse they left from."""
    net: Money
    vat: Money
    gross: Money
    """Negative: the correction's values."""


class Return(Model):
    id: ErpId
    number: str
    kind: Literal["KFS"]
    issued: date
    corrects_id: ErpId
    corrects_number: str
    net: Money
    vat: Money
    gross: Money
    """Negative: what the correction takes off the corrected document."""
    receivable_reduced: Money
    """How much of the corrected document's open receivable the return cancelled."""
    refund_due: Money
    """What the customer had already paid for the returned goods and is owed back."""
    lines: list[ReturnLine]


class ComplaintLineIn(Model):
    sku: Sku
    quantity: Annotated[Quantity, Field(gt=0)]


class CreateComplaintArgs(Model):
    document: DocumentRef
    lines: Annotated[list[ComplaintLineIn], Field(min_length=1, max_length=MAX_LINES)]
    description: Annotated[str, Field(min_length=1, max_length=1000)]


class Complaint(Model):
    id: ErpId
    number: str
    issued: date
    document_id: ErpId
    document_number: str
    customer_id: ErpId | None
    status: Literal["open"]
    description: str
    lines: list[ComplaintLineIn]


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "orders.update_status",
        UpdateOrderStatusArgs,
        Order,
        True,
        "Set the shop-facing status of an order",
    ),
    Operation(
        "orders.cancel",
        CancelOrderArgs,
        Order,
        True,
        "Cancel an open order, releasing its stock reservations",
    ),
    Operation(
        "payments.register",
        RegisterPaymentArgs,
        Payment,
        True,
        "Register a payment against an order (prepayment) or an invoice/receipt",
    ),
    Operation(
        "orders.fulfil",
        FulfilOrderArgs,
        SalesDocument,
        True,
        "Issue the invoice (FS) or receipt (PA) for an order, taking its goods out of stock",
    ),
    Operation(
        "returns.create",
        CreateReturnArgs,
        Return,
        True,
        "Take goods back against an invoice or receipt (correction), restocking them",
    ),
    Operation(
        "complaints.create",
        CreateComplaintArgs,
        Complaint,
        True,
        "Register a complaint about goods from an invoice or receipt",
    ),
)
