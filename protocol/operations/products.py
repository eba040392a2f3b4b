"""Product operations: look up, search, stock per warehouse and price levels."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from protocol.operations.types import (
    Ean13,
    ErpId,
    Limit,
    Lookup,
    Model,
    Offset,
    Page,
    Price,
    Quantity,
    Rate,
    Sku,
    Symbol,
)

MAX_BATCH = 500


class ProductRef(Lookup):
    """Identifies a product by the ERP id, the SKU (ERP symbol) or the EAN-13 barcode."""

    id: ErpId | None = None
    sku: Sku | None = None
    ean: Ean13 | None = None


class Product(Model):
    id: ErpId
    sku: str
    name: str
    ean: str | None = None
    unit: str
    vat_rate: Rate
    blocked: bool = False


class ProductSearchArgs(Model):
    query: Annotated[str, Field(max_length=100)] = ""
    """Matches the start of the SKU or EAN, or any part of the name; case-insensitive."""
    limit: Limit = 20
    offset: Offset = 0


class ProductPage(Page):
    items: list[Product]


class StockArgs(Model):
    skus: Annotated[list[Sku], Field(min_length=1, max_length=MAX_BATCH)]
    warehouses: Annotated[list[Symbol], Field(max_length=50)] | None = None
    """Only these warehouse symbols; all active warehouses when omitted."""


class WarehouseStock(Model):
    warehouse: str
    quantity: Quantity
    reserved: Quantity
    available: Quantity


class ProductStock(Model):
    sku: str
    product_id: ErpId
    warehouses: list[WarehouseStock]
    quantity: Quantity
    reserved: Quantity
    available: Quantity


class StockResult(Model):
    items: list[ProductStock]
    unknown_skus: list[str]


class PricesArgs(Model):
    skus: Annotated[list[Sku], Field(min_length=1, max_length=MAX_BATCH)]


class PriceLevel(Model):
    level: int
    name: str
    net: Price
    gross: Price
    currency: str = "PLN"


class ProductPrices(Model):
    sku: str
    product_id: ErpId
    vat_rate: Rate
    levels: list[PriceLevel]


class PricesResult(Model):
    items: list[ProductPrices]
    unknown_skus: list[str]
