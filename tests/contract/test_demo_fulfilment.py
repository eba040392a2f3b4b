"""The order's life after ``orders.create`` on the demo ERP, checked in the ERP tables themselves.

Each step reads the documents, lines, reservations, stock, receivables and payments back through
a plain DB-API connection (`ErpDb`), not through the connector. Runs on every backend of the
contract suite.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from agent.connectors.base import CallContext, ConnectorError
from agent.connectors.demo import DemoSession
from agent.connectors.demo.keys import key_token
from protocol.errors import ErrorCode
from protocol.operations.catalogue import CATALOGUE
from protocol.operations.fulfilment import Complaint, Payment, Return, SalesDocument
from protocol.operations.orders import Order
from tests.contract.conftest import TODAY, ErpDb

_keys = iter(range(1, 1_000_000))


def _run(session: DemoSession, operation: str, key: str | None = None, **args: Any) -> Any:
    model = CATALOGUE[operation].args.model_validate(args)
    if key is None and CATALOGUE[operation].writes:
        key = f"erpkid_t:{operation}-{next(_keys)}"
    return session.execute(operation, model, CallContext(operation, key))


def _refused(session: DemoSession, operation: str, **args: Any) -> ConnectorError:
    with pytest.raises(ConnectorError) as caught:
        _run(session, operation, **args)
    return caught.value


def _change(db: ErpDb, sql: str, *params: object) -> None:
    """Change the ERP behind the connector's back, as a person in the ERP would."""
    cursor = db.conn.cursor()
    try:
        cursor.execute(sql, params)
    finally:
        cursor.close()


def _skus(db: ErpDb, count: int) -> list[str]:
    rows = db.all(
        "SELECT tw_Symbol FROM tw__Towar JOIN tw_Stan ON st_TowId = tw_Id AND st_MagId = 1 "
        "WHERE tw_Zablokowany = 0 AND st_Stan - st_StanRez >= ? ORDER BY tw_Id",
        db.stored_money(20),
    )
    return [str(row[0]) for row in rows[:count]]


def _company(db: ErpDb) -> int:
    """A company that is not blocked, has a NIP and buys without a credit limit."""
    row = db.one(
        "SELECT kh_Id FROM kh__Kontrahent JOIN adr__Ewid ON adr_IdObiektu = kh_Id "
        "AND adr_TypAdresu = 1 WHERE kh_Zablokowany = 0 AND kh_Osoba = 0 AND adr_NIP <> '' "
        "ORDER BY kh_Id"
    )
    kh_id = int(row[0])
    _change(db, "UPDATE kh__Kontrahent SET kh_PlatOdroczone = 0 WHERE kh_Id = ?", kh_id)
    return kh_id


def _order(session: DemoSession, db: ErpDb, external: str, kh_id: int | None = None) -> Order:
    a, b = _skus(db, 2)
    return _run(
        session,
        "orders.create",
        external_number=external,
        customer={"id": str(kh_id or _company(db))},
        warehouse="MAG",
        lines=[{"sku": a, "quantity": "2"}, {"sku": b, "quantity": "3"}],
    )


def _stock(db: ErpDb, sku: str, mag_id: int = 1) -> tuple[Decimal, Decimal]:
    row = db.one(
        "SELECT st_Stan, st_StanRez FROM tw_Stan JOIN tw__Towar ON tw_Id = st_TowId "
        "WHERE tw_Symbol = ? AND st_MagId = ?",
        sku,
        mag_id,
    )
    return db.money(row[0]), db.money(row[1])


def _status(db: ErpDb, dok_id: str) -> int:
    return int(db.one("SELECT dok_Status FROM dok__Dokument WHERE dok_Id = ?", int(dok_id))[0])


def _receivable(db: ErpDb, dok_id: str) -> tuple[Decimal, Decimal, Decimal]:
    row = db.one(
        "SELECT nzf_WartoscPierwotna, nzf_Wartosc, nzf_Splata FROM nz__Finanse "
        "WHERE nzf_IdDokumentAuto = ? AND nzf_Typ = 39",
        int(dok_id),
    )
    return db.money(row[0]), db.money(row[1]), db.money(row[2])


def test_status_is_kept_on_the_order_and_read_back(session: DemoSession, db: ErpDb) -> None:
    order = _order(session, db, "SHOP-F-ST")
    assert order.shop_status is None
    updated = _run(session, "orders.update_status", order={"id": order.id}, status="packed")
    assert updated.shop_status == "packed"
    again = _run(session, "orders.update_status", order={"id": order.id}, status="shipped")
    assert again.shop_status == "shipped"
    assert _run(session, "orders.get", id=order.id).shop_status == "shipped"
    rows = db.all("SELECT flw_Komentarz FROM fl_Wartosc WHERE flw_IdObiektu = ?", int(order.id))
    assert rows == [("shipped",)]
    assert _status(db, order.id) == 7  # the ERP's own status is untouched


def test_cancel_releases_every_reservation_and_is_idempotent(
    session: DemoSession, db: ErpDb
) -> None:
    a, b = _skus(db, 2)
    before = {sku: _stock(db, sku) for sku in (a, b)}
    order = _order(session, db, "SHOP-F-CA")
    assert _stock(db, a)[1] == before[a][1] + 2
    cancelled = _run(session, "orders.cancel", order={"external_number": "SHOP-F-CA"})
    assert cancelled.status == "cancelled"
    assert _status(db, order.id) == 9
    assert {sku: _stock(db, sku) for sku in (a, b)} == before
    again = _run(session, "orders.cancel", order={"id": order.id})  # a new key
    assert again == cancelled
    assert {sku: _stock(db, sku) for sku in (a, b)} == before
    refused = _refused(session, "orders.fulfil", order={"id": order.id}, kind="FS")
    assert refused.code is ErrorCode.INVALID_STATE
    assert refused.details["status"] == "cancelled"
    paid = _refused(
        session, "payments.register", order={"id": order.id}, amount="1.00", method="card"
    )
    assert paid.code is ErrorCode.INVALID_STATE


def test_prepaid_order_fulfilled_with_an_invoice(session: DemoSession, db: ErpDb) -> None:
    kh_id = _company(db)
    a, b = _skus(db, 2)
    stock_before = {sku: _stock(db, sku) for sku in (a, b)}
    order = _order(session, db, "SHOP-F-FS", kh_id)
    payment = _run(
        session,
        "payments.register",
        "erpkid_t:pay-1",
        order={"id": order.id},
        amount="10.00",
        paid_on="2026-11-20",
        method="transfer",
        reference="PAYU-1",
    )
    assert isinstance(payment, Payment)
    assert (payment.order_id, payment.document_id) == (order.id, None)
    assert payment.open == order.gross - Decimal("10.00")
    stored = db.one(
        "SELECT nzs_IdFinanse, nzs_IdDokumentu, nzs_IdObiektu, nzs_Kwota, nzs_FormaPlatnosci, "
        "nzs_Opis, nzs_TransakcjaSymbol FROM nz_FinanseSplata WHERE nzs_Id = ?",
        int(payment.id),
    )
    assert stored[:3] == (None, int(order.id), kh_id)
    assert db.money(stored[3]) == Decimal("10.00")
    assert stored[4:] == ("transfer", "PAYU-1", key_token("erpkid_t:pay-1", 30))
    too_much = _refused(
        session, "payments.register", order={"id": order.id}, amount=str(order.gross), method="x"
    )
    assert too_much.code is ErrorCode.CONFLICT
    assert too_much.details["open"] == str(payment.open)

    document = _run(session, "orders.fulfil", "erpkid_t:fs-1", order={"id": order.id}, kind="FS")
    assert isinstance(document, SalesDocument)
    assert (document.kind, document.order_id, document.order_number) == (
        "FS",
        order.id,
        order.number,
    )
    assert (document.net, document.vat, document.gross) == (order.net, order.vat, order.gross)
    assert document.prepaid == Decimal("10.00")
    assert document.amount_due == order.gross - Decimal("10.00")
    nip, days = db.one(
        "SELECT adr_NIP, kh_MaxDniSp FROM kh__Kontrahent JOIN adr__Ewid ON adr_IdObiektu = kh_Id "
        "AND adr_TypAdresu = 1 WHERE kh_Id = ?",
        kh_id,
    )
    assert document.nip == nip
    assert (document.due - TODAY).days == days
    head = db.one(
        "SELECT dok_Typ, dok_Status, dok_DoDokId, dok_NrIdentNabywcy, dok_PlatnikId, "
        "dok_TransakcjaSymbol FROM dok__Dokument WHERE dok_Id = ?",
        int(document.id),
    )
    assert head == (2, 1, int(order.id), nip, kh_id, key_token("erpkid_t:fs-1", 30))
    lines = db.all(
        "SELECT ob_TowId, ob_Ilosc, ob_MagId, ob_WartBrutto FROM dok_Pozycja "
        "WHERE ob_DokHanId = ? ORDER BY ob_DokHanLp",
        int(document.id),
    )
    zk_lines = db.all(
        "SELECT ob_TowId, ob_Ilosc, ob_MagId, ob_WartBrutto FROM dok_Pozycja "
        "WHERE ob_DokHanId = ? ORDER BY ob_DokHanLp",
        int(order.id),
    )
    assert lines == zk_lines
    assert _status(db, order.id) == 8
    assert _stock(db, a) == (stock_before[a][0] - 2, stock_before[a][1])
    assert _stock(db, b) == (stock_before[b][0] - 3, stock_before[b][1])
    assert _receivable(db, document.id) == (
        order.gross,
        order.gross - Decimal("10.00"),
        Decimal("10.00"),
    )
    applied = db.one("SELECT nzs_IdFinanse FROM nz_FinanseSplata WHERE nzs_Id = ?", int(payment.id))
    nzf_id = db.one("SELECT nzf_Id FROM nz__Finanse WHERE nzf_IdDokumentAuto = ?", int(document.id))
    assert applied == nzf_id
    # the rest, paid against the invoice: customers.balance and invoices.list see it
    rest = _run(
        session,
        "payments.register",
        document={"number": document.number},
        amount=str(document.amount_due),
        method="transfer",
    )
    assert (rest.document_id, rest.order_id, rest.open) == (document.id, order.id, Decimal("0"))
    assert _receivable(db, document.id) == (order.gross, Decimal(0), order.gross)
    invoices = _run(session, "invoices.list", customer={"id": str(kh_id)}, date_from=TODAY)
    assert [(i.number, i.paid) for i in invoices.items] == [(document.number, True)]
    # fulfilled: neither again nor cancelled
    again = _refused(session, "orders.fulfil", order={"id": order.id}, kind="PA")
    assert again.code is ErrorCode.INVALID_STATE
    assert again.details == {"status": "completed", "documents": [document.number]}
    cancel = _refused(session, "orders.cancel", order={"id": order.id})
    assert cancel.code is ErrorCode.INVALID_STATE
    # the same key finds the document
    assert session.find_write("orders.fulfil", "erpkid_t:fs-1") == document
    found = session.find_write("payments.register", "erpkid_t:pay-1")
    assert isinstance(found, Payment)
    assert (found.id, found.order_id, found.document_id) == (payment.id, order.id, document.id)
    assert session.find_write("payments.register", "erpkid_t:other") is None
    assert session.find_write("orders.fulfil", "erpkid_t:other") is None


def test_unpaid_receipt_opens_a_receivable_due_today(session: DemoSession, db: ErpDb) -> None:
    order = _order(session, db, "SHOP-F-PA")
    document = _run(session, "orders.fulfil", order={"id": order.id}, kind="PA")
    assert (document.kind, document.due, document.nip) == ("PA", TODAY, None)
    assert (document.prepaid, document.amount_due) == (Decimal(0), order.gross)
    assert db.one("SELECT dok_Typ FROM dok__Dokument WHERE dok_Id = ?", int(document.id)) == (21,)
    assert _receivable(db, document.id) == (order.gross, order.gross, Decimal(0))


def test_fulfil_checks_what_the_erp_would(session: DemoSession, db: ErpDb) -> None:
    kh_id = _company(db)
    order = _order(session, db, "SHOP-F-CK", kh_id)
    a = order.lines[0].sku
    _change(db, "UPDATE kh__Kontrahent SET kh_Zablokowany = 1 WHERE kh_Id = ?", kh_id)
    blocked = _refused(session, "orders.fulfil", order={"id": order.id}, kind="FS")
    assert blocked.code is ErrorCode.CUSTOMER_BLOCKED
    _change(db, "UPDATE kh__Kontrahent SET kh_Zablokowany = 0 WHERE kh_Id = ?", kh_id)
    _change(
        db,
        "UPDATE kh__Kontrahent SET kh_PlatOdroczone = 1, kh_MaxWartKred = ? WHERE kh_Id = ?",
        db.stored_money(1),
        kh_id,
    )
    credit = _refused(session, "orders.fulfil", order={"id": order.id}, kind="FS")
    assert credit.code is ErrorCode.CREDIT_LIMIT_EXCEEDED
    assert credit.details["credit_limit"] == "1.00"
    assert credit.details["gross"] == str(order.gross)
    _change(db, "UPDATE kh__Kontrahent SET kh_PlatOdroczone = 0 WHERE kh_Id = ?", kh_id)
    _change(
        db,
        "UPDATE tw_Stan SET st_Stan = ? WHERE st_MagId = 1 AND st_TowId = "
        "(SELECT tw_Id FROM tw__Towar WHERE tw_Symbol = ?)",
        db.stored_money(1),
        a,
    )
    short = _refused(session, "orders.fulfil", order={"id": order.id}, kind="PA")
    assert short.code is ErrorCode.INSUFFICIENT_STOCK
    assert short.details == {"lines": [{"sku": a, "requested": "2", "available": "1"}]}
    # nothing was written by the refusals
    assert _status(db, order.id) == 7
    assert db.one("SELECT COUNT(*) FROM dok__Dokument WHERE dok_DoDokId = ?", int(order.id)) == (0,)


def test_return_restocks_reduces_the_receivable_and_owes_what_was_paid(
    session: DemoSession, db: ErpDb
) -> None:
    order = _order(session, db, "SHOP-F-RT")
    a, b = order.lines[0].sku, order.lines[1].sku
    document = _run(session, "orders.fulfil", order={"id": order.id}, kind="FS")
    stock_a = _stock(db, a)
    first = _run(
        session,
        "returns.create",
        "erpkid_t:ret-1",
        document={"id": document.id},
        lines=[{"sku": a, "quantity": "1"}],
        reason="withdrawal",
    )
    assert isinstance(first, Return)
    line_a = order.lines[0]
    net = (-line_a.price_net).quantize(Decimal("0.01"))
    assert (first.net, first.gross) == (
        net,
        net + (net * line_a.vat_rate / 100).quantize(Decimal("0.01")),
    )
    assert (first.corrects_id, first.corrects_number, first.refund_due) == (
        document.id,
        document.number,
        Decimal(0),
    )
    assert first.receivable_reduced == -first.gross
    head = db.one(
        "SELECT dok_Typ, dok_DoDokId, dok_Uwagi, dok_WartBrutto FROM dok__Dokument "
        "WHERE dok_Id = ?",
        int(first.id),
    )
    assert head[:3] == (6, int(document.id), "withdrawal")
    assert db.money(head[3]) == first.gross
    kfs_lines = db.all(
        "SELECT ob_Ilosc, ob_MagId FROM dok_Pozycja WHERE ob_DokHanId = ?", int(first.id)
    )
    assert [(db.money(q), m) for q, m in kfs_lines] == [(Decimal(-1), 1)]
    assert _stock(db, a) == (stock_a[0] + 1, stock_a[1])
    assert _receivable(db, document.id)[1] == document.gross + first.gross
    # pay the rest, then return more: what was paid is owed back as a payable
    _run(
        session,
        "payments.register",
        document={"id": document.id},
        amount=str(document.gross + first.gross),
        method="transfer",
    )
    over = _refused(
        session,
        "returns.create",
        document={"id": document.id},
        lines=[{"sku": a, "quantity": "2"}, {"sku": "NOT-SOLD", "quantity": "1"}],
        reason="x",
    )
    assert over.code is ErrorCode.CONFLICT
    assert over.details == {
        "lines": [
            {"sku": a, "requested": "2", "returnable": "1"},
            {"sku": "NOT-SOLD", "requested": "1", "returnable": "0"},
        ]
    }
    second = _run(
        session,
        "returns.create",
        document={"number": document.number},
        lines=[{"sku": b, "quantity": "3"}],
        reason="damaged",
    )
    assert (second.receivable_reduced, second.refund_due) == (Decimal(0), -second.gross)
    payable = db.one(
        "SELECT nzf_Wartosc FROM nz__Finanse WHERE nzf_IdDokumentAuto = ? AND nzf_Typ = 40",
        int(second.id),
    )
    assert db.money(payable[0]) == -second.gross
    assert session.find_write("returns.create", "erpkid_t:ret-1") == first


def test_complaint_is_registered_without_moving_stock(session: DemoSession, db: ErpDb) -> None:
    order = _order(session, db, "SHOP-F-CO")
    document = _run(session, "orders.fulfil", order={"id": order.id}, kind="PA")
    a = order.lines[0].sku
    stock = _stock(db, a)
    complaint = _run(
        session,
        "complaints.create",
        "erpkid_t:rek-1",
        document={"id": document.id},
        lines=[{"sku": a, "quantity": "1"}],
        description="The handle broke off on the first day.",
    )
    assert isinstance(complaint, Complaint)
    assert complaint.number == f"REK 1/{TODAY.month:02d}/{TODAY.year}"
    assert (complaint.document_id, complaint.document_number) == (document.id, document.number)
    assert _stock(db, a) == stock
    assert db.one(
        "SELECT rk_DokId, rk_Opis FROM rk_Reklamacja WHERE rk_Id = ?", int(complaint.id)
    ) == (
        int(document.id),
        "The handle broke off on the first day.",
    )
    assert session.find_write("complaints.create", "erpkid_t:rek-1") == complaint
    assert session.find_write("complaints.create", "erpkid_t:nothing") is None
    too_many = _refused(
        session,
        "complaints.create",
        document={"id": document.id},
        lines=[{"sku": a, "quantity": "5"}],
        description="x",
    )
    assert too_many.code is ErrorCode.CONFLICT


def test_state_changes_are_run_again_after_a_crash(session: DemoSession) -> None:
    """Status and cancel store no key; their finders say so, and running again is harmless."""
    assert session.find_write("orders.update_status", "erpkid_t:any") is None
    assert session.find_write("orders.cancel", "erpkid_t:any") is None


def test_non_positive_payment_is_refused_before_the_erp() -> None:
    model = CATALOGUE["payments.register"].args
    for amount in ("0", "-5.00"):
        with pytest.raises(ValueError, match="greater than 0"):
            model.model_validate({"order": {"id": "1"}, "amount": amount, "method": "card"})
