"""B2B trade end to end: CRM → relay → agent → demo ERP, through real sockets.

A quote is written as an offer (ZK, status 6) that reserves nothing, and a retry with the same
Idempotency-Key answers the same quote without a second document; the customer's terms and the
sales report agree with the ERP tables.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal

import httpx
import pytest

from agent.connectors.demo import DemoConnector
from tests.e2e.conftest import Credentials
from tests.support.servers import RelayHandle, run_agent

Call = Callable[..., Awaitable[httpx.Response]]
SCALE = Decimal(10_000)
"""Money columns hold 1/10,000ths on SQLite, as SQL Server's money does."""


@pytest.fixture
async def call(
    relay: RelayHandle, creds: Credentials, client: httpx.AsyncClient, erp_path: str
) -> AsyncIterator[Call]:
    connector = DemoConnector(str(erp_path), seed=False)

    async def invoke(
        operation: str, args: dict[str, object], key: str | None = None
    ) -> httpx.Response:
        headers = {"Idempotency-Key": key} if key else {}
        return await client.post(f"/v1/agents/acme/calls/{operation}", json=args, headers=headers)

    async with run_agent(relay.ws_url, creds.agent_token, connector, max_concurrency=4):
        yield invoke


async def test_quote_is_an_offer_that_reserves_nothing_and_replays(
    call: Call, erp: sqlite3.Connection
) -> None:
    sku = erp.execute(
        "SELECT tw_Symbol FROM tw__Towar JOIN tw_Stan ON st_TowId = tw_Id WHERE st_MagId = 1 "
        "AND st_Stan - st_StanRez >= 100000 AND tw_Zablokowany = 0 LIMIT 1"
    ).fetchone()[0]
    kh_id = erp.execute(
        "SELECT kh_Id FROM kh__Kontrahent WHERE kh_IdRabat IS NOT NULL AND kh_Zablokowany = 0 "
        "ORDER BY kh_Id LIMIT 1"
    ).fetchone()[0]
    reserved = erp.execute("SELECT SUM(st_StanRez) FROM tw_Stan").fetchone()[0]
    args = {"customer": {"id": str(kh_id)}, "lines": [{"sku": sku, "quantity": "5"}]}
    missing_key = await call("quotes.create", args)
    assert missing_key.json()["code"] == "idempotency_key_required"
    first = await call("quotes.create", args, "quote-e2e-1")
    assert first.status_code == 200, first.text
    created = first.json()
    assert created["status"] == "offer"
    assert Decimal(created["discount"]) > 0
    again = await call("quotes.create", args, "quote-e2e-1")
    assert again.status_code == 200
    assert again.json() == created
    header = erp.execute(
        "SELECT dok_Typ, dok_Status, dok_PlatnikId, dok_WartBrutto FROM dok__Dokument "
        "WHERE dok_Id = ?",
        (int(created["id"]),),
    ).fetchone()
    assert header == (16, 6, kh_id, int(Decimal(created["gross"]) * SCALE))
    assert erp.execute(
        "SELECT COUNT(*), MAX(ob_MagId) FROM dok_Pozycja WHERE ob_DokHanId = ?",
        (int(created["id"]),),
    ).fetchone() == (1, None)
    assert erp.execute("SELECT COUNT(*) FROM dok__Dokument WHERE dok_Status = 6").fetchone()[0] == 1
    assert erp.execute("SELECT SUM(st_StanRez) FROM tw_Stan").fetchone()[0] == reserved
    blocked = erp.execute(
        "SELECT kh_Id FROM kh__Kontrahent WHERE kh_Zablokowany = 1 LIMIT 1"
    ).fetchone()[0]
    refused = await call("quotes.create", {**args, "customer": {"id": str(blocked)}}, "q-2")
    assert refused.status_code == 409
    assert refused.json()["code"] == "customer_blocked"


async def test_customer_terms(call: Call, erp: sqlite3.Connection) -> None:
    kh_id, limit, days = erp.execute(
        "SELECT kh_Id, kh_MaxWartKred, kh_MaxDniSp FROM kh__Kontrahent "
        "WHERE kh_PlatOdroczone = 1 ORDER BY kh_Id LIMIT 1"
    ).fetchone()
    open_total = erp.execute(
        "SELECT COALESCE(SUM(nzf_Wartosc), 0) FROM nz__Finanse WHERE nzf_IdObiektu = ? "
        "AND nzf_Typ = 39 AND nzf_Wartosc > 0",
        (kh_id,),
    ).fetchone()[0]
    response = await call("customers.terms", {"id": str(kh_id)})
    assert response.status_code == 200, response.text
    terms = response.json()
    assert Decimal(terms["credit_limit"]) == Decimal(limit) / SCALE
    assert Decimal(terms["receivables"]) == Decimal(open_total) / SCALE
    assert terms["payment"] == {"deferred": True, "days": days, "method": "Przelew"}


async def test_sales_report_by_product_matches_the_lines(
    call: Call, erp: sqlite3.Connection
) -> None:
    day = erp.execute(
        "SELECT substr(dok_DataWyst, 1, 10) FROM dok__Dokument WHERE dok_Typ = 2 "
        "ORDER BY dok_Id DESC LIMIT 1"
    ).fetchone()[0]
    wanted = {
        sku: (Decimal(net) / SCALE, Decimal(cost) / SCALE)
        for sku, net, cost in erp.execute(
            "SELECT tw_Symbol, SUM(ob_WartNetto), SUM(ob_WartNabycia) FROM dok_Pozycja "
            "JOIN dok__Dokument ON dok_Id = ob_DokHanId JOIN tw__Towar ON tw_Id = ob_TowId "
            "WHERE dok_Typ IN (2, 21) AND substr(dok_DataWyst, 1, 10) = ? GROUP BY tw_Symbol",
            (day,),
        )
    }
    response = await call(
        "reports.sales", {"date_from": day, "date_to": day, "group_by": "product", "limit": 1000}
    )
    assert response.status_code == 200, response.text
    report = response.json()
    found = {row["key"]: (Decimal(row["net"]), Decimal(row["cost"])) for row in report["items"]}
    assert found == wanted
    assert Decimal(report["totals"]["margin"]) == sum(n - c for n, c in wanted.values())
    too_long = await call("reports.sales", {"date_from": "2025-01-01", "date_to": "2026-06-01"})
    assert too_long.status_code == 422
