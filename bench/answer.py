"""The one customers.balance answer every scenario returns, so responses are identical."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import orjson

from protocol.operations.customers import CustomerBalance, OpenDocument

CUSTOMER_ID = "1042"
REQUEST_BODY = orjson.dumps({"id": CUSTOMER_ID})

BALANCE = CustomerBalance(
    customer_id=CUSTOMER_ID,
    currency="PLN",
    receivables=Decimal("18250.40"),
    overdue=Decimal("3120.00"),
    credit_limit=Decimal("50000.00"),
    credit_available=Decimal("31749.60"),
    open_documents=[
        OpenDocument(
            id="FS-7781",
            number="FS 7781/2024",
            issued=date(2024, 10, 2),
            due=date(2024, 11, 1),
            amount=Decimal("3120.00"),
            open=Decimal("3120.00"),
            overdue_days=34,
        ),
        OpenDocument(
            id="FS-7925",
            number="FS 7925/2024",
            issued=date(2024, 11, 14),
            due=date(2024, 12, 14),
            amount=Decimal("9630.40"),
            open=Decimal("9630.40"),
        ),
        OpenDocument(
            id="FS-8012",
            number="FS 8012/2024",
            issued=date(2024, 12, 3),
            due=date(2025, 1, 2),
            amount=Decimal("5500.00"),
            open=Decimal("5500.00"),
        ),
    ],
)

ANSWER_JSON: bytes = BALANCE.__pydantic_serializer__.to_json(BALANCE)
"""What the relay returns for the in-memory connector (the agent serialises the model)."""

ANSWER_OBJ: dict[str, Any] = orjson.loads(ANSWER_JSON)
"""The same answer as plain JSON values, for the direct app to serialise per request."""
