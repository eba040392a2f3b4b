"""ZK orders in the demo ERP: the body of an ``orders.create``, a SKU with stock to spare, the
call itself, and what the ERP holds afterwards (for tests that count documents per key)."""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from typing import Any

import httpx


def order(external_number: str, sku: str) -> dict[str, Any]:
    return {
        "external_number": external_number,
        "customer": {"id": "1"},
        "warehouse": "MAG",
        "lines": [{"sku": sku, "quantity": "1"}],
    }


def plentiful_sku(erp: sqlite3.Connection) -> str:
    """The product with the most free stock in the main warehouse (MAG)."""
    row = erp.execute(
        "SELECT tw_Symbol FROM tw__Towar JOIN tw_Stan ON st_TowId = tw_Id WHERE st_MagId = 1 "
        "AND tw_Zablokowany = 0 ORDER BY st_Stan - st_StanRez DESC LIMIT 1"
    ).fetchone()
    return str(row[0])


async def write(
    client: httpx.AsyncClient, body: dict[str, Any], key: str, timeout: float | None = None
) -> httpx.Response:
    query = f"?timeout={timeout}" if timeout else ""
    return await client.post(
        f"/v1/agents/acme/calls/orders.create{query}", json=body, headers={"Idempotency-Key": key}
    )


def zk_orders(erp: sqlite3.Connection) -> dict[str, list[str]]:
    """Every customer order (ZK) in the ERP: shop order number → the ERP ids of its documents
    (more than one id is a duplicate)."""
    found: dict[str, list[str]] = defaultdict(list)
    for external, dok_id in erp.execute(
        "SELECT dok_NrPelnyOryg, dok_Id FROM dok__Dokument WHERE dok_Typ = 16 ORDER BY dok_Id"
    ):
        found[str(external)].append(str(dok_id))
    return dict(found)
