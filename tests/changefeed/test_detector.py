"""The demo's change detector against its own database, changed directly with SQL (as the
ERP's own programs would): each change is reported once, with the values a read shows, and
nothing else is; the first poll takes a baseline and reports nothing."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from agent.connectors.base import CallContext
from agent.connectors.demo import DemoSession
from agent.connectors.demo.changes import GRACE_S, RecentIds
from protocol.changes import (
    Change,
    InvoiceIssued,
    OrderStatusChanged,
    PaymentRegistered,
    PriceChanged,
    StockChanged,
)
from protocol.operations.products import PricesArgs, StockArgs
from tests.contract.conftest import ErpDb


class Poller:
    """Polls like the agent does: each poll from the state the last one returned."""

    def __init__(self, session: DemoSession) -> None:
        self.session = session
        first = session.poll_changes(None)
        assert first.changes == []
        self.state = first.state

    def poll(self) -> list[Change]:
        result = self.session.poll_changes(self.state)
        self.state = result.state
        return result.changes


def _dok_columns(db: ErpDb, dok_id: int, typ: int, number: str, **extra: Any) -> None:
    values: dict[str, Any] = {
        "dok_Id": dok_id,
        "dok_Typ": typ,
        "dok_Podtyp": 0,
        "dok_MagId": 1,
        "dok_NrPelny": number,
        "dok_NrPelnyOryg": "",
        "dok_DoDokNrPelny": "",
        "dok_DataWyst": datetime(2026, 11, 22),
        "dok_DataMag": datetime(2026, 11, 22),
        "dok_WartNetto": db.stored_money(Decimal(100)),
        "dok_WartVat": db.stored_money(Decimal(23)),
        "dok_WartBrutto": db.stored_money(Decimal(123)),
        "dok_Waluta": "PLN",
        "dok_Uwagi": "",
        "dok_Podtytul": "",
        "dok_Status": 1,
        **extra,
    }
    if db.backend == "sqlite":
        for key in ("dok_DataWyst", "dok_DataMag"):
            values[key] = values[key].isoformat(sep=" ")
    columns = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    _run(db, f"INSERT INTO dok__Dokument ({columns}) VALUES ({marks})", *values.values())


def _run(db: ErpDb, sql: str, *params: object) -> None:
    """A statement that returns no rows, committed (the ERP's own programs commit too)."""
    cursor = db.conn.cursor()
    try:
        cursor.execute(sql, params)
    finally:
        cursor.close()
    if db.backend != "sqlite":
        db.conn.commit()


def _new_order(db: ErpDb, status: int = 7, external: str = "") -> int:
    dok_id = int(db.one("SELECT MAX(dok_Id) FROM dok__Dokument")[0]) + 1
    _dok_columns(db, dok_id, 16, f"ZK {dok_id}/2026", dok_Status=status, dok_NrPelnyOryg=external)
    return dok_id


def test_baseline_and_quiet_polls_report_nothing(session: DemoSession) -> None:
    poller = Poller(session)
    assert poller.poll() == []
    assert poller.poll() == []


def test_stock_change_is_reported_with_what_products_stock_shows(
    session: DemoSession, db: ErpDb
) -> None:
    poller = Poller(session)
    tw_id, sku = db.one("SELECT tw_Id, tw_Symbol FROM tw__Towar ORDER BY tw_Id")
    _run(
        db,
        "UPDATE tw_Stan SET st_Stan = ?, st_StanRez = ? WHERE st_TowId = ? AND st_MagId = 2",
        db.stored_money(Decimal(40)),
        db.stored_money(Decimal("2.5")),
        tw_id,
    )
    changes = poller.poll()
    assert len(changes) == 1
    change = changes[0]
    assert isinstance(change, StockChanged)
    assert (change.sku, change.product_id, change.warehouse) == (sku, str(tw_id), "SKL")
    assert (change.quantity, change.reserved, change.available) == (
        Decimal(40),
        Decimal("2.5"),
        Decimal("37.5"),
    )
    shown = session.execute("products.stock", StockArgs(skus=[sku]), CallContext("products.stock"))
    stock = {w.warehouse: w for w in shown.items[0].warehouses}  # type: ignore[attr-defined]
    assert stock["SKL"].available == change.available
    assert poller.poll() == []


def test_price_change_reports_every_level_as_products_prices(
    session: DemoSession, db: ErpDb
) -> None:
    poller = Poller(session)
    tw_id, sku = db.one("SELECT tw_Id, tw_Symbol FROM tw__Towar ORDER BY tw_Id DESC")
    _run(
        db,
        "UPDATE tw_Cena SET tc_CenaNetto2 = ?, tc_CenaBrutto2 = ? WHERE tc_IdTowar = ?",
        db.stored_money(Decimal("10.00")),
        db.stored_money(Decimal("12.30")),
        tw_id,
    )
    changes = poller.poll()
    assert len(changes) == 1
    change = changes[0]
    assert isinstance(change, PriceChanged)
    assert (change.sku, change.product_id) == (sku, str(tw_id))
    shown = session.execute(
        "products.prices", PricesArgs(skus=[sku]), CallContext("products.prices")
    )
    assert change.levels == shown.items[0].levels  # type: ignore[attr-defined]
    assert any(level.level == 2 and level.net == Decimal("10.00") for level in change.levels)
    assert poller.poll() == []


def test_new_invoices_are_reported_even_when_committed_late(
    session: DemoSession, db: ErpDb
) -> None:
    order_id = _new_order(db, status=8)
    poller = Poller(session)
    top = int(db.one("SELECT MAX(dok_Id) FROM dok__Dokument")[0])
    customer = int(db.one("SELECT MIN(kh_Id) FROM kh__Kontrahent")[0])
    # the later id commits first ...
    _dok_columns(db, top + 2, 21, "PA 2/2026", dok_PlatnikId=customer)
    first = poller.poll()
    assert [(c.type, c.id) for c in first] == [("invoice.issued", str(top + 2))]
    # ... and the earlier one, taken before it, after it: still reported, once
    _dok_columns(db, top + 1, 2, "FS 1/2026", dok_PlatnikId=customer, dok_DoDokId=order_id)
    second = poller.poll()
    assert len(second) == 1
    invoice = second[0]
    assert isinstance(invoice, InvoiceIssued)
    assert (invoice.id, invoice.kind, invoice.number) == (str(top + 1), "FS", "FS 1/2026")
    assert (invoice.customer_id, invoice.order_id) == (str(customer), str(order_id))
    assert (invoice.net, invoice.vat, invoice.gross) == (
        Decimal("100.00"),
        Decimal("23.00"),
        Decimal("123.00"),
    )
    assert poller.poll() == []


def test_new_payment_is_reported(session: DemoSession, db: ErpDb) -> None:
    poller = Poller(session)
    dok_id, number, customer = db.one(
        "SELECT dok_Id, dok_NrPelny, dok_PlatnikId FROM dok__Dokument WHERE dok_Typ = 2"
        " ORDER BY dok_Id"
    )
    paid_on = datetime(2026, 11, 21)
    _run(
        db,
        "INSERT INTO nz_FinanseSplata (nzs_Id, nzs_IdDokumentu, nzs_IdObiektu, nzs_Kwota,"
        " nzs_Waluta, nzs_Data, nzs_FormaPlatnosci, nzs_Opis) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        7001,
        dok_id,
        customer,
        db.stored_money(Decimal("50.5")),
        "PLN",
        paid_on.isoformat(sep=" ") if db.backend == "sqlite" else paid_on,
        "przelew",
        "ref-1",
    )
    changes = poller.poll()
    assert len(changes) == 1
    payment = changes[0]
    assert isinstance(payment, PaymentRegistered)
    assert (payment.id, payment.document_id, payment.document_number) == (
        "7001",
        str(dok_id),
        number,
    )
    assert (payment.customer_id, payment.amount, payment.paid_on, payment.method) == (
        str(customer),
        Decimal("50.50"),
        paid_on.date(),
        "przelew",
    )
    assert poller.poll() == []


def test_order_status_change_and_new_order(session: DemoSession, db: ErpDb) -> None:
    dok_id = _new_order(db)
    poller = Poller(session)
    _run(db, "UPDATE dok__Dokument SET dok_Status = 8 WHERE dok_Id = ?", dok_id)
    new_id = _new_order(db, external="SHOP-1")
    changes = poller.poll()
    assert all(isinstance(c, OrderStatusChanged) for c in changes)
    seen = {(c.id, c.previous_status, c.status) for c in changes}  # type: ignore[union-attr]
    assert seen == {(str(dok_id), "open", "completed"), (str(new_id), None, "open")}
    new = next(c for c in changes if c.id == str(new_id))  # type: ignore[union-attr]
    assert isinstance(new, OrderStatusChanged)
    assert (new.number, new.external_number) == (f"ZK {new_id}/2026", "SHOP-1")
    assert poller.poll() == []
    _run(db, "UPDATE dok__Dokument SET dok_Status = 6 WHERE dok_Id = ?", new_id)
    assert [(c.id, c.previous_status, c.status) for c in poller.poll()] == [  # type: ignore[union-attr]
        (str(new_id), "open", "offer")
    ]


def test_recent_ids_settle_after_the_grace_period() -> None:
    window = RecentIds.baseline(100, now_s=0.0)
    window, new = window.advance([95, 100], now_s=0.0)
    assert new == [95, 100] and window.floor == 0
    window, new = window.advance([95, 100, 102], now_s=10.0)
    assert new == [102]
    window, new = window.advance([95, 100, 101, 102], now_s=20.0)
    assert new == [101]  # committed after a higher id: still new
    window, _ = window.advance([95, 100, 101, 102], now_s=20.0 + GRACE_S)
    assert window.floor == 102 and window.seen == frozenset()
