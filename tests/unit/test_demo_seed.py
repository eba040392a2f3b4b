"""The demo ERP's generated data: sizes, validity, consistency and determinism.

Read back with the plain ``sqlite3`` module, not through the connector's own types, so a bug in
`Money4` cannot hide a bug in the seed. Money columns hold integer 1/10,000ths there.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from agent.connectors.demo import create_demo_database
from agent.connectors.demo.schema import metadata
from protocol.operations.identifiers import is_valid_ean13, is_valid_nip

TODAY = date(2026, 11, 22)
SCALE = Decimal(10_000)


def money(raw: int) -> Decimal:
    return Decimal(raw) / SCALE


@pytest.fixture(scope="module")
def db_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("seed") / "demo.sqlite"
    create_demo_database(str(path), seed=42, today=TODAY)
    return path


@pytest.fixture
def db(db_path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(db_path)
    try:
        yield conn
    finally:
        conn.close()


def scalar(db: sqlite3.Connection, sql: str, *params: object) -> Any:
    return db.execute(sql, params).fetchone()[0]


def test_at_least_200_customers_with_valid_nips(db: sqlite3.Connection) -> None:
    assert scalar(db, "SELECT count(*) FROM kh__Kontrahent") >= 200
    rows = db.execute(
        "SELECT kh_Id, kh_Osoba, adr_NIP FROM kh__Kontrahent"
        " JOIN adr__Ewid ON adr_IdObiektu = kh_Id AND adr_TypAdresu = 1"
    ).fetchall()
    assert len(rows) == scalar(db, "SELECT count(*) FROM kh__Kontrahent"), "one main address each"
    nips = [nip for _, _, nip in rows if nip]
    assert len(nips) >= 200
    assert all(is_valid_nip(nip) for nip in nips)
    assert len(set(nips)) == len(nips)
    assert all(nip for _, person, nip in rows if not person), "every company has a NIP"
    assert {person for _, person, _ in rows} == {0, 1}, "companies and persons"


def test_customers_look_polish_and_some_are_blocked(db: sqlite3.Connection) -> None:
    names = " ".join(r[0] for r in db.execute("SELECT adr_Nazwa || adr_Miejscowosc FROM adr__Ewid"))
    assert any(ch in names for ch in "ąćęłńóśźżŁŚŻ")
    codes = [r[0] for r in db.execute("SELECT adr_Kod FROM adr__Ewid")]
    assert all(len(c) == 6 and c[2] == "-" and (c[:2] + c[3:]).isdigit() for c in codes)
    assert scalar(db, "SELECT count(*) FROM kh__Kontrahent WHERE kh_EMail LIKE '%@%.%'") >= 200
    assert 0 < scalar(db, "SELECT count(*) FROM kh__Kontrahent WHERE kh_Zablokowany = 1") < 30
    assert scalar(db, "SELECT count(*) FROM kh__Kontrahent WHERE kh_MaxWartKred > 0") > 50
    assert scalar(db, "SELECT count(DISTINCT kh_Symbol) FROM kh__Kontrahent") == scalar(
        db, "SELECT count(*) FROM kh__Kontrahent"
    )


def test_1000_products_with_valid_unique_eans_units_and_vat(db: sqlite3.Connection) -> None:
    rows = db.execute(
        "SELECT tw_Symbol, tw_PodstKodKresk, tw_JednMiary, vat_Stawka FROM tw__Towar"
        " JOIN sl_StawkaVAT ON vat_Id = tw_IdVatSp"
    ).fetchall()
    assert len(rows) == 1000
    eans = [ean for _, ean, _, _ in rows]
    assert all(is_valid_ean13(ean) for ean in eans)
    assert len(set(eans)) == 1000
    assert len({sku for sku, _, _, _ in rows}) == 1000
    assert {money(rate) for _, _, _, rate in rows} == {Decimal(23), Decimal(8), Decimal(5), 0}
    assert {"szt.", "kg", "m", "l"} <= {unit for _, _, unit, _ in rows}


def test_three_warehouses_one_main(db: sqlite3.Connection) -> None:
    rows = db.execute("SELECT mag_Symbol, mag_Glowny FROM sl_Magazyn ORDER BY mag_Id").fetchall()
    assert rows == [("MAG", 1), ("SKL", 0), ("WEB", 0)]


def test_price_levels_named_with_net_and_gross(db: sqlite3.Connection) -> None:
    names = db.execute("SELECT * FROM tw_Parametr").fetchone()[1:]
    assert len([n for n in names if n]) >= 3
    rows = db.execute(
        "SELECT tc_CenaNetto1, tc_CenaBrutto1, tc_CenaNetto2, tc_CenaBrutto2,"
        " tc_CenaNetto3, tc_CenaBrutto3, vat_Stawka FROM tw_Cena"
        " JOIN tw__Towar ON tw_Id = tc_IdTowar JOIN sl_StawkaVAT ON vat_Id = tw_IdVatSp"
    ).fetchall()
    assert len(rows) == 1000
    for row in rows:
        rate = money(row[6])
        for net_raw, gross_raw in ((row[0], row[1]), (row[2], row[3]), (row[4], row[5])):
            net, gross = money(net_raw), money(gross_raw)
            assert net > 0
            assert gross == (net * (100 + rate) / 100).quantize(Decimal("0.01"), "ROUND_HALF_UP")


def test_stock_per_product_and_warehouse_with_reservations(db: sqlite3.Connection) -> None:
    assert scalar(db, "SELECT count(*) FROM tw_Stan") == 3000
    assert scalar(db, "SELECT count(*) FROM tw_Stan WHERE st_StanRez > st_Stan") == 0
    assert scalar(db, "SELECT count(*) FROM tw_Stan WHERE st_StanRez < 0 OR st_Stan < 0") == 0
    assert scalar(db, "SELECT count(*) FROM tw_Stan WHERE st_StanRez > 0") > 300


def test_a_year_of_invoices_with_consistent_totals(db: sqlite3.Connection) -> None:
    first, last = db.execute(
        "SELECT min(dok_DataWyst), max(dok_DataWyst) FROM dok__Dokument WHERE dok_Typ = 2"
    ).fetchone()
    assert date.fromisoformat(first[:10]) <= date(2025, 11, 25)
    assert date.fromisoformat(last[:10]) >= date(2026, 11, 20)
    assert scalar(db, "SELECT count(*) FROM dok__Dokument WHERE dok_Typ = 2") > 1000
    assert scalar(db, "SELECT count(*) FROM dok__Dokument WHERE dok_Typ = 21") > 50
    mismatched = db.execute(
        "SELECT dok_Id FROM dok__Dokument JOIN dok_Pozycja ON ob_DokHanId = dok_Id"
        " GROUP BY dok_Id, dok_WartNetto, dok_WartVat, dok_WartBrutto"
        " HAVING sum(ob_WartNetto) != dok_WartNetto OR sum(ob_WartVat) != dok_WartVat"
        " OR sum(ob_WartBrutto) != dok_WartBrutto OR dok_WartNetto + dok_WartVat != dok_WartBrutto"
    ).fetchall()
    assert mismatched == []
    lines = db.execute(
        "SELECT ob_Ilosc, ob_CenaNetto, ob_WartNetto, ob_VatProc, ob_WartVat FROM dok_Pozycja"
    ).fetchall()
    for qty, price, net, rate, vat in lines[:2000]:
        expected = (money(qty) * money(price)).quantize(Decimal("0.01"), "ROUND_HALF_UP")
        assert money(net) == expected
        assert money(vat) == (expected * money(rate) / 100).quantize(
            Decimal("0.01"), "ROUND_HALF_UP"
        )
    numbers = [r[0] for r in db.execute("SELECT dok_NrPelny FROM dok__Dokument WHERE dok_Typ = 2")]
    assert len(set(numbers)) == len(numbers)
    assert "FS 1/11/2026" in numbers


def test_receivables_partly_unpaid_some_overdue(db: sqlite3.Connection) -> None:
    fs = scalar(db, "SELECT count(*) FROM dok__Dokument WHERE dok_Typ = 2")
    assert scalar(db, "SELECT count(*) FROM nz__Finanse WHERE nzf_Typ = 39") == fs
    unpaid = scalar(db, "SELECT count(*) FROM nz__Finanse WHERE nzf_Wartosc > 0")
    assert 0 < unpaid < fs
    overdue = scalar(
        db,
        "SELECT count(*) FROM nz__Finanse WHERE nzf_Wartosc > 0 AND nzf_TerminPlatnosci < ?",
        TODAY.isoformat(),
    )
    assert overdue > 10
    partial = scalar(
        db,
        "SELECT count(*) FROM nz__Finanse"
        " WHERE nzf_Wartosc > 0 AND nzf_Wartosc < nzf_WartoscPierwotna",
    )
    assert partial > 0
    bad = db.execute(
        "SELECT count(*) FROM nz__Finanse JOIN dok__Dokument ON dok_Id = nzf_IdDokumentAuto"
        " WHERE nzf_WartoscPierwotna != dok_WartBrutto OR nzf_IdObiektu != dok_PlatnikId"
        " OR nzf_TypObiektu != 1 OR nzf_Wartosc > nzf_WartoscPierwotna"
    ).fetchone()[0]
    assert bad == 0


def test_ins_ident_holds_the_last_id_of_each_table(db: sqlite3.Connection) -> None:
    idents = dict(db.execute("SELECT ido_nazwa, ido_wartosc FROM ins_ident").fetchall())
    keys = {
        "kh__Kontrahent": "kh_Id",
        "adr__Ewid": "adr_Id",
        "tw__Towar": "tw_Id",
        "dok__Dokument": "dok_Id",
        "dok_Pozycja": "ob_Id",
        "nz__Finanse": "nzf_Id",
    }
    for table, key in keys.items():
        assert idents[table] == scalar(db, f"SELECT max({key}) FROM {table}")


def _dump(path: Path) -> dict[str, list[tuple[object, ...]]]:
    conn = sqlite3.connect(path)
    try:
        return {
            name: conn.execute(f'SELECT * FROM "{name}" ORDER BY 1, 2').fetchall()
            for name in metadata.tables
        }
    finally:
        conn.close()


def test_deterministic_and_idempotent(db_path: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.sqlite"
    create_demo_database(str(again), seed=42, today=TODAY)
    assert _dump(again) == _dump(db_path)
    create_demo_database(str(again), seed=42, today=TODAY)  # already seeded: nothing happens
    assert _dump(again) == _dump(db_path)
    other = tmp_path / "other.sqlite"
    create_demo_database(str(other), seed=7, today=TODAY)
    assert _dump(other)["kh__Kontrahent"] != _dump(db_path)["kh__Kontrahent"]


def test_money_is_never_float(tmp_path: Path) -> None:
    from sqlalchemy import insert, select

    from agent.connectors.demo.engine import build_engine
    from agent.connectors.demo.schema import tw_Stan

    engine = build_engine(str(tmp_path / "m.sqlite"))
    metadata.create_all(engine)
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(tw_Stan),
                [{"st_TowId": 1, "st_MagId": 1, "st_Stan": Decimal("0.1"), "st_StanRez": 0}],
            )
            conn.execute(tw_Stan.update().values(st_Stan=tw_Stan.c.st_Stan + Decimal("0.2")))
            value = conn.execute(select(tw_Stan.c.st_Stan)).scalar_one()
            assert value == Decimal("0.3")
            assert isinstance(value, Decimal)
            with pytest.raises(Exception, match="Decimal, not float"):
                conn.execute(tw_Stan.update().values(st_Stan=0.5))
    finally:
        engine.dispose()
