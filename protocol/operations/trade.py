"""B2B trade: quotes, a customer's commercial terms, sales reports."""

from __future__ import annotations

from protocol.operations.operation import Operation

OPERATIONS: tuple[Operation, ...] = ()
