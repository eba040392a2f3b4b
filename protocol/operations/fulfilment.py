"""After the order: status, cancellation, payments, the sales document, returns and complaints."""

from __future__ import annotations

from protocol.operations.operation import Operation

OPERATIONS: tuple[Operation, ...] = ()
