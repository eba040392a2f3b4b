"""The catalogue of ERP operations: name, typed arguments, typed result, and whether it writes.

Both sides use it: the relay validates arguments before forwarding (a bad call never costs a
round trip to the office) and publishes the models in its OpenAPI document; the agent validates
again (it trusts no relay) and hands the connector typed arguments. Write operations are marked
so that later layers (idempotency, the journal, read-only sites) can treat them apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from protocol.operations import (
    customers,
    fulfilment,
    invoices,
    orders,
    products,
    system,
    trade,
    warehouse,
)
from protocol.operations.operation import Operation

__all__ = ["CATALOGUE", "WRITE_OPERATIONS", "Operation"]


_OPERATIONS = (
    Operation(
        "ping",
        system.PingArgs,
        system.PingResult,
        False,
        "Check that the agent and its ERP database answer",
    ),
    Operation(
        "operations.status",
        system.OperationStatusArgs,
        system.OperationStatus,
        False,
        "What became of a write, by its idempotency key",
    ),
    Operation(
        "customers.get",
        customers.CustomerRef,
        customers.Customer,
        False,
        "Get one customer by id, symbol or NIP",
    ),
    Operation(
        "customers.search",
        customers.CustomerSearchArgs,
        customers.CustomerPage,
        False,
        "Search customers by symbol, name, NIP or e-mail",
    ),
    Operation(
        "customers.balance",
        customers.CustomerRef,
        customers.CustomerBalance,
        False,
        "Receivables, overdue amount, credit limit and open documents of a customer",
    ),
    Operation(
        "customers.create", customers.NewCustomer, customers.Customer, True, "Create a customer"
    ),
    Operation(
        "products.get",
        products.ProductRef,
        products.Product,
        False,
        "Get one product by id, SKU or EAN",
    ),
    Operation(
        "products.search",
        products.ProductSearchArgs,
        products.ProductPage,
        False,
        "Search products by SKU, EAN or name",
    ),
    Operation(
        "products.stock",
        products.StockArgs,
        products.StockResult,
        False,
        "Stock per warehouse (quantity, reserved, available) for up to 500 SKUs",
    ),
    Operation(
        "products.prices",
        products.PricesArgs,
        products.PricesResult,
        False,
        "Price levels (net, gross) and VAT rate for up to 500 SKUs",
    ),
    Operation(
        "orders.create",
        orders.CreateOrderArgs,
        orders.Order,
        True,
        "Create a customer order (ZK) with stock reservation",
    ),
    Operation(
        "orders.get",
        orders.OrderRef,
        orders.Order,
        False,
        "Get an order by id, ERP number or the shop's external number",
    ),
    Operation(
        "invoices.list",
        invoices.InvoiceListArgs,
        invoices.InvoicePage,
        False,
        "Sales invoices of a customer in a date range, optionally unpaid only",
    ),
    *fulfilment.OPERATIONS,
    *warehouse.OPERATIONS,
    *trade.OPERATIONS,
)

CATALOGUE: Mapping[str, Operation] = MappingProxyType({op.name: op for op in _OPERATIONS})
"""Every v1 operation by name, in documentation order."""

WRITE_OPERATIONS: frozenset[str] = frozenset(op.name for op in _OPERATIONS if op.writes)
