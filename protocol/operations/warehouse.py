"""Warehouses: transfers (MM), pickup in store, availability with planned deliveries."""

from __future__ import annotations

from protocol.operations.operation import Operation

OPERATIONS: tuple[Operation, ...] = ()
