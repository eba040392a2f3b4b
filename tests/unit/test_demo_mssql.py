"""The demo connector's SQL compiles for SQL Server, against Subiekt GT's real table names, with
every value bound as a parameter.

No server is needed: `str(stmt.compile(dialect=mssql.dialect()))` is what pyodbc would receive.
A sentinel value in each query's arguments must reach ``compiled.params`` and never the text.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import ClauseElement
from sqlalchemy.dialects import mssql, sqlite
from sqlalchemy.schema import CreateTable

from agent.connectors.demo import queries as q
from agent.connectors.demo.schema import metadata

SENTINEL = "Zażółć'--"
NIP = "5260001246"

CASES: dict[str, tuple[ClauseElement, set[str], list[Any]]] = {
    # name: (statement, tables it must name, values that must be bound, never inlined)
    "bump_ident": (q.bump_ident(SENTINEL, 7), {"ins_ident"}, [SENTINEL, 7]),
    "read_ident": (q.read_ident(SENTINEL), {"ins_ident"}, [SENTINEL]),
    "customer_by_id": (q.customer_by_id(4242), {"kh__Kontrahent", "adr__Ewid"}, [4242]),
    "customer_by_symbol": (q.customer_by_symbol(SENTINEL), {"kh__Kontrahent"}, [SENTINEL]),
    "customer_by_nip": (q.customer_by_nip(NIP), {"adr__Ewid"}, [NIP, "526-000-12-46"]),
    "customer_search": (
        q.customer_search(SENTINEL, "Łódź", 21, 40),
        {"kh__Kontrahent", "adr__Ewid"},
        ["zażółć'--%", "łódź", 21, 40],
    ),
    "symbol_taken": (q.symbol_taken(SENTINEL), {"kh__Kontrahent"}, [SENTINEL]),
    "nip_taken": (q.nip_taken(NIP), {"adr__Ewid"}, [NIP]),
    "insert_customer": (
        q.insert_customer({"kh_Id": 4242, "kh_Symbol": SENTINEL}),
        {"kh__Kontrahent"},
        [4242, SENTINEL],
    ),
    "insert_address": (
        q.insert_address(
            {"adr_Id": 4242, "adr_IdObiektu": 4243, "adr_TypAdresu": 1, "adr_Nazwa": SENTINEL}
        ),
        {"adr__Ewid"},
        [4242, 4243, SENTINEL],
    ),
    "open_receivables": (
        q.open_receivables(4242),
        {"nz__Finanse", "dok__Dokument"},
        [4242, 39],
    ),
    "product_by_id": (q.product_by_id(4242), {"tw__Towar", "sl_StawkaVAT"}, [4242]),
    "product_by_sku": (q.product_by_sku(SENTINEL), {"tw__Towar"}, [SENTINEL]),
    "product_by_ean": (q.product_by_ean("5901234000017"), {"tw__Towar"}, ["5901234000017"]),
    "product_search": (q.product_search(SENTINEL, 21, 40), {"tw__Towar"}, ["%zażółć'--%", 21, 40]),
    "products_by_skus": (q.products_by_skus([SENTINEL, "B"]), {"tw__Towar"}, [[SENTINEL, "B"]]),
    "product_prices": (
        q.product_prices([SENTINEL]),
        {"tw__Towar", "tw_Cena", "sl_StawkaVAT"},
        [[SENTINEL]],
    ),
    "price_level_names": (q.price_level_names(), {"tw_Parametr"}, [1]),
    "warehouses": (q.warehouses([SENTINEL]), {"sl_Magazyn"}, [[SENTINEL]]),
    "warehouse_by_symbol": (q.warehouse_by_symbol(SENTINEL), {"sl_Magazyn"}, [SENTINEL]),
    "main_warehouse": (q.main_warehouse(), {"sl_Magazyn"}, [True]),
    "stock_levels": (q.stock_levels([4242], [4243]), {"tw_Stan"}, [[4242], [4243]]),
    "reserve_stock": (
        q.reserve_stock(4242, 4243, Decimal("2.5")),
        {"tw_Stan"},
        [4242, 4243, Decimal("2.5")],
    ),
    "order_for_sale": (
        q.order_for_sale([SENTINEL], 3),
        {"tw__Towar", "tw_Cena", "sl_StawkaVAT"},
        [[SENTINEL]],
    ),
    "last_number": (
        q.last_number(16, datetime(2026, 11, 1), datetime(2026, 12, 1)),
        {"dok__Dokument"},
        [16, datetime(2026, 11, 1)],
    ),
    "insert_document": (
        q.insert_document({"dok_Id": 4242, "dok_NrPelnyOryg": SENTINEL, "dok_Uwagi": "Uwagi"}),
        {"dok__Dokument"},
        [4242, SENTINEL, "Uwagi"],
    ),
    "insert_line": (q.insert_line(), {"dok_Pozycja"}, []),
    "category_by_name": (q.category_by_name(SENTINEL), {"sl_Kategoria"}, ["zażółć'--"]),
    "insert_category": (q.insert_category(4242, SENTINEL), {"sl_Kategoria"}, [4242, SENTINEL]),
    "order_by_id": (q.order_by_id(4242), {"dok__Dokument", "sl_Magazyn"}, [4242, 16]),
    "order_by_number": (q.order_by_number(SENTINEL), {"dok__Dokument"}, [SENTINEL]),
    "order_by_external_number": (
        q.order_by_external_number(SENTINEL),
        {"dok__Dokument"},
        [SENTINEL],
    ),
    "document_lines": (q.document_lines(4242), {"dok_Pozycja", "tw__Towar"}, [4242]),
    "invoices": (
        q.invoices(
            4242,
            date_from=date(2026, 1, 1),
            date_to=date(2026, 3, 31),
            unpaid_only=True,
            limit=51,
            offset=50,
        ),
        {"dok__Dokument", "nz__Finanse"},
        [4242, [2, 21], datetime(2026, 1, 1), datetime(2026, 4, 1), 51, 50],
    ),
    "database_time": (q.database_time(), set(), []),
    "link_document": (q.link_document(4242, 4343), {"dok__Dokument"}, [4242, 4343]),
    "linked_documents": (q.linked_documents(4242), {"dok__Dokument"}, [4242]),
    "receivables_total": (q.receivables_total(4242), {"nz__Finanse"}, [4242]),
}


def test_every_query_function_is_covered() -> None:
    builders = {
        name
        for name, value in vars(q).items()
        if callable(value)
        and getattr(value, "__module__", None) == q.__name__
        and not name.startswith("_")
        and name not in {"casefold", "like_prefix", "like_contains", "flag", "nip_spellings"}
    }
    assert builders == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_compiles_for_sql_server_with_bound_parameters(name: str) -> None:
    stmt, tables, values = CASES[name]
    compiled = stmt.compile(dialect=mssql.dialect())
    sql = str(compiled)
    for table in tables:
        assert f"[{table}]" in sql or f" {table}" in sql, f"{table} missing from {sql}"
    without_escape = sql.replace("ESCAPE '\\'", "ESCAPE")  # the LIKE escape character is grammar
    assert "'" not in without_escape, f"a quoted literal was inlined: {sql}"
    assert "Zażółć" not in sql
    params = list(compiled.params.values())
    params += [item for value in params if isinstance(value, list) for item in value]
    for value in values:
        assert value in params, f"{value!r} is not a bound parameter of {name}: {compiled.params}"
    for number in (v for v in values if isinstance(v, int) and v > 100):
        assert not re.search(rf"\b{number}\b", sql), f"{number} inlined in {sql}"


def test_case_insensitive_search_keeps_sql_server_columns_bare() -> None:
    stmt = q.customer_search("nowak", None, 21, 0)
    on_mssql = str(stmt.compile(dialect=mssql.dialect()))
    on_sqlite = str(stmt.compile(dialect=sqlite.dialect()))
    assert "lower(" not in on_mssql, "Polish_CI_AS already ignores case; keep indexes usable"
    assert "[kh__Kontrahent].[kh_Symbol] LIKE" in on_mssql
    assert 'lower("kh__Kontrahent"."kh_Symbol") LIKE' in on_sqlite
    assert "ESCAPE" in on_mssql


def test_like_patterns_escape_wildcards() -> None:
    compiled = q.product_search("50%_[a]", 21, 0).compile(dialect=mssql.dialect())
    assert "50\\%\\_\\[a]%" in compiled.params.values()


def test_ddl_uses_money_and_nvarchar_on_sql_server() -> None:
    ddl = {
        name: str(CreateTable(table).compile(dialect=mssql.dialect()))
        for name, table in metadata.tables.items()
    }
    assert "[st_StanRez] MONEY NOT NULL" in ddl["tw_Stan"]
    assert "[dok_WartBrutto] MONEY NOT NULL" in ddl["dok__Dokument"]
    assert "[dok_NrPelnyOryg] NVARCHAR(30) NOT NULL" in ddl["dok__Dokument"]
    assert "[adr_Nazwa] NVARCHAR(53) NOT NULL" in ddl["adr__Ewid"]
    assert "IDENTITY" not in "".join(ddl.values()), "Subiekt GT keys come from ins_ident"
    sqlite_ddl = str(CreateTable(metadata.tables["tw_Stan"]).compile(dialect=sqlite.dialect()))
    assert "st_StanRez BIGINT NOT NULL" in sqlite_ddl.replace('"', "")
