"""Warehouse operations of the demo connector, checked in the ERP tables on every backend:
transfers (MM header and lines, ``tw_Stan`` in both warehouses), pickup in store (the order's
reservation and lines moving with the goods), availability with planned deliveries (ZD), and
``orders.create`` spreading lines over warehouses.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pydantic
import pytest

from agent.connectors.base import (
    CallContext,
    CreditLimitExceeded,
    CustomerBlocked,
    InsufficientStock,
    InvalidState,
    NotFound,
    ProductBlocked,
)
from agent.connectors.demo import DemoSession
from agent.connectors.demo.keys import ORDER_KEY_WIDTH, key_token
from protocol.operations.catalogue import CATALOGUE
from tests.contract.conftest import ErpDb

MAG, SKL, WEB = 1, 2, 3
MM, ZD = 9, 15


def run(session: DemoSession, operation: str, key: str | None = None, **args: Any) -> Any:
    spec = CATALOGUE[operation]
    result = session.execute(operation, spec.args.model_validate(args), CallContext(operation, key))
    assert isinstance(result, spec.result)
    return result


def plain(value: Decimal) -> str:
    return format(value.normalize(), "f")


def change(db: ErpDb, sql: str, *params: object) -> None:
    """Set up a case the operations cannot make (another process changed the ERP)."""
    cursor = db.conn.cursor()
    try:
        cursor.execute(sql, params)
    finally:
        cursor.close()
    db.conn.commit()


def stock(db: ErpDb, sku: str, mag_id: int) -> tuple[Decimal, Decimal]:
    row = db.one(
        "SELECT st_Stan, st_StanRez FROM tw_Stan JOIN tw__Towar ON tw_Id = st_TowId"
        " WHERE tw_Symbol = ? AND st_MagId = ?",
        sku,
        mag_id,
    )
    return db.money(row[0]), db.money(row[1])


def free_sku(db: ErpDb, mag_id: int, at_least: int, skip: int = 0) -> str:
    row = db.one(
        "SELECT tw_Symbol FROM tw__Towar JOIN tw_Stan ON st_TowId = tw_Id AND st_MagId = ?"
        " WHERE tw_Zablokowany = 0 AND tw_JednMiary = 'szt.' AND st_Stan - st_StanRez >= ?"
        " ORDER BY tw_Id LIMIT 1 OFFSET ?",
        mag_id,
        db.stored_money(at_least),
        skip,
    )
    return str(row[0])


def customer(db: ErpDb) -> str:
    row = db.one("SELECT kh_Id FROM kh__Kontrahent WHERE kh_Zablokowany = 0 AND kh_Osoba = 1")
    return str(row[0])


def free(db: ErpDb, sku: str, mag_id: int) -> Decimal:
    quantity, reserved = stock(db, sku, mag_id)
    return quantity - reserved


def web_order(session: DemoSession, db: ErpDb, external: str, sku: str, qty: str) -> Any:
    return run(
        session,
        "orders.create",
        external_number=external,
        customer={"id": customer(db)},
        lines=[{"sku": sku, "quantity": qty}],
        warehouse="WEB",
        channel="web",
    )


# -- transfers.create ------------------------------------------------------------------------


def test_transfer_moves_free_stock_with_an_mm(session: DemoSession, db: ErpDb) -> None:
    sku = free_sku(db, MAG, 5)
    before_mag, before_skl = stock(db, sku, MAG), stock(db, sku, SKL)
    transfer = run(
        session,
        "transfers.create",
        "erpkid_x:mm-1",
        from_warehouse="MAG",
        to_warehouse="SKL",
        lines=[{"sku": sku, "quantity": "2"}, {"sku": sku, "quantity": "1"}],
        notes="Uzupełnienie sklepu",
    )
    assert (transfer.from_warehouse, transfer.to_warehouse) == ("MAG", "SKL")
    assert transfer.number == "MM 1/11/2026"
    assert [(line.sku, line.quantity) for line in transfer.lines] == [(sku, Decimal(3))]
    header = db.one(
        "SELECT dok_Typ, dok_MagId, dok_OdbiorcaId, dok_Uwagi, dok_TransakcjaSymbol"
        " FROM dok__Dokument WHERE dok_Id = ?",
        int(transfer.id),
    )
    assert header == (MM, MAG, SKL, "Uzupełnienie sklepu", key_token("erpkid_x:mm-1", 30))
    lines = db.all(
        "SELECT ob_DokHanId, ob_Ilosc, ob_MagId FROM dok_Pozycja WHERE ob_DokMagId = ?",
        int(transfer.id),
    )
    assert [(han, db.money(qty), mag) for han, qty, mag in lines] == [(None, Decimal(3), MAG)]
    assert stock(db, sku, MAG) == (before_mag[0] - 3, before_mag[1])
    assert stock(db, sku, SKL) == (before_skl[0] + 3, before_skl[1])
    assert session.find_write("transfers.create", "erpkid_x:mm-1") == transfer
    assert session.find_write("transfers.create", "erpkid_x:other") is None


def test_transfer_refusals_leave_nothing(session: DemoSession, db: ErpDb) -> None:
    sku = free_sku(db, MAG, 1)
    spare = free(db, sku, MAG)
    documents = db.one("SELECT count(*) FROM dok__Dokument")[0]
    args: dict[str, Any] = {"from_warehouse": "MAG", "to_warehouse": "SKL"}
    with pytest.raises(InsufficientStock) as short:
        run(session, "transfers.create", **args, lines=[{"sku": sku, "quantity": str(spare + 1)}])
    assert short.value.details == {
        "lines": [{"sku": sku, "requested": plain(spare + 1), "available": plain(spare)}]
    }
    with pytest.raises(NotFound) as unknown:
        run(session, "transfers.create", **args, lines=[{"sku": "NOPE-1", "quantity": "1"}])
    assert unknown.value.details == {"unknown_skus": ["NOPE-1"]}
    with pytest.raises(NotFound):
        run(
            session,
            "transfers.create",
            from_warehouse="XYZ",
            to_warehouse="SKL",
            lines=[{"sku": sku, "quantity": "1"}],
        )
    with pytest.raises(pydantic.ValidationError):  # the relay answers 422
        CATALOGUE["transfers.create"].args.model_validate(
            {"from_warehouse": "MAG", "to_warehouse": "MAG", "lines": [{"sku": sku, "quantity": 1}]}
        )
    assert db.one("SELECT count(*) FROM dok__Dokument")[0] == documents
    assert free(db, sku, MAG) == spare


# -- orders.ship_to_store and orders.picked_up ------------------------------------------------


def test_ship_to_store_moves_goods_and_reservation(session: DemoSession, db: ErpDb) -> None:
    sku = free_sku(db, WEB, 3)
    order = web_order(session, db, "PICK-1", sku, "2")
    assert order.channel == "web" and order.lines[0].warehouse == "WEB"
    web, skl = stock(db, sku, WEB), stock(db, sku, SKL)
    shipped = run(
        session, "orders.ship_to_store", "erpkid_x:ship-1", order={"id": order.id}, store="SKL"
    )
    [transfer] = shipped.transfers
    assert (transfer.from_warehouse, transfer.to_warehouse, transfer.order_id) == (
        "WEB",
        "SKL",
        order.id,
    )
    assert shipped.order.warehouse == "SKL"
    assert [line.warehouse for line in shipped.order.lines] == ["SKL"]
    header = db.one(
        "SELECT dok_Typ, dok_MagId, dok_OdbiorcaId, dok_DoDokId, dok_TransakcjaSymbol"
        " FROM dok__Dokument WHERE dok_Id = ?",
        int(transfer.id),
    )
    token = key_token("erpkid_x:ship-1", ORDER_KEY_WIDTH)
    assert header == (MM, WEB, SKL, int(order.id), token)
    assert stock(db, sku, WEB) == (web[0] - 2, web[1] - 2), "stock and reservation left WEB"
    assert stock(db, sku, SKL) == (skl[0] + 2, skl[1] + 2), "and are reserved in the store"
    zk_lines = db.all("SELECT ob_MagId FROM dok_Pozycja WHERE ob_DokHanId = ?", int(order.id))
    assert zk_lines == [(SKL,)]
    assert db.one("SELECT dok_MagId FROM dok__Dokument WHERE dok_Id = ?", int(order.id)) == (SKL,)
    assert session.find_write("orders.ship_to_store", "erpkid_x:ship-1") == shipped
    with pytest.raises(InvalidState):
        run(session, "orders.ship_to_store", order={"id": order.id}, store="SKL")


def test_ship_to_store_needs_an_open_order(session: DemoSession, db: ErpDb) -> None:
    sku = free_sku(db, WEB, 1)
    order = web_order(session, db, "PICK-2", sku, "1")
    with pytest.raises(NotFound):
        run(session, "orders.ship_to_store", order={"id": order.id}, store="XYZ")
    change(db, "UPDATE dok__Dokument SET dok_Status = 8 WHERE dok_Id = ?", int(order.id))
    with pytest.raises(InvalidState) as caught:
        run(session, "orders.ship_to_store", order={"id": order.id}, store="SKL")
    assert caught.value.details == {"status": "completed"}


def test_picked_up_after_shipping_once(session: DemoSession, db: ErpDb) -> None:
    sku = free_sku(db, WEB, 1)
    order = web_order(session, db, "PICK-3", sku, "1")
    with pytest.raises(InvalidState, match="not been shipped"):
        run(session, "orders.picked_up", order={"id": order.id})
    run(session, "orders.ship_to_store", order={"number": order.number}, store="SKL")
    skl = stock(db, sku, SKL)
    done = run(session, "orders.picked_up", "erpkid_x:pick-3", order={"external_number": "PICK-3"})
    assert (done.store, done.order.id, done.picked_up.isoformat()) == (
        "SKL",
        order.id,
        "2026-11-22",
    )
    again = run(session, "orders.picked_up", "erpkid_x:pick-3b", order={"id": order.id})
    assert again == done
    rows = db.all(
        "SELECT odb_DokId, odb_MagId, odb_TransakcjaSymbol FROM dok_Odbior WHERE odb_DokId = ?",
        int(order.id),
    )
    assert rows == [(int(order.id), SKL, key_token("erpkid_x:pick-3", 30))]
    assert stock(db, sku, SKL) == skl, "the sales document (orders.fulfil) issues the goods"
    assert session.find_write("orders.picked_up", "erpkid_x:pick-3") == done
    assert session.find_write("orders.picked_up", "erpkid_x:pick-3b") is None


# -- products.availability ---------------------------------------------------------------------


def test_availability_shows_open_purchase_orders(session: DemoSession, db: ErpDb) -> None:
    zd = db.all(
        "SELECT tw_Symbol, dok_Id, dok_Status, mag_Symbol, ob_Ilosc FROM dok__Dokument"
        " JOIN dok_Pozycja ON ob_DokHanId = dok_Id JOIN tw__Towar ON tw_Id = ob_TowId"
        " JOIN sl_Magazyn ON mag_Id = ob_MagId WHERE dok_Typ = ? ORDER BY dok_Id",
        ZD,
    )
    open_zd = [row for row in zd if row[2] == 7]
    completed = [row for row in zd if row[2] != 7]
    assert open_zd and completed
    sku = open_zd[1][0]
    result = run(session, "products.availability", skus=[sku, completed[0][0], "NOPE"])
    item = result.items[0]
    expected = [(r[3], db.money(r[4]), str(r[1])) for r in open_zd if r[0] == sku]
    got = [(d.warehouse, d.quantity, d.purchase_order_id) for d in item.deliveries]
    assert sorted(got) == sorted(expected)
    assert all(
        d.expected is not None and d.expected.isoformat() > "2026-11-22" for d in item.deliveries
    )
    assert str(completed[0][1]) not in {
        d.purchase_order_id for i in result.items for d in i.deliveries
    }
    assert [w.warehouse for w in item.warehouses] == ["MAG", "SKL", "WEB"]
    assert item.warehouses[0].available == free(db, sku, MAG)
    assert result.unknown_skus == ["NOPE"]
    only_skl = run(session, "products.availability", skus=[sku], warehouses=["SKL"])
    assert all(d.warehouse == "SKL" for d in only_skl.items[0].deliveries)


# -- orders.create over several warehouses -----------------------------------------------------


def _sku_free_in(db: ErpDb, where: dict[int, tuple[int, int]]) -> str:
    """A piece product whose free stock in each warehouse lies in the given [low, high]."""
    rows = db.all(
        "SELECT tw_Symbol, st_MagId, st_Stan - st_StanRez FROM tw__Towar JOIN tw_Stan"
        " ON st_TowId = tw_Id WHERE tw_Zablokowany = 0 AND tw_JednMiary = 'szt.' ORDER BY tw_Id"
    )
    found: dict[str, dict[int, Decimal]] = {}
    for sku, mag, amount in rows:
        found.setdefault(sku, {})[mag] = db.money(amount)
    for sku, levels in found.items():
        if all(low <= levels.get(mag, 0) <= high for mag, (low, high) in where.items()):
            return sku
    raise AssertionError(f"no product with free stock {where}")


@pytest.mark.parametrize(
    ("split", "placed"),
    [
        ("none", [("MAG", 5)]),
        ("whole_line", [("MAG", 5)]),
        ("split_line", [("WEB", 2), ("MAG", 3)]),
    ],
)
def test_order_spreads_lines_by_policy(
    session: DemoSession, db: ErpDb, split: str, placed: list[tuple[str, int]]
) -> None:
    sku = _sku_free_in(db, {WEB: (2, 2), MAG: (10, 400)})
    web, mag = stock(db, sku, WEB), stock(db, sku, MAG)
    order = run(
        session,
        "orders.create",
        external_number=f"SPLIT-{split}",
        customer={"id": customer(db)},
        lines=[{"sku": sku, "quantity": "5"}],
        warehouses=["WEB", "MAG"],
        split=split,
    )
    assert [(line.warehouse, line.quantity) for line in order.lines] == placed
    rows = db.all(
        "SELECT ob_MagId, ob_Ilosc FROM dok_Pozycja WHERE ob_DokHanId = ? ORDER BY ob_DokHanLp",
        int(order.id),
    )
    symbols = {MAG: "MAG", WEB: "WEB"}
    assert [(symbols[m], db.money(q)) for m, q in rows] == placed
    taken = dict(placed)
    assert stock(db, sku, WEB) == (web[0], web[1] + taken.get("WEB", 0))
    assert stock(db, sku, MAG) == (mag[0], mag[1] + taken.get("MAG", 0))
    header_mag = db.one("SELECT dok_MagId FROM dok__Dokument WHERE dok_Id = ?", int(order.id))[0]
    assert header_mag == (WEB if split == "split_line" else MAG)


def test_order_split_refused_when_all_warehouses_are_short(session: DemoSession, db: ErpDb) -> None:
    sku = _sku_free_in(db, {WEB: (2, 2), MAG: (10, 400)})
    total = free(db, sku, WEB) + free(db, sku, MAG)
    with pytest.raises(InsufficientStock) as short:
        run(
            session,
            "orders.create",
            external_number="SPLIT-X",
            customer={"id": customer(db)},
            lines=[{"sku": sku, "quantity": str(total + 1)}],
            warehouses=["WEB", "MAG"],
            split="split_line",
        )
    assert short.value.details["lines"][0]["available"] == plain(total)
    assert db.one("SELECT count(*) FROM dok__Dokument WHERE dok_Typ = 16")[0] == 0


def test_channel_is_the_orders_category(session: DemoSession, db: ErpDb) -> None:
    sku = free_sku(db, MAG, 2)
    first = run(
        session,
        "orders.create",
        external_number="CH-1",
        customer={"id": customer(db)},
        lines=[{"sku": sku, "quantity": "1"}],
        channel="allegro",
    )
    second = run(
        session,
        "orders.create",
        external_number="CH-2",
        customer={"id": customer(db)},
        lines=[{"sku": sku, "quantity": "1"}],
        channel="allegro",
    )
    assert first.channel == second.channel == "allegro"
    kat = db.all(
        "SELECT DISTINCT kat_Id, kat_Nazwa FROM dok__Dokument"
        " JOIN sl_Kategoria ON kat_Id = dok_KatId WHERE dok_Id IN (?, ?)",
        int(first.id),
        int(second.id),
    )
    assert len(kat) == 1 and kat[0][1] == "allegro"


def test_order_refusal_codes(session: DemoSession, db: ErpDb) -> None:
    sku = free_sku(db, MAG, 2)
    blocked_customer = db.one("SELECT kh_Id FROM kh__Kontrahent WHERE kh_Zablokowany = 1")[0]
    blocked_sku = db.one("SELECT tw_Symbol FROM tw__Towar WHERE tw_Zablokowany = 1")[0]
    args: dict[str, Any] = {"external_number": "R-1", "lines": [{"sku": sku, "quantity": "1"}]}
    with pytest.raises(CustomerBlocked):
        run(session, "orders.create", **args, customer={"id": str(blocked_customer)})
    with pytest.raises(ProductBlocked) as blocked:
        run(
            session,
            "orders.create",
            external_number="R-2",
            customer={"id": customer(db)},
            lines=[{"sku": blocked_sku, "quantity": "1"}],
        )
    assert blocked.value.details == {"blocked_skus": [blocked_sku]}
    kh_id, receivables = db.one(
        "SELECT nzf_IdObiektu, SUM(nzf_Wartosc) FROM nz__Finanse JOIN kh__Kontrahent"
        " ON kh_Id = nzf_IdObiektu WHERE nzf_Typ = 39 AND nzf_Wartosc > 0 AND kh_Zablokowany = 0"
        " GROUP BY nzf_IdObiektu ORDER BY nzf_IdObiektu LIMIT 1"
    )
    owed = db.money(receivables)
    limit = owed + 1
    change(
        db,
        "UPDATE kh__Kontrahent SET kh_MaxWartKred = ? WHERE kh_Id = ?",
        db.stored_money(limit),
        kh_id,
    )
    with pytest.raises(CreditLimitExceeded) as credit:
        run(session, "orders.create", **args, customer={"id": str(kh_id)})
    assert credit.value.details["credit_limit"] == f"{limit:.2f}"
    assert credit.value.details["receivables"] == f"{owed:.2f}"
    assert db.one("SELECT count(*) FROM dok__Dokument WHERE dok_Typ = 16")[0] == 0
