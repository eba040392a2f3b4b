"""Every operation end to end: CRM → relay → agent → demo ERP (Subiekt GT schema), via sockets.

Reads are checked against what the ERP tables say; writes are checked in the tables themselves
(documents, lines, reservations), not only in the API answers.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from agent.connectors.demo import DemoConnector
from protocol.operations import CATALOGUE
from tests.e2e.conftest import Credentials
from tests.support.servers import RelayHandle, run_agent

ZK = 16
Call = Callable[[str, dict[str, object]], Awaitable[httpx.Response]]


@pytest.fixture
async def call(
    relay: RelayHandle, creds: Credentials, client: httpx.AsyncClient, erp_path: Path
) -> AsyncIterator[Call]:
    connector = DemoConnector(str(erp_path), seed=False)

    async def invoke(operation: str, args: dict[str, object]) -> httpx.Response:
        # every write gets its own key: these tests are about the ERP, not about replays
        headers = {"Idempotency-Key": uuid.uuid4().hex} if CATALOGUE[operation].writes else {}
        return await client.post(f"/v1/agents/acme/calls/{operation}", json=args, headers=headers)

    async with run_agent(relay.ws_url, creds.agent_token, connector, max_concurrency=4):
        yield invoke


def money(value: str) -> Decimal:
    return Decimal(value)


async def test_ping_reaches_the_database(call: Call) -> None:
    response = await call("ping", {})
    assert response.status_code == 200
    assert response.json()["connector"] == "demo"
    assert response.json()["database_time"]


async def test_customer_by_id_symbol_and_nip(call: Call, erp: sqlite3.Connection) -> None:
    kh_id, symbol, nip = erp.execute(
        "SELECT kh_Id, kh_Symbol, adr_NIP FROM kh__Kontrahent JOIN adr__Ewid "
        "ON adr_IdObiektu = kh_Id AND adr_TypAdresu = 1 WHERE adr_NIP != '' LIMIT 1"
    ).fetchone()
    by_id = (await call("customers.get", {"id": str(kh_id)})).json()
    by_symbol = (await call("customers.get", {"symbol": symbol})).json()
    by_nip = (await call("customers.get", {"nip": f"PL{nip}"})).json()
    assert by_id == by_symbol == by_nip
    assert by_id["nip"] == nip
    missing = await call("customers.get", {"id": "999999"})
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"


async def test_customer_search_pages(call: Call) -> None:
    first = (await call("customers.search", {"limit": 5})).json()
    second = (await call("customers.search", {"limit": 5, "offset": first["next_offset"]})).json()
    assert len(first["items"]) == 5
    assert not {c["id"] for c in first["items"]} & {c["id"] for c in second["items"]}


async def test_customer_balance_matches_receivables(call: Call, erp: sqlite3.Connection) -> None:
    kh_id, open_total = erp.execute(
        "SELECT nzf_IdObiektu, SUM(nzf_Wartosc) FROM nz__Finanse WHERE nzf_Typ = 39 "
        "AND nzf_TypObiektu = 1 AND nzf_Wartosc > 0 GROUP BY 1 ORDER BY 2 DESC LIMIT 1"
    ).fetchone()
    balance = (await call("customers.balance", {"id": str(kh_id)})).json()
    # money columns hold 1/10 000ths on SQLite, as SQL Server's money does
    assert money(balance["receivables"]) == Decimal(open_total) / 10_000
    assert money(balance["overdue"]) <= money(balance["receivables"])
    assert balance["open_documents"]
    assert sum(money(d["open"]) for d in balance["open_documents"]) == money(balance["receivables"])


async def test_customer_create_writes_both_tables(call: Call, erp: sqlite3.Connection) -> None:
    response = await call(
        "customers.create",
        {
            "name": "Zażółć Gęślą Sp. z o.o.",
            "nip": "526-000-12-46",
            "email": "biuro@example.pl",
            "address": {
                "street": "Długa",
                "building": "5",
                "postal_code": "00-950",
                "city": "Łódź",
            },
        },
    )
    assert response.status_code == 200, response.text
    created = response.json()
    row = erp.execute(
        "SELECT adr_Nazwa, adr_NIP, adr_Miejscowosc FROM adr__Ewid "
        "WHERE adr_IdObiektu = ? AND adr_TypAdresu = 1",
        (int(created["id"]),),
    ).fetchone()
    assert row == ("Zażółć Gęślą Sp. z o.o.", "5260001246", "Łódź")
    again = await call("customers.create", {"name": "Duplikat", "nip": "5260001246"})
    assert again.status_code == 409
    assert again.json()["code"] == "conflict"


async def test_product_lookups(call: Call, erp: sqlite3.Connection) -> None:
    tw_id, sku, ean = erp.execute(
        "SELECT tw_Id, tw_Symbol, tw_PodstKodKresk FROM tw__Towar LIMIT 1"
    ).fetchone()
    by_sku = (await call("products.get", {"sku": sku})).json()
    by_ean = (await call("products.get", {"ean": ean})).json()
    assert by_sku == by_ean
    assert by_sku["id"] == str(tw_id)
    found = (await call("products.search", {"query": sku})).json()
    assert sku in {p["sku"] for p in found["items"]}


async def test_stock_batch_per_warehouse(call: Call, erp: sqlite3.Connection) -> None:
    skus = [row[0] for row in erp.execute("SELECT tw_Symbol FROM tw__Towar LIMIT 499")]
    response = await call("products.stock", {"skus": [*skus, "NO-SUCH-SKU"]})
    assert response.status_code == 200
    result = response.json()
    assert result["unknown_skus"] == ["NO-SUCH-SKU"]
    assert len(result["items"]) == 499
    item = result["items"][0]
    assert {w["warehouse"] for w in item["warehouses"]} <= {"MAG", "SKL", "WEB"}
    for w in item["warehouses"]:
        assert money(w["available"]) == money(w["quantity"]) - money(w["reserved"])
    too_many = await call("products.stock", {"skus": ["X"] * 501})
    assert too_many.status_code == 422


async def test_prices_have_levels(call: Call, erp: sqlite3.Connection) -> None:
    sku = erp.execute("SELECT tw_Symbol FROM tw__Towar LIMIT 1").fetchone()[0]
    result = (await call("products.prices", {"skus": [sku]})).json()
    levels = result["items"][0]["levels"]
    assert len(levels) >= 3
    assert all(money(level["gross"]) >= money(level["net"]) for level in levels)


def _stock_row(erp: sqlite3.Connection, sku: str) -> tuple[int, int, int]:
    row: tuple[int, int, int] = erp.execute(
        "SELECT tw_Id, st_Stan, st_StanRez FROM tw__Towar JOIN tw_Stan ON st_TowId = tw_Id "
        "JOIN sl_Magazyn ON mag_Id = st_MagId WHERE tw_Symbol = ? AND mag_Symbol = 'MAG'",
        (sku,),
    ).fetchone()
    return row


async def test_order_create_writes_zk_and_reserves_stock(
    call: Call, erp: sqlite3.Connection
) -> None:
    sku = erp.execute(
        "SELECT tw_Symbol FROM tw__Towar JOIN tw_Stan ON st_TowId = tw_Id WHERE st_MagId = 1 "
        "AND st_Stan - st_StanRez >= 30000 AND tw_Zablokowany = 0 LIMIT 1"
    ).fetchone()[0]
    _, _, reserved_before = _stock_row(erp, sku)
    response = await call(
        "orders.create",
        {
            "external_number": "SHOP-1001",
            "customer": {"id": "1"},
            "warehouse": "MAG",
            "lines": [{"sku": sku, "quantity": "2"}],
            "notes": "Dostawa do 12:00",
        },
    )
    assert response.status_code == 200, response.text
    order = response.json()
    assert order["number"].startswith("ZK ")
    header = erp.execute(
        "SELECT dok_Typ, dok_NrPelny, dok_NrPelnyOryg FROM dok__Dokument WHERE dok_Id = ?",
        (int(order["id"]),),
    ).fetchone()
    assert header == (ZK, order["number"], "SHOP-1001")
    lines = erp.execute(
        "SELECT COUNT(*) FROM dok_Pozycja WHERE ob_DokHanId = ?", (int(order["id"]),)
    ).fetchone()[0]
    assert lines == 1
    assert _stock_row(erp, sku)[2] == reserved_before + 2 * 10_000
    fetched = (await call("orders.get", {"external_number": "SHOP-1001"})).json()
    assert fetched == order
    twice = await call(
        "orders.create",
        {
            "external_number": "SHOP-1001",
            "customer": {"id": "1"},
            "lines": [{"sku": sku, "quantity": "1"}],
        },
    )
    assert twice.status_code == 409


async def test_order_beyond_stock_is_refused_and_writes_nothing(
    call: Call, erp: sqlite3.Connection
) -> None:
    sku = erp.execute(
        "SELECT tw_Symbol FROM tw__Towar WHERE tw_Zablokowany = 0 LIMIT 1"
    ).fetchone()[0]
    documents = erp.execute("SELECT COUNT(*) FROM dok__Dokument").fetchone()[0]
    reserved = _stock_row(erp, sku)[2]
    response = await call(
        "orders.create",
        {
            "external_number": "SHOP-1002",
            "customer": {"id": "1"},
            "warehouse": "MAG",
            "lines": [{"sku": sku, "quantity": "99999999"}],
        },
    )
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "insufficient_stock"
    assert body["details"]["lines"][0]["sku"] == sku
    assert erp.execute("SELECT COUNT(*) FROM dok__Dokument").fetchone()[0] == documents
    assert _stock_row(erp, sku)[2] == reserved


async def test_invoices_unpaid_only(call: Call, erp: sqlite3.Connection) -> None:
    kh_id = erp.execute(
        "SELECT nzf_IdObiektu FROM nz__Finanse WHERE nzf_Wartosc > 0 LIMIT 1"
    ).fetchone()[0]
    every = (await call("invoices.list", {"customer": {"id": str(kh_id)}, "limit": 200})).json()
    unpaid = (
        await call("invoices.list", {"customer": {"id": str(kh_id)}, "unpaid_only": True})
    ).json()
    assert unpaid["items"]
    assert all(not invoice["paid"] for invoice in unpaid["items"])
    assert len(every["items"]) >= len(unpaid["items"])
    assert {i["kind"] for i in every["items"]} <= {"FS", "PA"}
