"""The detector's SQL compiles for SQL Server (a real Subiekt GT), every value bound."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import ClauseElement
from sqlalchemy.dialects import mssql

from agent.connectors.demo import queries_changes as qc

CASES: dict[str, tuple[ClauseElement, list[Any]]] = {
    "stock_snapshot": (qc.stock_snapshot(), []),
    "price_snapshot": (qc.price_snapshot(), []),
    "document_ids_above": (qc.document_ids_above(4242, [2, 16]), [4242, [2, 16]]),
    "payment_ids_above": (qc.payment_ids_above(4242), [4242]),
    "highest_document_id": (qc.highest_document_id(), []),
    "highest_payment_id": (qc.highest_payment_id(), []),
    "orders_in_states": (qc.orders_in_states([6, 7]), [[6, 7]]),
    "product_skus": (qc.product_skus([4242]), [[4242]]),
    "all_warehouses": (qc.all_warehouses(), []),
    "stock_rows": (qc.stock_rows([4242]), [[4242]]),
    "orders": (qc.orders([4242]), [[4242]]),
    "sales_documents": (qc.sales_documents([4242]), [[4242]]),
    "payments": (qc.payments([4242]), [[4242]]),
}


def test_every_query_function_is_covered() -> None:
    builders = {
        name
        for name, value in vars(qc).items()
        if callable(value)
        and getattr(value, "__module__", None) == qc.__name__
        and not name.startswith("_")
        and name != "raw"
    }
    assert builders == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_compiles_for_sql_server_with_bound_values(name: str) -> None:
    stmt, values = CASES[name]
    compiled = stmt.compile(dialect=mssql.dialect())
    text = str(compiled)
    assert text.lstrip().upper().startswith("SELECT")
    for value in values:
        assert value in compiled.params.values()
        if not isinstance(value, list):
            assert str(value) not in text
