"""Customer operations: look up, search, balance and create."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import EmailStr, Field

from protocol.operations.types import (
    Address,
    ErpId,
    Limit,
    Lookup,
    Model,
    Money,
    Name,
    Nip,
    Offset,
    Page,
    ShortText,
    Symbol,
)


class CustomerRef(Lookup):
    """Identifies a customer by the ERP id, the ERP symbol (short code) or the NIP."""

    id: ErpId | None = None
    symbol: Symbol | None = None
    nip: Nip | None = None


class Customer(Model):
    id: ErpId
    symbol: str
    name: str
    full_name: str = ""
    nip: str | None = None
    email: str | None = None
    phone: str | None = None
    address: Address = Address()
    kind: Literal["company", "person"] = "company"
    blocked: bool = False
    price_level: int | None = None
    credit_limit: Money | None = None


class CustomerSearchArgs(Model):
    query: Annotated[str, Field(max_length=100)] = ""
    """Matches the start of the symbol, name or NIP, or the whole e-mail; case-insensitive."""
    city: Annotated[str, Field(max_length=100)] | None = None
    limit: Limit = 20
    offset: Offset = 0


class CustomerPage(Page):
    items: list[Customer]


class OpenDocument(Model):
    id: ErpId
    number: str
    issued: date
    due: date | None
    amount: Money
    open: Money
    overdue_days: int = 0


class CustomerBalance(Model):
    customer_id: ErpId
    currency: str = "PLN"
    receivables: Money
    overdue: Money
    credit_limit: Money | None = None
    credit_available: Money | None = None
    open_documents: list[OpenDocument]


class NewCustomer(Model):
    symbol: Symbol | None = None
    """Left empty, the ERP assigns one."""
    name: Name
    full_name: ShortText = ""
    nip: Nip | None = None
    email: EmailStr | None = None
    phone: Annotated[str, Field(max_length=40)] | None = None
    address: Address = Address()
    kind: Literal["company", "person"] = "company"


CreateCustomerArgs = NewCustomer
