"""An order's whole life end to end: shop → relay → agent → demo ERP, through real sockets.

Create an order for a new customer, pay it, fulfil it with an invoice (FS) or a receipt (PA),
take goods back, and cancel another order. After each step the ERP tables themselves are read
(documents, lines, reservations, stock, receivables, payments), not only the API answers.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.connectors.demo import DemoConnector
from tests.e2e.conftest import Credentials
from tests.support.servers import RelayHandle, run_agent

Call = Callable[..., Awaitable[httpx.Response]]
_SCALE = Decimal(10_000)


@pytest.fixture
async def call(
    relay: RelayHandle, creds: Credentials, client: httpx.AsyncClient, erp_path: Path
) -> AsyncIterator[Call]:
    connector = DemoConnector(str(erp_path), seed=False)

    async def invoke(operation: str, args: dict[str, object], key: str | None = None) -> Any:
        headers = {"Idempotency-Key": key or uuid.uuid4().hex}
        if operation.endswith((".get", ".list", ".balance")):
            headers = {}
        return await client.post(f"/v1/agents/acme/calls/{operation}", json=args, headers=headers)

    async with run_agent(relay.ws_url, creds.agent_token, connector, max_concurrency=2):
        yield invoke


async def ok(response: Awaitable[httpx.Response]) -> dict[str, Any]:
    answer = await response
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _money(raw: int) -> Decimal:
    """SQLite keeps money as 1/10,000ths, as SQL Server's money does."""
    return Decimal(raw) / _SCALE


def _sku(erp: sqlite3.Connection, skip: int = 0) -> str:
    row = erp.execute(
        "SELECT tw_Symbol FROM tw__Towar JOIN tw_Stan ON st_TowId = tw_Id AND st_MagId = 1 "
        "WHERE tw_Zablokowany = 0 AND st_Stan - st_StanRez >= 200000 ORDER BY tw_Id "
        "LIMIT 1 OFFSET ?",
        (skip,),
    ).fetchone()
    return str(row[0])


def _stock(erp: sqlite3.Connection, sku: str) -> tuple[Decimal, Decimal]:
    stan, rez = erp.execute(
        "SELECT st_Stan, st_StanRez FROM tw_Stan JOIN tw__Towar ON tw_Id = st_TowId "
        "WHERE tw_Symbol = ? AND st_MagId = 1",
        (sku,),
    ).fetchone()
    return _money(stan), _money(rez)


def _new_order(external: str, sku: str, new_customer: dict[str, Any]) -> dict[str, Any]:
    return {
        "external_number": external,
        "new_customer": new_customer,
        "warehouse": "MAG",
        "lines": [{"sku": sku, "quantity": "2"}],
    }


async def test_new_customer_pays_gets_an_invoice_and_returns_a_part(
    call: Call, erp: sqlite3.Connection
) -> None:
    sku = _sku(erp)
    stan, rez = _stock(erp, sku)
    company = {"name": "Cykl Życia Sp. z o.o.", "nip": "5260001246", "address": {"city": "Łódź"}}
    order = await ok(call("orders.create", _new_order("LIFE-FS-1", sku, company)))
    gross = Decimal(order["gross"])
    assert _stock(erp, sku) == (stan, rez + 2)
    kh_id = int(order["customer_id"])

    payment = await ok(
        call(
            "payments.register",
            {"order": {"id": order["id"]}, "amount": order["gross"], "method": "blik"},
        )
    )
    assert payment["open"] == "0.00"
    row = erp.execute(
        "SELECT nzs_IdFinanse, nzs_IdDokumentu, nzs_IdObiektu, nzs_Kwota, nzs_FormaPlatnosci "
        "FROM nz_FinanseSplata WHERE nzs_Id = ?",
        (int(payment["id"]),),
    ).fetchone()
    assert row[:3] == (None, int(order["id"]), kh_id)
    assert (_money(row[3]), row[4]) == (gross, "blik")

    key = uuid.uuid4().hex
    invoice = await ok(call("orders.fulfil", {"order": {"id": order["id"]}, "kind": "FS"}, key))
    assert (invoice["kind"], invoice["nip"], invoice["order_id"]) == (
        "FS",
        "5260001246",
        order["id"],
    )
    assert (invoice["gross"], invoice["prepaid"], invoice["amount_due"]) == (
        order["gross"],
        order["gross"],
        "0.00",
    )
    assert (
        await ok(call("orders.fulfil", {"order": {"id": order["id"]}, "kind": "FS"}, key))
        == invoice
    )
    head = erp.execute(
        "SELECT dok_Typ, dok_Status, dok_DoDokId, dok_NrIdentNabywcy, dok_WartBrutto "
        "FROM dok__Dokument WHERE dok_Id = ?",
        (int(invoice["id"]),),
    ).fetchone()
    assert head[:4] == (2, 1, int(order["id"]), "5260001246")
    assert _money(head[4]) == gross
    assert erp.execute(
        "SELECT dok_Status FROM dok__Dokument WHERE dok_Id = ?", (int(order["id"]),)
    ).fetchone() == (8,)
    lines = erp.execute(
        "SELECT ob_Ilosc, ob_MagId FROM dok_Pozycja WHERE ob_DokHanId = ?", (int(invoice["id"]),)
    ).fetchall()
    assert [(_money(q), m) for q, m in lines] == [(Decimal(2), 1)]
    assert _stock(erp, sku) == (stan - 2, rez)
    nzf_id, original, still_open = erp.execute(
        "SELECT nzf_Id, nzf_WartoscPierwotna, nzf_Wartosc FROM nz__Finanse "
        "WHERE nzf_IdDokumentAuto = ? AND nzf_Typ = 39",
        (int(invoice["id"]),),
    ).fetchone()
    assert (_money(original), _money(still_open)) == (gross, Decimal(0))
    assert erp.execute(
        "SELECT nzs_IdFinanse FROM nz_FinanseSplata WHERE nzs_Id = ?", (int(payment["id"]),)
    ).fetchone() == (nzf_id,)
    balance = await ok(call("customers.balance", {"id": str(kh_id)}))
    assert balance["receivables"] == "0.00"

    returned = await ok(
        call(
            "returns.create",
            {
                "document": {"number": invoice["number"]},
                "lines": [{"sku": sku, "quantity": "1"}],
                "reason": "withdrawal within 14 days",
            },
        )
    )
    refund = -Decimal(returned["gross"])
    assert (returned["corrects_id"], Decimal(returned["refund_due"])) == (invoice["id"], refund)
    kfs = erp.execute(
        "SELECT dok_Typ, dok_DoDokId FROM dok__Dokument WHERE dok_Id = ?", (int(returned["id"]),)
    ).fetchone()
    assert kfs == (6, int(invoice["id"]))
    assert _stock(erp, sku) == (stan - 1, rez)
    payable = erp.execute(
        "SELECT nzf_Wartosc FROM nz__Finanse WHERE nzf_IdDokumentAuto = ? AND nzf_Typ = 40",
        (int(returned["id"]),),
    ).fetchone()
    assert _money(payable[0]) == refund
    too_many = await call(
        "returns.create",
        {
            "document": {"id": invoice["id"]},
            "lines": [{"sku": sku, "quantity": "2"}],
            "reason": "x",
        },
    )
    assert too_many.status_code == 409
    assert too_many.json()["code"] == "conflict"


async def test_new_person_pays_and_gets_a_receipt(call: Call, erp: sqlite3.Connection) -> None:
    sku = _sku(erp, skip=1)
    stan, rez = _stock(erp, sku)
    person = {"name": "Anna Kowalska", "kind": "person", "email": "anna@example.pl"}
    order = await ok(call("orders.create", _new_order("LIFE-PA-1", sku, person)))
    half = (Decimal(order["gross"]) / 2).quantize(Decimal("0.01"))
    await ok(
        call(
            "payments.register",
            {"order": {"id": order["id"]}, "amount": str(half), "method": "card"},
        )
    )
    receipt = await ok(call("orders.fulfil", {"order": {"id": order["id"]}, "kind": "PA"}))
    assert (receipt["kind"], receipt["nip"], Decimal(receipt["prepaid"])) == ("PA", None, half)
    assert erp.execute(
        "SELECT dok_Typ, dok_DoDokId FROM dok__Dokument WHERE dok_Id = ?", (int(receipt["id"]),)
    ).fetchone() == (21, int(order["id"]))
    assert _stock(erp, sku) == (stan - 2, rez)
    still_open = erp.execute(
        "SELECT nzf_Wartosc FROM nz__Finanse WHERE nzf_IdDokumentAuto = ? AND nzf_Typ = 39",
        (int(receipt["id"]),),
    ).fetchone()[0]
    assert _money(still_open) == Decimal(order["gross"]) - half
    rest = await ok(
        call(
            "payments.register",
            {"document": {"id": receipt["id"]}, "amount": receipt["amount_due"], "method": "cash"},
        )
    )
    assert (rest["document_id"], rest["open"]) == (receipt["id"], "0.00")
    assert erp.execute(
        "SELECT nzf_Wartosc FROM nz__Finanse WHERE nzf_IdDokumentAuto = ? AND nzf_Typ = 39",
        (int(receipt["id"]),),
    ).fetchone() == (0,)


async def test_cancelled_order_gives_its_stock_back(call: Call, erp: sqlite3.Connection) -> None:
    sku = _sku(erp, skip=2)
    before = _stock(erp, sku)
    person = {"name": "Jan Nowak", "kind": "person"}
    order = await ok(call("orders.create", _new_order("LIFE-CA-1", sku, person)))
    assert _stock(erp, sku) == (before[0], before[1] + 2)
    status = await ok(
        call("orders.update_status", {"order": {"id": order["id"]}, "status": "awaiting payment"})
    )
    assert status["shop_status"] == "awaiting payment"
    cancelled = await ok(call("orders.cancel", {"order": {"external_number": "LIFE-CA-1"}}))
    assert cancelled["status"] == "cancelled"
    assert erp.execute(
        "SELECT dok_Status FROM dok__Dokument WHERE dok_Id = ?", (int(order["id"]),)
    ).fetchone() == (9,)
    assert _stock(erp, sku) == before
    refused = await call("orders.fulfil", {"order": {"id": order["id"]}, "kind": "PA"})
    assert refused.status_code == 409
    assert refused.json()["code"] == "invalid_state"
    assert erp.execute(
        "SELECT COUNT(*) FROM dok__Dokument WHERE dok_DoDokId = ?", (int(order["id"]),)
    ).fetchone() == (0,)
