"""The trade operations (quotes, customer terms, sales reports) on the demo ERP, on every backend
of the contract suite, checked against the tables through a plain DB-API connection (`ErpDb`).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from agent.connectors.base import (
    CallContext,
    Conflict,
    CustomerBlocked,
    InsufficientStock,
    ProductBlocked,
)
from agent.connectors.demo import DemoSession
from agent.connectors.demo.keys import ORDER_KEY_WIDTH, key_token
from protocol.operations.catalogue import CATALOGUE
from protocol.operations.trade import Quote
from tests.contract.conftest import TODAY, ErpDb
from tests.contract.test_demo_contract import call, grosz, sku_with_free_stock, stock_row

OFFER = 6


def quote(session: DemoSession, key: str | None, **arguments: Any) -> Quote:
    op = CATALOGUE["quotes.create"]
    result = session.execute(
        "quotes.create", op.args.model_validate(arguments), CallContext("quotes.create", key)
    )
    assert isinstance(result, Quote)
    return result


def execute(db: ErpDb, sql: str, *params: object) -> None:
    """A change made to the ERP behind the connector's back, as an office user would."""
    cursor = db.conn.cursor()
    try:
        cursor.execute(sql, params)
    finally:
        cursor.close()
    if db.backend != "sqlite":
        db.conn.commit()


def discounted_customer(db: ErpDb) -> tuple[int, int, Decimal]:
    """An active company with a discount: (kh_Id, price level, percent)."""
    row = db.one(
        "SELECT kh_Id, kh_Cena, rt_Procent FROM kh__Kontrahent JOIN sl_Rabat ON rt_Id = kh_IdRabat"
        " WHERE kh_Zablokowany = 0 ORDER BY kh_Id LIMIT 1"
    )
    return int(row[0]), int(row[1]), db.money(row[2])


# -- quotes.create -----------------------------------------------------------------------------


def test_quote_is_an_offer_priced_with_the_discount_that_reserves_nothing(
    session: DemoSession, db: ErpDb
) -> None:
    kh_id, level, percent = discounted_customer(db)
    assert percent > 0
    sku = sku_with_free_stock(db, 10)
    stock_before = stock_row(db, sku)
    documents_before = db.one("SELECT COUNT(*) FROM dok__Dokument")[0]
    key = "erpkid_x:quote-1"
    result = quote(
        session,
        key,
        customer={"id": str(kh_id)},
        lines=[{"sku": sku, "quantity": "4"}, {"sku": sku, "quantity": "1", "price_net": "9.99"}],
        valid_until=(TODAY + timedelta(days=14)).isoformat(),
        notes="Oferta na IV kwartał",
    )
    level_net = db.money(
        db.one(
            f"SELECT tc_CenaNetto{level} FROM tw_Cena JOIN tw__Towar ON tw_Id = tc_IdTowar"
            " WHERE tw_Symbol = ?",
            sku,
        )[0]
    )
    price = grosz(level_net * (100 - percent) / 100)
    assert result.status == "offer"
    assert result.valid_until == TODAY + timedelta(days=14)
    assert result.discount == percent
    assert [line.price_net for line in result.lines] == [price, Decimal("9.99")]
    assert result.lines[0].net == grosz(4 * price)
    assert result.net == result.lines[0].net + Decimal("9.99")
    # the document in the ERP: a ZK with the offer status, its key, validity and lines
    header = db.one(
        "SELECT dok_Typ, dok_Status, dok_NrPelny, dok_PlatnikId, dok_TerminRealizacji,"
        " dok_TransakcjaSymbol, dok_WartNetto, dok_WartBrutto, dok_Uwagi"
        " FROM dok__Dokument WHERE dok_Id = ?",
        int(result.id),
    )
    assert header[:4] == (16, OFFER, result.number, kh_id)
    assert db.day(header[4]) == result.valid_until
    assert header[5] == key_token(key, ORDER_KEY_WIDTH)
    assert (db.money(header[6]), db.money(header[7])) == (result.net, result.gross)
    assert header[8] == "Oferta na IV kwartał"
    lines = db.all(
        "SELECT ob_Ilosc, ob_CenaNetto, ob_Rabat, ob_WartNetto, ob_MagId FROM dok_Pozycja"
        " WHERE ob_DokHanId = ? ORDER BY ob_DokHanLp",
        int(result.id),
    )
    assert [(db.money(q), db.money(p), db.money(r), db.money(n), m) for q, p, r, n, m in lines] == [
        (Decimal(4), price, percent, grosz(4 * price), None),
        (Decimal(1), Decimal("9.99"), Decimal(0), Decimal("9.99"), None),
    ]
    # no stock reserved, nothing else written
    assert stock_row(db, sku) == stock_before
    assert db.one("SELECT COUNT(*) FROM dok__Dokument")[0] == documents_before + 1
    # exactly once: the key finds the quote again; orders.get reads it as an offer
    assert session.find_write("quotes.create", key) == result
    assert session.find_write("quotes.create", "erpkid_x:quote-2") is None
    assert call(session, "orders.get", id=result.id).status == "offer"


def test_quote_defaults_to_thirty_days_and_the_main_warehouse(
    session: DemoSession, db: ErpDb
) -> None:
    result = quote(
        session,
        None,
        customer={"id": "1"},
        lines=[{"sku": sku_with_free_stock(db), "quantity": "1"}],
    )
    assert result.valid_until == TODAY + timedelta(days=30)
    assert result.warehouse == "MAG"
    stored = db.one(
        "SELECT dok_TransakcjaSymbol FROM dok__Dokument WHERE dok_Id = ?", int(result.id)
    )
    assert stored[0] is None


def test_quote_refusals_write_nothing(session: DemoSession, db: ErpDb) -> None:
    documents = db.one("SELECT COUNT(*) FROM dok__Dokument")[0]
    blocked_customer = db.one("SELECT kh_Id FROM kh__Kontrahent WHERE kh_Zablokowany = 1")[0]
    blocked_sku = db.one("SELECT tw_Symbol FROM tw__Towar WHERE tw_Zablokowany = 1")[0]
    sku = sku_with_free_stock(db)
    with pytest.raises(CustomerBlocked):
        quote(
            session,
            "k1",
            customer={"id": str(blocked_customer)},
            lines=[{"sku": sku, "quantity": "1"}],
        )
    with pytest.raises(ProductBlocked) as blocked:
        quote(session, "k2", customer={"id": "1"}, lines=[{"sku": blocked_sku, "quantity": "1"}])
    assert blocked.value.details == {"blocked_skus": [blocked_sku]}
    with pytest.raises(InsufficientStock):
        quote(session, "k3", customer={"id": "1"}, lines=[{"sku": sku, "quantity": "99999999"}])
    with pytest.raises(Conflict, match="past"):
        quote(
            session,
            "k4",
            customer={"id": "1"},
            lines=[{"sku": sku, "quantity": "1"}],
            valid_until=(TODAY - timedelta(days=1)).isoformat(),
        )
    assert db.one("SELECT COUNT(*) FROM dok__Dokument")[0] == documents
    assert session.find_write("quotes.create", "k2") is None


# -- customers.terms ---------------------------------------------------------------------------


def test_customer_terms_match_the_tables(session: DemoSession, db: ErpDb) -> None:
    kh_id, level, percent = discounted_customer(db)
    terms = call(session, "customers.terms", id=str(kh_id))
    row = db.one(
        "SELECT kh_MaxWartKred, kh_PlatOdroczone, kh_MaxDniSp, kh_Zablokowany, fp_Nazwa"
        " FROM kh__Kontrahent LEFT JOIN sl_FormaPlatnosci ON fp_Id = kh_IdFormaP WHERE kh_Id = ?",
        kh_id,
    )
    level_name = db.one(f"SELECT twp_NazwaCeny{level} FROM tw_Parametr")[0]
    open_total = sum(
        (
            db.money(r[0])
            for r in db.all(
                "SELECT nzf_Wartosc FROM nz__Finanse WHERE nzf_IdObiektu = ? AND nzf_Typ = 39"
                " AND nzf_TypObiektu = 1 AND nzf_Wartosc > 0",
                kh_id,
            )
        ),
        Decimal(0),
    )
    limit = db.money(row[0])
    assert terms.customer_id == str(kh_id)
    assert (terms.price_level.level, terms.price_level.name) == (level, level_name)
    assert terms.discount == percent
    assert terms.blocked == bool(row[3])
    assert terms.receivables == grosz(open_total)
    if limit > 0:
        assert terms.credit_limit == limit
        assert terms.credit_available == max(limit - grosz(open_total), Decimal(0))
    else:
        assert terms.credit_limit is None and terms.credit_available is None
    assert terms.payment.deferred == bool(row[1])
    assert terms.payment.days == row[2]
    assert terms.payment.method == row[4]


def test_customer_terms_of_a_blocked_customer_without_discount(
    session: DemoSession, db: ErpDb
) -> None:
    kh_id = db.one(
        "SELECT kh_Id FROM kh__Kontrahent WHERE kh_Zablokowany = 1 AND kh_IdRabat IS NULL"
        " ORDER BY kh_Id LIMIT 1"
    )[0]
    terms = call(session, "customers.terms", id=str(kh_id))
    assert terms.blocked is True
    assert terms.discount == 0


# -- reports.sales -----------------------------------------------------------------------------

GROUP_SQL = {
    "day": "substr(CAST(dok_DataWyst AS CHAR), 1, 10)",
    "product": "tw_Symbol",
    "customer": "CAST(dok_PlatnikId AS CHAR)",
    "warehouse": "mag_Symbol",
}


def expected_sales(db: ErpDb, date_from: date, date_to: date, group: str) -> dict[Any, dict]:
    """Sums computed here from the lines themselves, independently of the connector's SQL."""
    rows = db.all(
        "SELECT dok_Id, dok_DataWyst, tw_Symbol, dok_PlatnikId, mag_Symbol,"
        " ob_Ilosc, ob_WartNetto, ob_WartBrutto, ob_WartNabycia"
        " FROM dok_Pozycja JOIN dok__Dokument ON dok_Id = ob_DokHanId"
        " JOIN tw__Towar ON tw_Id = ob_TowId"
        " LEFT JOIN sl_Magazyn ON mag_Id = COALESCE(ob_MagId, dok_MagId)"
        " WHERE dok_Typ IN (2, 6, 21) AND dok_Status = 1"
    )
    sums: dict[Any, dict] = defaultdict(
        lambda: {
            "docs": set(),
            "quantity": Decimal(0),
            "net": Decimal(0),
            "gross": Decimal(0),
            "cost": Decimal(0),
            "unknown": 0,
        }
    )
    for dok_id, issued, sku, payer, mag, qty, net, gross, cost in rows:
        day = db.day(issued)
        if not date_from <= day <= date_to:
            continue
        key = {
            "day": day.isoformat(),
            "product": sku,
            "customer": str(payer),
            "warehouse": mag,
            "all": None,
        }[group]
        entry = sums[key]
        entry["docs"].add(dok_id)
        entry["quantity"] += db.money(qty)
        entry["net"] += db.money(net)
        entry["gross"] += db.money(gross)
        if cost is None:
            entry["unknown"] += 1
        else:
            entry["cost"] += db.money(cost)
    return sums


def assert_figures(found: Any, wanted: dict) -> None:
    assert found.documents == len(wanted["docs"])
    assert found.quantity == wanted["quantity"]
    assert found.net == grosz(wanted["net"])
    assert found.gross == grosz(wanted["gross"])
    if wanted["unknown"]:
        assert found.cost is None and found.margin is None
    else:
        assert found.cost == grosz(wanted["cost"])
        assert found.margin == grosz(wanted["net"]) - grosz(wanted["cost"])


@pytest.mark.parametrize("group", ["day", "product", "customer", "warehouse"])
def test_sales_report_matches_sums_of_the_lines(
    session: DemoSession, db: ErpDb, group: str
) -> None:
    date_from, date_to = TODAY - timedelta(days=40), TODAY - timedelta(days=10)
    report = call(
        session,
        "reports.sales",
        date_from=date_from.isoformat(),
        date_to=date_to.isoformat(),
        group_by=group,
        limit=1000,
    )
    wanted = expected_sales(db, date_from, date_to, group)
    assert report.next_offset is None
    assert {row.key for row in report.items} == set(wanted)
    for row in report.items:
        assert_figures(row, wanted[row.key])
    assert_figures(report.totals, expected_sales(db, date_from, date_to, "all")[None])
    if group == "day":
        assert [row.key for row in report.items] == sorted(wanted)
    else:
        nets = [row.net for row in report.items]
        assert nets == sorted(nets, reverse=True)
    if group == "product":
        assert all(row.name for row in report.items)


def test_sales_report_pages_through_a_top_n(session: DemoSession) -> None:
    args = {"date_from": "2026-01-01", "date_to": "2026-11-22", "group_by": "customer"}
    first = call(session, "reports.sales", limit=5, **args)
    second = call(session, "reports.sales", limit=5, offset=first.next_offset, **args)
    everything = call(session, "reports.sales", limit=1000, **args)
    assert first.next_offset == 5
    assert [r.key for r in first.items + second.items] == [r.key for r in everything.items[:10]]
    assert first.totals == everything.totals


def test_sales_report_channels_orders_and_unknown_costs(session: DemoSession, db: ErpDb) -> None:
    """Seeded documents have no channel; a document with one groups under it, and a line
    without a purchase value makes its group's margin unknown."""
    dok_id = db.one(
        "SELECT dok_Id FROM dok__Dokument WHERE dok_Typ = 2 AND dok_DataWyst >= ?"
        " ORDER BY dok_Id LIMIT 1",
        (TODAY - timedelta(days=5)).isoformat(),
    )[0]
    execute(db, "INSERT INTO sl_Kategoria (kat_Id, kat_Nazwa) VALUES (900, 'allegro')")
    execute(db, "UPDATE dok__Dokument SET dok_KatId = 900 WHERE dok_Id = ?", dok_id)
    execute(
        db,
        "UPDATE dok_Pozycja SET ob_WartNabycia = NULL, ob_CenaNabycia = NULL WHERE ob_DokHanId = ?",
        dok_id,
    )
    report = call(
        session,
        "reports.sales",
        date_from=(TODAY - timedelta(days=6)).isoformat(),
        date_to=TODAY.isoformat(),
        group_by="channel",
    )
    by_key = {row.key: row for row in report.items}
    assert set(by_key) == {"allegro", None}
    net = sum(
        (
            db.money(r[0])
            for r in db.all("SELECT ob_WartNetto FROM dok_Pozycja WHERE ob_DokHanId = ?", dok_id)
        ),
        Decimal(0),
    )
    assert by_key["allegro"].documents == 1
    assert by_key["allegro"].net == grosz(net)
    assert by_key["allegro"].margin is None
    assert by_key[None].margin is not None
    assert report.totals.margin is None


def test_sales_report_range_is_bounded() -> None:
    args = CATALOGUE["reports.sales"].args
    args.model_validate({"date_from": "2025-01-01", "date_to": "2026-01-01"})  # 366 days
    for bad in (
        {"date_from": "2025-01-01", "date_to": "2026-01-02"},
        {"date_from": "2026-02-01", "date_to": "2026-01-01"},
        {"date_from": "2026-01-01", "date_to": "2026-01-31", "limit": 1001},
        {"date_from": "2026-01-01", "date_to": "2026-01-31", "group_by": "region"},
    ):
        with pytest.raises(ValidationError):
            args.model_validate(bad)
