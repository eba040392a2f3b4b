"""Pickup in store end to end: CRM → relay → agent → demo ERP (Subiekt GT schema), via sockets.

An order reserved in the web shop's warehouse (WEB) is shipped to the store (SKL) with an MM,
which moves its stock and its reservation, then collected; a split order and the planned
deliveries of ``products.availability`` go the same way. After each step the ERP tables are
read directly.
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

MAG, SKL, WEB = 1, 2, 3
Call = Callable[[str, dict[str, object]], Awaitable[httpx.Response]]


@pytest.fixture
async def call(
    relay: RelayHandle, creds: Credentials, client: httpx.AsyncClient, erp_path: Path
) -> AsyncIterator[Call]:
    connector = DemoConnector(str(erp_path), seed=False)

    async def invoke(operation: str, args: dict[str, object]) -> httpx.Response:
        headers = {"Idempotency-Key": uuid.uuid4().hex} if CATALOGUE[operation].writes else {}
        return await client.post(f"/v1/agents/acme/calls/{operation}", json=args, headers=headers)

    async with run_agent(relay.ws_url, creds.agent_token, connector, max_concurrency=2):
        yield invoke


def stock(erp: sqlite3.Connection, sku: str, mag_id: int) -> tuple[Decimal, Decimal]:
    quantity, reserved = erp.execute(
        "SELECT st_Stan, st_StanRez FROM tw_Stan JOIN tw__Towar ON tw_Id = st_TowId"
        " WHERE tw_Symbol = ? AND st_MagId = ?",
        (sku, mag_id),
    ).fetchone()
    return Decimal(quantity) / 10_000, Decimal(reserved) / 10_000


def piece_sku(erp: sqlite3.Connection, where: str) -> str:
    """A piece product, not blocked, whose free stock per warehouse matches ``where``."""
    row = erp.execute(
        "SELECT tw_Symbol FROM tw__Towar t WHERE tw_Zablokowany = 0 AND tw_JednMiary = 'szt.'"
        f" AND {where} ORDER BY tw_Id LIMIT 1"
    ).fetchone()
    assert row is not None
    return str(row[0])


def free_in(mag_id: int) -> str:
    return (
        "(SELECT (st_Stan - st_StanRez) / 10000 FROM tw_Stan"
        f" WHERE st_TowId = t.tw_Id AND st_MagId = {mag_id})"
    )


def customer(erp: sqlite3.Connection) -> str:
    row = erp.execute(
        "SELECT kh_Id FROM kh__Kontrahent WHERE kh_Zablokowany = 0 AND kh_Osoba = 1 LIMIT 1"
    ).fetchone()
    return str(row[0])


async def test_pickup_in_store(call: Call, erp: sqlite3.Connection) -> None:
    sku = piece_sku(erp, f"{free_in(WEB)} >= 3")
    web, skl = stock(erp, sku, WEB), stock(erp, sku, SKL)
    created = await call(
        "orders.create",
        {
            "external_number": "WEB-PICKUP-1",
            "customer": {"id": customer(erp)},
            "lines": [{"sku": sku, "quantity": "3"}],
            "warehouse": "WEB",
            "delivery_method": "Odbiór w sklepie",
            "channel": "web",
        },
    )
    assert created.status_code == 200, created.text
    order = created.json()
    assert [line["warehouse"] for line in order["lines"]] == ["WEB"]
    assert stock(erp, sku, WEB) == (web[0], web[1] + 3)

    shipped = await call("orders.ship_to_store", {"order": {"id": order["id"]}, "store": "SKL"})
    assert shipped.status_code == 200, shipped.text
    [transfer] = shipped.json()["transfers"]
    assert (transfer["from_warehouse"], transfer["to_warehouse"]) == ("WEB", "SKL")
    mm = erp.execute(
        "SELECT dok_Typ, dok_MagId, dok_OdbiorcaId, dok_DoDokId FROM dok__Dokument"
        " WHERE dok_Id = ?",
        (int(transfer["id"]),),
    ).fetchone()
    assert mm == (9, WEB, SKL, int(order["id"]))
    mm_lines = erp.execute(
        "SELECT ob_DokHanId, ob_Ilosc FROM dok_Pozycja WHERE ob_DokMagId = ?",
        (int(transfer["id"]),),
    ).fetchall()
    assert mm_lines == [(None, 3 * 10_000)]
    assert stock(erp, sku, WEB) == (web[0] - 3, web[1]), "stock and reservation left WEB"
    assert stock(erp, sku, SKL) == (skl[0] + 3, skl[1] + 3), "and are reserved in the store"
    zk_lines = erp.execute(
        "SELECT ob_MagId FROM dok_Pozycja WHERE ob_DokHanId = ?", (int(order["id"]),)
    ).fetchall()
    assert zk_lines == [(SKL,)]

    for _ in range(2):  # the second time answers the same: collected once
        picked = await call("orders.picked_up", {"order": {"external_number": "WEB-PICKUP-1"}})
        assert picked.status_code == 200, picked.text
        assert picked.json()["store"] == "SKL"
    rows = erp.execute(
        "SELECT odb_MagId FROM dok_Odbior WHERE odb_DokId = ?", (int(order["id"]),)
    ).fetchall()
    assert rows == [(SKL,)]


async def test_pickup_needs_a_shipped_order(call: Call, erp: sqlite3.Connection) -> None:
    sku = piece_sku(erp, f"{free_in(WEB)} >= 1")
    created = await call(
        "orders.create",
        {
            "external_number": "WEB-PICKUP-2",
            "customer": {"id": customer(erp)},
            "lines": [{"sku": sku, "quantity": "1"}],
            "warehouse": "WEB",
        },
    )
    assert created.status_code == 200, created.text
    early = await call("orders.picked_up", {"order": {"id": created.json()["id"]}})
    assert early.status_code == 409
    assert early.json()["code"] == "invalid_state"


async def test_split_order_and_availability(call: Call, erp: sqlite3.Connection) -> None:
    sku = piece_sku(erp, f"{free_in(WEB)} = 2 AND {free_in(MAG)} >= 10")
    web, mag = stock(erp, sku, WEB), stock(erp, sku, MAG)
    created = await call(
        "orders.create",
        {
            "external_number": "WEB-SPLIT-1",
            "customer": {"id": customer(erp)},
            "lines": [{"sku": sku, "quantity": "5"}],
            "warehouses": ["WEB", "MAG"],
            "split": "split_line",
        },
    )
    assert created.status_code == 200, created.text
    lines = [(line["warehouse"], line["quantity"]) for line in created.json()["lines"]]
    assert lines == [("WEB", "2"), ("MAG", "3")]
    rows = erp.execute(
        "SELECT ob_MagId, ob_Ilosc FROM dok_Pozycja WHERE ob_DokHanId = ? ORDER BY ob_DokHanLp",
        (int(created.json()["id"]),),
    ).fetchall()
    assert rows == [(WEB, 2 * 10_000), (MAG, 3 * 10_000)]
    assert stock(erp, sku, WEB) == (web[0], web[1] + 2)
    assert stock(erp, sku, MAG) == (mag[0], mag[1] + 3)

    zd_sku, zd_id, expected = erp.execute(
        "SELECT tw_Symbol, dok_Id, dok_TerminRealizacji FROM dok__Dokument"
        " JOIN dok_Pozycja ON ob_DokHanId = dok_Id JOIN tw__Towar ON tw_Id = ob_TowId"
        " WHERE dok_Typ = 15 AND dok_Status = 7 AND dok_TerminRealizacji IS NOT NULL"
        " ORDER BY dok_Id LIMIT 1"
    ).fetchone()
    answer = await call("products.availability", {"skus": [zd_sku]})
    assert answer.status_code == 200, answer.text
    deliveries = answer.json()["items"][0]["deliveries"]
    assert {"purchase_order_id": str(zd_id), "expected": expected[:10]}.items() <= next(
        d for d in deliveries if d["purchase_order_id"] == str(zd_id)
    ).items()
