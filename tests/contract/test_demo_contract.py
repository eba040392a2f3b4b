"""Every catalogue operation through `DemoConnector.open_session().execute`, checked against the
tables themselves, on every backend of `conftest.BACKENDS` (SQLite, and MariaDB through ODBC).

Each test gets its own copy of one seeded database, so writes never leak between tests. Expected
values are read through a plain DB-API connection (`ErpDb`), not through the connector's SQL, so
the two must agree independently.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from agent.connectors import registry
from agent.connectors.base import (
    CallContext,
    Conflict,
    CustomerBlocked,
    ErpUnavailable,
    InsufficientStock,
    NotFound,
    Unsupported,
)
from agent.connectors.demo import DemoConnector, DemoSession
from protocol.operations.catalogue import CATALOGUE, WRITE_OPERATIONS
from protocol.operations.identifiers import ean13_check_digit
from tests.contract.conftest import TODAY, ErpDb

CENT = Decimal("0.01")


def plain(value: Decimal) -> str:
    return format(value.normalize(), "f")


def grosz(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def call(
    session: DemoSession, operation: str, *, deadline_s: float | None = None, **arguments: Any
) -> Any:
    """Validate like the agent does, execute, and check the result's type."""
    spec = CATALOGUE[operation]
    deadline = None if deadline_s is None else time.monotonic() + deadline_s
    result: BaseModel = session.execute(
        operation, spec.args.model_validate(arguments), CallContext(operation, deadline=deadline)
    )
    assert isinstance(result, spec.result)
    spec.result.model_validate_json(result.model_dump_json())  # survives the wire
    return result


def stock_row(db: ErpDb, sku: str, mag: str = "MAG") -> tuple[Decimal, Decimal]:
    row = db.one(
        "SELECT st_Stan, st_StanRez FROM tw_Stan JOIN tw__Towar ON tw_Id = st_TowId"
        " JOIN sl_Magazyn ON mag_Id = st_MagId WHERE tw_Symbol = ? AND mag_Symbol = ?",
        sku,
        mag,
    )
    return db.money(row[0]), db.money(row[1])


def sku_with_free_stock(db: ErpDb, at_least: int = 5, skip: int = 0) -> str:
    row = db.one(
        "SELECT tw_Symbol FROM tw__Towar JOIN tw_Stan ON st_TowId = tw_Id AND st_MagId = 1"
        " WHERE tw_Zablokowany = 0 AND st_Stan - st_StanRez >= ? ORDER BY tw_Id LIMIT 1 OFFSET ?",
        db.stored_money(at_least),
        skip,
    )
    return str(row[0])


def customer_with_open_receivables(db: ErpDb) -> int:
    row = db.one(
        "SELECT nzf_IdObiektu FROM nz__Finanse JOIN kh__Kontrahent ON kh_Id = nzf_IdObiektu"
        " WHERE nzf_Wartosc > 0 AND nzf_TerminPlatnosci < ? AND kh_MaxWartKred > 0"
        " GROUP BY nzf_IdObiektu ORDER BY count(*) DESC LIMIT 1",
        TODAY.isoformat(),
    )
    return int(row[0])


def active_customer(db: ErpDb, level: int = 2) -> int:
    row = db.one(
        "SELECT kh_Id FROM kh__Kontrahent WHERE kh_Zablokowany = 0 AND kh_Cena = ?"
        " ORDER BY kh_Id LIMIT 1",
        level,
    )
    return int(row[0])


# -- connector ---------------------------------------------------------------------------------


def test_info_advertises_every_connector_operation(connector: DemoConnector) -> None:
    # operations.status is the agent's own (its journal answers it), not a connector's
    info = connector.info()
    assert info.name == "demo"
    assert info.operations == frozenset(CATALOGUE) - {"operations.status"}
    assert registry.load("demo") is DemoConnector


def test_from_config_creates_and_seeds_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "new" / "erp.sqlite"
    path.parent.mkdir()
    with pytest.raises(ValueError, match="does not exist"):
        DemoConnector.from_config({"path": str(path), "seed": False})
    with pytest.raises(ValueError, match="exactly one"):
        DemoConnector.from_config({})
    with pytest.raises(ValueError, match="exactly one"):
        DemoConnector.from_config({"path": str(path), "url": "sqlite://"})
    with pytest.raises(ValueError, match="seed"):
        DemoConnector.from_config({"path": str(path), "seed": "yes"})
    connector = DemoConnector.from_config({"path": str(path)})
    try:
        assert path.exists()
        assert connector.check()[0].ok
    finally:
        connector.close()


def test_from_config_accepts_a_url(erp_url: str) -> None:
    connector = DemoConnector.from_config({"url": erp_url})
    try:
        session = connector.open_session()
        try:
            assert call(session, "customers.get", id="1").id == "1"
            assert connector.info().operations == frozenset(CATALOGUE) - WRITE_OPERATIONS - {
                "operations.status"
            }
            with pytest.raises(Unsupported):
                call(session, "customers.create", name="Tylko Odczyt")
        finally:
            session.close()
    finally:
        connector.close()


def test_ping_reads_the_database_clock(session: DemoSession) -> None:
    result = call(session, "ping")
    assert result.connector == "demo"
    assert "Subiekt GT" in result.erp
    assert result.database_time is not None
    assert abs(result.database_time.timestamp() - time.time()) < 120


# -- customers ---------------------------------------------------------------------------------


def test_customers_get_by_id_symbol_and_nip(session: DemoSession, db: ErpDb) -> None:
    kh_id, symbol, email, name, nip, city, limit = db.one(
        "SELECT kh_Id, kh_Symbol, kh_EMail, adr_Nazwa, adr_NIP, adr_Miejscowosc, kh_MaxWartKred"
        " FROM kh__Kontrahent JOIN adr__Ewid ON adr_IdObiektu = kh_Id AND adr_TypAdresu = 1"
        " WHERE adr_NIP != '' AND kh_MaxWartKred > 0 ORDER BY kh_Id LIMIT 1",
    )
    by_id = call(session, "customers.get", id=str(kh_id))
    assert (by_id.symbol, by_id.email, by_id.name, by_id.nip) == (symbol, email, name, nip)
    assert by_id.address.city == city
    assert by_id.kind == "company"
    assert by_id.credit_limit == db.money(limit)
    assert call(session, "customers.get", symbol=symbol) == by_id
    dashed = f"{nip[:3]}-{nip[3:6]}-{nip[6:8]}-{nip[8:]}"
    assert call(session, "customers.get", nip=f"PL {dashed}") == by_id
    refs: list[dict[str, Any]] = [
        {"id": "999999"},
        {"id": "abc"},
        {"symbol": "NO SUCH"},
        {"nip": "5260001246"},
    ]
    for ref in refs:
        with pytest.raises(NotFound):
            call(session, "customers.get", **ref)


def test_customers_search_prefix_email_city_and_paging(session: DemoSession, db: ErpDb) -> None:
    name, email, city = db.one(
        "SELECT adr_Nazwa, kh_EMail, adr_Miejscowosc FROM kh__Kontrahent"
        " JOIN adr__Ewid ON adr_IdObiektu = kh_Id AND adr_TypAdresu = 1"
        " WHERE adr_Nazwa LIKE 'Ś%' OR adr_Nazwa LIKE 'Ł%' OR adr_Nazwa LIKE 'Ż%' LIMIT 1",
    )
    found = call(session, "customers.search", query=name[:3].lower(), limit=200)
    assert any(c.name == name for c in found.items), "Polish capitals fold like Polish_CI_AS"
    assert all(
        c.name.lower().startswith(name[:3].lower()) or c.symbol.lower().startswith(name[:3].lower())
        for c in found.items
    )
    by_mail = call(session, "customers.search", query=email.upper())
    assert [c.email for c in by_mail.items] == [email]
    in_city = call(session, "customers.search", city=city.upper(), limit=200)
    total_in_city = db.one("SELECT count(*) FROM adr__Ewid WHERE adr_Miejscowosc = ?", city)[0]
    assert len(in_city.items) == total_in_city
    assert all(c.address.city == city for c in in_city.items)
    page1 = call(session, "customers.search", limit=50)
    page2 = call(session, "customers.search", limit=50, offset=page1.next_offset)
    assert page1.next_offset == 50
    assert not {c.id for c in page1.items} & {c.id for c in page2.items}
    count = db.one("SELECT count(*) FROM kh__Kontrahent")[0]
    last = call(session, "customers.search", limit=50, offset=count - 10)
    assert len(last.items) == 10
    assert last.next_offset is None
    assert call(session, "customers.search", query="100%_[x").items == []


def test_customers_balance_matches_receivables(session: DemoSession, db: ErpDb) -> None:
    kh_id = customer_with_open_receivables(db)
    rows = db.all(
        "SELECT nzf_IdDokumentAuto, nzf_Wartosc, nzf_WartoscPierwotna, nzf_TerminPlatnosci"
        " FROM nz__Finanse WHERE nzf_IdObiektu = ? AND nzf_Typ = 39 AND nzf_TypObiektu = 1"
        " AND nzf_Wartosc > 0",
        kh_id,
    )
    limit = db.money(db.one("SELECT kh_MaxWartKred FROM kh__Kontrahent WHERE kh_Id = ?", kh_id)[0])
    receivables = sum((db.money(r[1]) for r in rows), Decimal(0))
    overdue_rows = [r for r in rows if db.day(r[3]) < TODAY]
    overdue = sum((db.money(r[1]) for r in overdue_rows), Decimal(0))
    balance = call(session, "customers.balance", id=str(kh_id))
    assert balance.customer_id == str(kh_id)
    assert balance.receivables == receivables
    assert balance.overdue == overdue > 0
    assert balance.credit_limit == limit
    assert balance.credit_available == max(limit - receivables, Decimal(0))
    assert len(balance.open_documents) == len(rows)
    by_id = {d.id: d for d in balance.open_documents}
    for dok_id, open_raw, amount_raw, due in rows:
        doc = by_id[str(dok_id)]
        assert doc.open == db.money(open_raw)
        assert doc.amount == db.money(amount_raw)
        assert doc.overdue_days == max((TODAY - db.day(due)).days, 0)
        assert doc.number.startswith("FS ")
    person = db.one("SELECT kh_Id FROM kh__Kontrahent WHERE kh_Osoba = 1 LIMIT 1")[0]
    empty = call(session, "customers.balance", id=str(person))
    assert (empty.receivables, empty.open_documents, empty.credit_limit) == (0, [], None)


def test_customers_create_allocates_ids_through_ins_ident(session: DemoSession, db: ErpDb) -> None:
    before = dict(db.all("SELECT ido_nazwa, ido_wartosc FROM ins_ident"))
    created = call(
        session,
        "customers.create",
        name="Pracownia Ćwiczeń Źródlanych",
        full_name="Pracownia Ćwiczeń Źródlanych sp. z o.o.",
        nip="PL 526-000-12-46",
        email="kontakt@pracownia.pl",
        phone="+48 600 100 200",
        address={
            "street": "Żwirki i Wigury",
            "building": "7",
            "postal_code": "02-092",
            "city": "Warszawa",
        },
    )
    assert created.id == str(before["kh__Kontrahent"] + 1)
    assert created.symbol  # generated from the name
    assert created.nip == "5260001246"
    after = dict(db.all("SELECT ido_nazwa, ido_wartosc FROM ins_ident"))
    assert after["kh__Kontrahent"] == before["kh__Kontrahent"] + 1
    assert after["adr__Ewid"] == before["adr__Ewid"] + 1
    kh = db.one("SELECT kh_Symbol, kh_EMail FROM kh__Kontrahent WHERE kh_Id = ?", int(created.id))
    adr = db.one(
        "SELECT adr_Id, adr_Nazwa, adr_NazwaPelna, adr_NIP, adr_Ulica, adr_Miejscowosc"
        " FROM adr__Ewid WHERE adr_IdObiektu = ? AND adr_TypAdresu = 1",
        int(created.id),
    )
    assert kh == (created.symbol, "kontakt@pracownia.pl")
    assert adr == (
        after["adr__Ewid"],
        "Pracownia Ćwiczeń Źródlanych",
        "Pracownia Ćwiczeń Źródlanych sp. z o.o.",
        "5260001246",
        "Żwirki i Wigury",
        "Warszawa",
    )
    assert call(session, "customers.get", nip="5260001246") == created

    with pytest.raises(Conflict, match="NIP"):
        call(session, "customers.create", name="Kto Inny", nip="5260001246")
    with pytest.raises(Conflict, match="symbol"):
        call(session, "customers.create", name="Kto Inny", symbol=created.symbol)
    with pytest.raises(Conflict, match="longer"):
        call(session, "customers.create", name="X", symbol="S" * 21)
    person = call(session, "customers.create", name="Jan Kowalski", kind="person", symbol="JKOW")
    assert (person.kind, person.symbol, person.nip) == ("person", "JKOW", None)
    count = db.one("SELECT count(*) FROM kh__Kontrahent WHERE kh_Id > ?", before["kh__Kontrahent"])
    assert count[0] == 2


def test_polish_text_round_trips_as_unicode(session: DemoSession, db: ErpDb) -> None:
    """Polish letters written by the connector are stored as those letters (no code page on the
    way, ODBC included), read back unchanged, and found again through bound parameters."""
    name = "Źdźbło Łódź sp. z o.o."
    full_name = "Źdźbło Łódź spółka z o.o. — żółć, ĄĆĘŁŃÓŚŹŻ ąćęłńóśźż"
    created = call(
        session,
        "customers.create",
        name=name,
        full_name=full_name,
        address={"street": "Żółć", "building": "1", "postal_code": "90-001", "city": "Łódź"},
    )
    assert (created.name, created.full_name, created.address.city) == (name, full_name, "Łódź")
    assert created.address.street == "Żółć"
    stored = db.one(
        "SELECT adr_Nazwa, adr_NazwaPelna, adr_Ulica FROM adr__Ewid"
        " WHERE adr_IdObiektu = ? AND adr_Miejscowosc = 'Łódź' AND adr_Ulica = 'Żółć'",
        int(created.id),
    )
    assert stored == (name, full_name, "Żółć"), "the SQL text's literals match the stored text"
    assert call(session, "customers.get", id=created.id) == created
    found = call(session, "customers.search", query="źdźbło łódź", limit=200)
    assert [c.id for c in found.items] == [created.id]
    in_city = call(session, "customers.search", city="ŁÓDŹ", limit=200)
    assert created.id in {c.id for c in in_city.items}


# -- products ----------------------------------------------------------------------------------


def test_products_get_by_id_sku_and_ean(session: DemoSession, db: ErpDb) -> None:
    tw_id, sku, name, ean, unit, rate = db.one(
        "SELECT tw_Id, tw_Symbol, tw_Nazwa, tw_PodstKodKresk, tw_JednMiary, vat_Stawka"
        " FROM tw__Towar JOIN sl_StawkaVAT ON vat_Id = tw_IdVatSp WHERE tw_Id = 10",
    )
    product = call(session, "products.get", id=str(tw_id))
    assert (product.sku, product.name, product.ean, product.unit) == (sku, name, ean, unit)
    assert product.vat_rate == db.money(rate)
    assert call(session, "products.get", sku=sku) == product
    assert call(session, "products.get", ean=ean) == product
    with pytest.raises(NotFound):
        call(session, "products.get", sku="NOPE-1")
    with pytest.raises(NotFound):
        call(session, "products.get", ean="590123499999" + str(ean13_check_digit("590123499999")))


def test_products_search(session: DemoSession, db: ErpDb) -> None:
    by_prefix = call(session, "products.search", query="kaw-", limit=200)
    expected = db.one("SELECT count(*) FROM tw__Towar WHERE tw_Symbol LIKE 'KAW-%'")[0]
    assert len(by_prefix.items) == min(expected, 200)
    assert all(p.sku.startswith("KAW-") for p in by_prefix.items)
    in_name = call(session, "products.search", query="ŻURAWINA", limit=200)
    assert in_name.items
    assert all("żurawina" in p.name.lower() for p in in_name.items)
    by_ean = call(session, "products.search", query="590123400001")
    assert {p.ean[:12] for p in by_ean.items if p.ean} == {"590123400001"}
    page = call(session, "products.search", limit=7, offset=14)
    assert len(page.items) == 7
    assert page.next_offset == 21


def test_products_stock_per_warehouse(session: DemoSession, db: ErpDb) -> None:
    skus = [r[0] for r in db.all("SELECT tw_Symbol FROM tw__Towar ORDER BY tw_Id LIMIT 500")]
    result = call(session, "products.stock", skus=[*skus[:499], "NOPE-1"])
    assert [i.sku for i in result.items] == skus[:499]
    assert result.unknown_skus == ["NOPE-1"]
    for item in result.items[:50]:
        assert [w.warehouse for w in item.warehouses] == ["MAG", "SKL", "WEB"]
        for w in item.warehouses:
            quantity, reserved = stock_row(db, item.sku, w.warehouse)
            assert (w.quantity, w.reserved, w.available) == (
                quantity,
                reserved,
                quantity - reserved,
            )
        assert item.quantity == sum(w.quantity for w in item.warehouses)
        assert item.available == item.quantity - item.reserved
    only_web = call(session, "products.stock", skus=skus[:3], warehouses=["WEB"])
    assert {w.warehouse for i in only_web.items for w in i.warehouses} == {"WEB"}
    with pytest.raises(NotFound):
        call(session, "products.stock", skus=skus[:3], warehouses=["XYZ"])


def test_products_prices_levels(session: DemoSession, db: ErpDb) -> None:
    names = [n for n in db.one("SELECT * FROM tw_Parametr")[1:] if n]
    sku = "KAW-0001"
    row = db.one(
        "SELECT tc_CenaNetto1, tc_CenaBrutto1, tc_CenaNetto2, tc_CenaBrutto2, vat_Stawka"
        " FROM tw_Cena JOIN tw__Towar ON tw_Id = tc_IdTowar"
        " JOIN sl_StawkaVAT ON vat_Id = tw_IdVatSp WHERE tw_Symbol = ?",
        sku,
    )
    result = call(session, "products.prices", skus=[sku, "NOPE-1", sku])
    assert result.unknown_skus == ["NOPE-1"]
    (item,) = result.items
    assert [lv.name for lv in item.levels] == names
    assert len(item.levels) >= 3
    assert (item.levels[0].net, item.levels[0].gross) == (db.money(row[0]), db.money(row[1]))
    assert (item.levels[1].net, item.levels[1].gross) == (db.money(row[2]), db.money(row[3]))
    assert item.vat_rate == db.money(row[4])


# -- orders ------------------------------------------------------------------------------------


def test_orders_create_prices_reserves_and_numbers(session: DemoSession, db: ErpDb) -> None:
    kh_id = active_customer(db, level=2)
    sku_a, sku_b = sku_with_free_stock(db), sku_with_free_stock(db, skip=1)
    before_a, before_b = stock_row(db, sku_a), stock_row(db, sku_b)
    order = call(
        session,
        "orders.create",
        external_number="SHOP-2026-000123",
        customer={"id": str(kh_id)},
        lines=[
            {"sku": sku_a, "quantity": "3"},
            {"sku": sku_b, "quantity": "1", "price_net": "10.005"},
            {"sku": sku_a, "quantity": "1"},
        ],
        notes="Dostawa po 15:00, proszę dzwonić — Łódź",
        delivery_method="Kurier DPD",
    )
    assert order.number == "ZK 1/11/2026"
    assert (order.external_number, order.status, order.warehouse) == (
        "SHOP-2026-000123",
        "open",
        "MAG",
    )
    assert order.customer_id == str(kh_id)
    assert order.issued == TODAY
    level2 = {
        sku: (db.money(net), db.money(rate))
        for sku, net, rate in db.all(
            "SELECT tw_Symbol, tc_CenaNetto2, vat_Stawka FROM tw__Towar"
            " JOIN tw_Cena ON tc_IdTowar = tw_Id JOIN sl_StawkaVAT ON vat_Id = tw_IdVatSp"
            " WHERE tw_Symbol IN (?, ?)",
            sku_a,
            sku_b,
        )
    }
    expected_lines = [
        (sku_a, Decimal(3), level2[sku_a][0], level2[sku_a][1]),
        (sku_b, Decimal(1), Decimal("10.005"), level2[sku_b][1]),
        (sku_a, Decimal(1), level2[sku_a][0], level2[sku_a][1]),
    ]
    total_net = total_vat = Decimal(0)
    for line, (sku, qty, price, rate) in zip(order.lines, expected_lines, strict=True):
        net = grosz(qty * price)
        vat = grosz(net * rate / 100)
        assert (line.sku, line.quantity, line.price_net) == (sku, qty, price)
        assert (line.net, line.vat, line.gross) == (net, vat, net + vat)
        total_net += net
        total_vat += vat
    assert (order.net, order.vat, order.gross) == (total_net, total_vat, total_net + total_vat)

    header = db.one(
        "SELECT dok_Typ, dok_NrPelny, dok_NrPelnyOryg, dok_Uwagi, dok_WartNetto, dok_WartVat,"
        " dok_WartBrutto, dok_OdbiorcaId, dok_PlatnikId, dok_MagId, dok_Nr"
        " FROM dok__Dokument WHERE dok_Id = ?",
        int(order.id),
    )
    assert header[:4] == (
        16,
        "ZK 1/11/2026",
        "SHOP-2026-000123",
        "Dostawa po 15:00, proszę dzwonić — Łódź",
    )
    assert tuple(db.money(v) for v in header[4:7]) == (order.net, order.vat, order.gross)
    assert header[7:] == (kh_id, kh_id, 1, 1)
    assert db.one("SELECT count(*) FROM dok_Pozycja WHERE ob_DokHanId = ?", int(order.id))[0] == 3
    after_a, after_b = stock_row(db, sku_a), stock_row(db, sku_b)
    assert after_a == (before_a[0], before_a[1] + 4)
    assert after_b == (before_b[0], before_b[1] + 1)
    ident = db.one("SELECT ido_wartosc FROM ins_ident WHERE ido_nazwa = 'dok__Dokument'")[0]
    assert ident == int(order.id)

    second = call(
        session,
        "orders.create",
        external_number="SHOP-2026-000124",
        customer={"symbol": call(session, "customers.get", id=str(kh_id)).symbol},
        lines=[{"sku": sku_b, "quantity": "1"}],
        warehouse="MAG",
    )
    assert second.number == "ZK 2/11/2026"
    assert second.delivery_method is None


def test_orders_create_refuses_a_second_order_with_the_same_external_number(
    session: DemoSession, db: ErpDb
) -> None:
    kh_id = active_customer(db)
    sku = sku_with_free_stock(db)
    args: dict[str, Any] = {
        "external_number": "SHOP-1",
        "customer": {"id": str(kh_id)},
        "lines": [{"sku": sku, "quantity": "1"}],
    }
    first = call(session, "orders.create", **args)
    reserved = stock_row(db, sku)[1]
    with pytest.raises(Conflict) as caught:
        call(session, "orders.create", **args)
    assert caught.value.details["order_id"] == first.id
    assert stock_row(db, sku)[1] == reserved
    assert db.one("SELECT count(*) FROM dok__Dokument WHERE dok_NrPelnyOryg = 'SHOP-1'")[0] == 1


def test_orders_create_with_a_new_customer_in_the_same_transaction(
    session: DemoSession, db: ErpDb
) -> None:
    sku = sku_with_free_stock(db)
    customers = db.one("SELECT count(*) FROM kh__Kontrahent")[0]
    new = {"name": "Sklep Pod Różą", "nip": "5260001246", "email": "roza@example.pl"}
    with pytest.raises(InsufficientStock, match="not enough stock"):
        call(
            session,
            "orders.create",
            external_number="WEB-9",
            new_customer=new,
            lines=[{"sku": sku, "quantity": "999999"}],
        )
    assert db.one("SELECT count(*) FROM kh__Kontrahent")[0] == customers, "rolled back too"
    order = call(
        session,
        "orders.create",
        external_number="WEB-9",
        new_customer=new,
        lines=[{"sku": sku, "quantity": "1"}],
    )
    customer = call(session, "customers.get", nip="5260001246")
    assert order.customer_id == customer.id
    level1 = db.money(
        db.one(
            "SELECT tc_CenaNetto1 FROM tw_Cena JOIN tw__Towar ON tw_Id = tc_IdTowar"
            " WHERE tw_Symbol = ?",
            sku,
        )[0]
    )
    assert order.lines[0].price_net == level1, "a new customer buys at level 1"


def test_orders_create_refusals(session: DemoSession, db: ErpDb) -> None:
    sku = sku_with_free_stock(db)
    kh_id = active_customer(db)
    blocked = db.one("SELECT kh_Id FROM kh__Kontrahent WHERE kh_Zablokowany = 1 LIMIT 1")[0]
    free = stock_row(db, sku)
    with pytest.raises(CustomerBlocked, match="blocked"):
        call(
            session,
            "orders.create",
            external_number="B-1",
            customer={"id": str(blocked)},
            lines=[{"sku": sku, "quantity": "1"}],
        )
    with pytest.raises(NotFound) as unknown:
        call(
            session,
            "orders.create",
            external_number="B-2",
            customer={"id": str(kh_id)},
            lines=[{"sku": sku, "quantity": "1"}, {"sku": "NOPE-1", "quantity": "1"}],
        )
    assert unknown.value.details == {"unknown_skus": ["NOPE-1"]}
    with pytest.raises(NotFound):
        call(
            session,
            "orders.create",
            external_number="B-3",
            customer={"id": "999999"},
            lines=[{"sku": sku, "quantity": "1"}],
        )
    with pytest.raises(NotFound):
        call(
            session,
            "orders.create",
            external_number="B-4",
            customer={"id": str(kh_id)},
            lines=[{"sku": sku, "quantity": "1"}],
            warehouse="XYZ",
        )
    with pytest.raises(InsufficientStock) as short:
        call(
            session,
            "orders.create",
            external_number="B-5",
            customer={"id": str(kh_id)},
            lines=[{"sku": sku, "quantity": "1"}, {"sku": sku, "quantity": str(free[0])}],
        )
    assert short.value.details == {
        "lines": [
            {"sku": sku, "requested": plain(free[0] + 1), "available": plain(free[0] - free[1])}
        ]
    }
    with pytest.raises(Conflict, match="notes"):
        call(
            session,
            "orders.create",
            external_number="B-6",
            customer={"id": str(kh_id)},
            lines=[{"sku": sku, "quantity": "1"}],
            notes="x" * 501,
        )
    assert db.one("SELECT count(*) FROM dok__Dokument WHERE dok_Typ = 16")[0] == 0
    assert stock_row(db, sku) == free


def test_order_failing_on_its_second_line_leaves_nothing(
    session: DemoSession, db: ErpDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    sku_a, sku_b = sku_with_free_stock(db), sku_with_free_stock(db, skip=1)
    before = (stock_row(db, sku_a), stock_row(db, sku_b))
    idents = db.all("SELECT * FROM ins_ident ORDER BY 1")
    real = DemoSession._write_line
    calls = []

    def failing(self: DemoSession, *args: Any, **kwargs: Any) -> None:
        calls.append(kwargs["lp"])
        if kwargs["lp"] == 2:
            raise Conflict("not enough stock")  # as if another order took it meanwhile
        real(self, *args, **kwargs)

    monkeypatch.setattr(DemoSession, "_write_line", failing)
    with pytest.raises(Conflict):
        call(
            session,
            "orders.create",
            external_number="ATOM-1",
            customer={"id": str(active_customer(db))},
            lines=[{"sku": sku_a, "quantity": "2"}, {"sku": sku_b, "quantity": "2"}],
        )
    assert calls == [1, 2]
    assert db.one("SELECT count(*) FROM dok__Dokument WHERE dok_Typ = 16")[0] == 0
    assert (
        db.one(
            "SELECT count(*) FROM dok_Pozycja WHERE ob_DokHanId NOT IN"
            " (SELECT dok_Id FROM dok__Dokument)",
        )[0]
        == 0
    )
    assert (stock_row(db, sku_a), stock_row(db, sku_b)) == before
    assert db.all("SELECT * FROM ins_ident ORDER BY 1") == idents


def test_concurrent_orders_never_oversell(connector: DemoConnector, db: ErpDb) -> None:
    sku = sku_with_free_stock(db)
    stock, reserved = stock_row(db, sku)
    available = int(stock - reserved)
    kh_id = active_customer(db)
    threads = min(available + 3, 12)
    outcomes: list[str] = []
    lock = threading.Lock()

    def order(n: int) -> None:
        session = connector.open_session()
        try:
            call(
                session,
                "orders.create",
                external_number=f"RACE-{n}",
                customer={"id": str(kh_id)},
                lines=[{"sku": sku, "quantity": "1"}],
            )
            result = "ok"
        except Conflict:
            result = "conflict"
        finally:
            session.close()
        with lock:
            outcomes.append(result)

    workers = [threading.Thread(target=order, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=30)
    assert outcomes.count("ok") == min(threads, available)
    assert stock_row(db, sku) == (stock, reserved + min(threads, available))
    numbers = [r[0] for r in db.all("SELECT dok_NrPelny FROM dok__Dokument WHERE dok_Typ = 16")]
    assert len(set(numbers)) == len(numbers) == outcomes.count("ok")


def test_orders_get_by_id_number_and_external_number(session: DemoSession, db: ErpDb) -> None:
    created = call(
        session,
        "orders.create",
        external_number="GET-1",
        customer={"id": str(active_customer(db))},
        lines=[{"sku": sku_with_free_stock(db), "quantity": "2"}],
    )
    assert call(session, "orders.get", id=created.id) == created
    assert call(session, "orders.get", number=created.number) == created
    assert call(session, "orders.get", external_number="GET-1") == created
    fs_id = db.one("SELECT dok_Id FROM dok__Dokument WHERE dok_Typ = 2 LIMIT 1")[0]
    refs: list[dict[str, Any]] = [
        {"id": str(fs_id)},
        {"id": "x1"},
        {"number": "ZK 99/01/2020"},
        {"external_number": "NOPE"},
    ]
    for ref in refs:
        with pytest.raises(NotFound):
            call(session, "orders.get", **ref)


# -- invoices ----------------------------------------------------------------------------------


def test_invoices_list_range_unpaid_and_paging(session: DemoSession, db: ErpDb) -> None:
    kh_id = customer_with_open_receivables(db)
    rows = db.all(
        "SELECT dok_Id, dok_NrPelny, dok_DataWyst, dok_WartBrutto, coalesce(nzf_Wartosc, 0)"
        " FROM dok__Dokument LEFT JOIN nz__Finanse ON nzf_IdDokumentAuto = dok_Id AND nzf_Typ = 39"
        " WHERE dok_PlatnikId = ? AND dok_Typ IN (2, 21) ORDER BY dok_DataWyst DESC, dok_Id DESC",
        kh_id,
    )
    everything = call(session, "invoices.list", customer={"id": str(kh_id)}, limit=200)
    assert [i.id for i in everything.items] == [str(r[0]) for r in rows]
    for item, row in zip(everything.items, rows, strict=True):
        assert (item.number, item.gross, item.open) == (row[1], db.money(row[3]), db.money(row[4]))
        assert item.paid == (row[4] == 0)
        assert item.kind == "FS"
        assert item.net + item.vat == item.gross
    unpaid = call(
        session, "invoices.list", customer={"id": str(kh_id)}, unpaid_only=True, limit=200
    )
    assert [i.id for i in unpaid.items] == [str(r[0]) for r in rows if r[4] > 0]
    start, end = TODAY - timedelta(days=90), TODAY - timedelta(days=30)
    ranged = call(
        session,
        "invoices.list",
        customer={"id": str(kh_id)},
        date_from=start.isoformat(),
        date_to=end.isoformat(),
        limit=200,
    )
    assert [i.id for i in ranged.items] == [str(r[0]) for r in rows if start <= db.day(r[2]) <= end]
    page = call(session, "invoices.list", customer={"id": str(kh_id)}, limit=2, offset=1)
    assert [i.id for i in page.items] == [str(r[0]) for r in rows[1:3]]
    assert page.next_offset == (3 if len(rows) > 3 else None)
    person = db.one("SELECT dok_PlatnikId FROM dok__Dokument WHERE dok_Typ = 21 LIMIT 1")[0]
    receipts = call(session, "invoices.list", customer={"id": str(person)}, limit=200)
    assert receipts.items
    assert all(i.paid for i in receipts.items if i.kind == "PA")
    with pytest.raises(NotFound):
        call(session, "invoices.list", customer={"symbol": "NO SUCH"})


# -- failures ----------------------------------------------------------------------------------


def test_locked_database_is_erp_unavailable(erp_db: tuple[str, str], db: ErpDb) -> None:
    """A writer that cannot get its locks in time fails as retryable and the session goes on:
    SQLite's busy timeout ends the wait there, the statement limit set on the server from the
    call's deadline ends it on MariaDB."""
    connector = DemoConnector(erp_db[0], seed=False, busy_timeout_ms=100)
    session = connector.open_session()
    try:
        with db.write_lock(), pytest.raises(ErpUnavailable):
            call(session, "customers.create", deadline_s=1, name="Zablokowana Baza")
        assert call(session, "customers.create", name="Odblokowana Baza").name == "Odblokowana Baza"
    finally:
        session.close()
        connector.close()


def test_interrupt_aborts_the_running_statement(
    sqlite_only: None, session: DemoSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import literal_column, select

    from agent.connectors.demo import queries

    endless: Any = select(literal_column("CURRENT_TIMESTAMP")).where(
        literal_column(
            "(WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c"
            " WHERE x < 1000000000) SELECT max(x) FROM c)"
        )
        > 0
    )
    monkeypatch.setattr(queries, "database_time", lambda: endless)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            call(session, "ping")
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 10
    while worker.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
        session.interrupt()
    worker.join(timeout=5)
    assert not worker.is_alive()
    assert len(errors) == 1
    assert isinstance(errors[0], ErpUnavailable)
    assert "interrupted" in errors[0].message
    assert call(session, "customers.get", id="1").id == "1", "the session still works"
