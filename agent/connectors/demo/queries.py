"""The SQL of every operation, as SQLAlchemy Core statements over Subiekt GT's tables.

Each function returns a statement and runs nothing: the session executes them, and the unit tests
compile every one for SQL Server to prove the same definitions serve a real Subiekt-shaped
database. Every value, constants included, travels as a bound parameter; nothing a caller sends is
ever formatted into SQL text. Two portability seams are kept here and nowhere else:

- `casefold`: case-insensitive matching. SQL Server's ``Polish_CI_AS`` collation already ignores
  case, so the column is compared as is and its index stays usable; SQLite gets ``lower()``
  (made Unicode-aware by the engine).
- `like_prefix` / `like_contains`: LIKE patterns with ``%``, ``_``, ``[`` and the escape character
  escaped, so a search for ``50%`` finds exactly that.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Insert,
    Integer,
    Select,
    Unicode,
    Update,
    and_,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from agent.connectors.demo.schema import (
    MAIN_ADDRESS,
    OBJECT_CUSTOMER,
    PRICE_LEVELS,
    RECEIVABLE,
    STATUS_EXECUTED,
    DocType,
    adr__Ewid,
    dok__Dokument,
    dok_Pozycja,
    ins_ident,
    kh__Kontrahent,
    nz__Finanse,
    sl_Kategoria,
    sl_Magazyn,
    sl_StawkaVAT,
    tw__Towar,
    tw_Cena,
    tw_Parametr,
    tw_Stan,
)

ESCAPE = "\\"


class casefold(FunctionElement[str]):  # noqa: N801 - reads like the SQL function it stands for
    """A text column or value, compared without regard to case (see the module docstring)."""

    type = Unicode()
    inherit_cache = True


@compiles(casefold)
def _casefold_default(element: casefold, compiler: SQLCompiler, **kw: Any) -> str:
    return f"lower({compiler.process(element.clauses, **kw)})"


@compiles(casefold, "mssql")
def _casefold_mssql(element: casefold, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


def _escape_like(text: str) -> str:
    for special in (ESCAPE, "%", "_", "["):
        text = text.replace(special, ESCAPE + special)
    return text


def like_prefix(column: ColumnElement[Any], text: str) -> ColumnElement[bool]:
    """``column`` starts with ``text``, ignoring case."""
    return casefold(column).like(_escape_like(text.lower()) + "%", escape=ESCAPE)


def like_contains(column: ColumnElement[Any], text: str) -> ColumnElement[bool]:
    """``column`` contains ``text``, ignoring case."""
    return casefold(column).like("%" + _escape_like(text.lower()) + "%", escape=ESCAPE)


def flag(column: ColumnElement[Any], value: bool) -> ColumnElement[bool]:
    """``column = :flag``: a bit compared through a parameter, like every other value."""
    return column == literal(value, Boolean())


def _int(value: int) -> ColumnElement[int]:
    return literal(value, Integer())


# -- id allocation ---------------------------------------------------------------------------


def bump_ident(table_name: str, count: int) -> Update:
    """Reserve ``count`` ids for ``table_name``, as ``spIdentyfikator`` does.

    Run it first in the write transaction: the row lock it takes serialises allocators, and the
    ids reserved are ``new_value - count + 1 .. new_value``.
    """
    return (
        update(ins_ident)
        .where(ins_ident.c.ido_nazwa == table_name)
        .values(ido_wartosc=ins_ident.c.ido_wartosc + _int(count))
    )


def read_ident(table_name: str) -> Select[Any]:
    return select(ins_ident.c.ido_wartosc).where(ins_ident.c.ido_nazwa == table_name)


# -- customers -------------------------------------------------------------------------------

_main_address = and_(
    adr__Ewid.c.adr_IdObiektu == kh__Kontrahent.c.kh_Id,
    adr__Ewid.c.adr_TypAdresu == _int(MAIN_ADDRESS),
)

CUSTOMER_COLUMNS = (
    kh__Kontrahent.c.kh_Id,
    kh__Kontrahent.c.kh_Symbol,
    kh__Kontrahent.c.kh_EMail,
    kh__Kontrahent.c.kh_Osoba,
    kh__Kontrahent.c.kh_Cena,
    kh__Kontrahent.c.kh_MaxWartKred,
    kh__Kontrahent.c.kh_Zablokowany,
    adr__Ewid.c.adr_Nazwa,
    adr__Ewid.c.adr_NazwaPelna,
    adr__Ewid.c.adr_NIP,
    adr__Ewid.c.adr_Telefon,
    adr__Ewid.c.adr_Ulica,
    adr__Ewid.c.adr_NrDomu,
    adr__Ewid.c.adr_NrLokalu,
    adr__Ewid.c.adr_Kod,
    adr__Ewid.c.adr_Miejscowosc,
)


def _customers() -> Select[Any]:
    return select(*CUSTOMER_COLUMNS).select_from(kh__Kontrahent.outerjoin(adr__Ewid, _main_address))


def nip_spellings(nip: str) -> list[str]:
    """The ways a NIP is typed into Subiekt GT: bare, ``526-000-12-46``, ``526-00-01-246``."""
    return [
        nip,
        f"{nip[:3]}-{nip[3:6]}-{nip[6:8]}-{nip[8:]}",
        f"{nip[:3]}-{nip[3:5]}-{nip[5:7]}-{nip[7:]}",
        f"PL{nip}",
    ]


def customer_by_id(kh_id: int) -> Select[Any]:
    return _customers().where(kh__Kontrahent.c.kh_Id == kh_id)


def customer_by_symbol(symbol: str) -> Select[Any]:
    return _customers().where(kh__Kontrahent.c.kh_Symbol == symbol)


def customer_by_nip(nip: str) -> Select[Any]:
    """By NIP in any usual spelling; the lowest id wins when a NIP was entered twice."""
    return (
        _customers()
        .where(adr__Ewid.c.adr_NIP.in_(nip_spellings(nip)))
        .order_by(kh__Kontrahent.c.kh_Id)
        .limit(1)
    )


def customer_search(query: str, city: str | None, limit: int, offset: int) -> Select[Any]:
    """Prefix of symbol, name or NIP, or the whole e-mail; ``limit`` is one more than a page."""
    stmt = _customers()
    if query:
        stmt = stmt.where(
            or_(
                like_prefix(kh__Kontrahent.c.kh_Symbol, query),
                like_prefix(adr__Ewid.c.adr_Nazwa, query),
                like_prefix(adr__Ewid.c.adr_NIP, query),
                casefold(kh__Kontrahent.c.kh_EMail) == query.lower(),
            )
        )
    if city:
        stmt = stmt.where(casefold(adr__Ewid.c.adr_Miejscowosc) == city.lower())
    return (
        stmt.order_by(kh__Kontrahent.c.kh_Symbol, kh__Kontrahent.c.kh_Id)
        .limit(limit)
        .offset(offset)
    )


def symbol_taken(symbol: str) -> Select[Any]:
    return select(kh__Kontrahent.c.kh_Id).where(kh__Kontrahent.c.kh_Symbol == symbol).limit(1)


def nip_taken(nip: str) -> Select[Any]:
    return (
        select(adr__Ewid.c.adr_IdObiektu)
        .where(
            adr__Ewid.c.adr_NIP.in_(nip_spellings(nip)),
            adr__Ewid.c.adr_TypAdresu == _int(MAIN_ADDRESS),
        )
        .limit(1)
    )


def insert_customer(values: dict[str, Any]) -> Insert:
    return insert(kh__Kontrahent).values(**values)


def insert_address(values: dict[str, Any]) -> Insert:
    return insert(adr__Ewid).values(**values)


def receivables_total(kh_id: int) -> Select[Any]:
    """What the customer still owes: the sum of its open receivables (0 when none)."""
    total = func.coalesce(
        func.sum(nz__Finanse.c.nzf_Wartosc), literal(Decimal(0), nz__Finanse.c.nzf_Wartosc.type)
    )
    return select(total.label("receivables")).where(
        nz__Finanse.c.nzf_IdObiektu == kh_id,
        nz__Finanse.c.nzf_TypObiektu == _int(OBJECT_CUSTOMER),
        nz__Finanse.c.nzf_Typ == _int(RECEIVABLE),
        nz__Finanse.c.nzf_Wartosc > Decimal(0),
    )


def open_receivables(kh_id: int) -> Select[Any]:
    """A customer's unpaid receivables with their documents: one indexed query, no N+1."""
    return (
        select(
            nz__Finanse.c.nzf_Id,
            nz__Finanse.c.nzf_IdDokumentAuto,
            func.coalesce(dok__Dokument.c.dok_NrPelny, nz__Finanse.c.nzf_NumerPelny).label(
                "number"
            ),
            func.coalesce(dok__Dokument.c.dok_DataWyst, nz__Finanse.c.nzf_Data).label("issued"),
            nz__Finanse.c.nzf_TerminPlatnosci,
            nz__Finanse.c.nzf_WartoscPierwotna,
            nz__Finanse.c.nzf_Wartosc,
        )
        .select_from(
            nz__Finanse.outerjoin(
                dok__Dokument, dok__Dokument.c.dok_Id == nz__Finanse.c.nzf_IdDokumentAuto
            )
        )
        .where(
            nz__Finanse.c.nzf_IdObiektu == kh_id,
            nz__Finanse.c.nzf_TypObiektu == _int(OBJECT_CUSTOMER),
            nz__Finanse.c.nzf_Typ == _int(RECEIVABLE),
            nz__Finanse.c.nzf_Wartosc > Decimal(0),
        )
        .order_by(nz__Finanse.c.nzf_TerminPlatnosci, nz__Finanse.c.nzf_Id)
    )


# -- products --------------------------------------------------------------------------------

PRODUCT_COLUMNS = (
    tw__Towar.c.tw_Id,
    tw__Towar.c.tw_Symbol,
    tw__Towar.c.tw_Nazwa,
    tw__Towar.c.tw_PodstKodKresk,
    tw__Towar.c.tw_JednMiary,
    tw__Towar.c.tw_Zablokowany,
    sl_StawkaVAT.c.vat_Id,
    sl_StawkaVAT.c.vat_Stawka,
)


def _products(*extra: Any) -> Select[Any]:
    return (
        select(*PRODUCT_COLUMNS, *extra)
        .select_from(tw__Towar.join(sl_StawkaVAT, sl_StawkaVAT.c.vat_Id == tw__Towar.c.tw_IdVatSp))
        .where(flag(tw__Towar.c.tw_Usuniety, False))
    )


def product_by_id(tw_id: int) -> Select[Any]:
    return _products().where(tw__Towar.c.tw_Id == tw_id)


def product_by_sku(sku: str) -> Select[Any]:
    return _products().where(tw__Towar.c.tw_Symbol == sku)


def product_by_ean(ean: str) -> Select[Any]:
    return _products().where(tw__Towar.c.tw_PodstKodKresk == ean).order_by(tw__Towar.c.tw_Id)


def product_search(query: str, limit: int, offset: int) -> Select[Any]:
    """Prefix of SKU or EAN, or any part of the name; ``limit`` is one more than a page."""
    stmt = _products()
    if query:
        stmt = stmt.where(
            or_(
                like_prefix(tw__Towar.c.tw_Symbol, query),
                like_prefix(tw__Towar.c.tw_PodstKodKresk, query),
                like_contains(tw__Towar.c.tw_Nazwa, query),
            )
        )
    return stmt.order_by(tw__Towar.c.tw_Symbol, tw__Towar.c.tw_Id).limit(limit).offset(offset)


def products_by_skus(skus: Sequence[str]) -> Select[Any]:
    return _products().where(tw__Towar.c.tw_Symbol.in_(list(skus)))


def product_prices(skus: Sequence[str]) -> Select[Any]:
    """Products with every level's net and gross price (levels 1..10)."""
    levels = [
        tw_Cena.c[f"{kind}{n}"]
        for n in range(1, PRICE_LEVELS + 1)
        for kind in ("tc_CenaNetto", "tc_CenaBrutto")
    ]
    return (
        select(*PRODUCT_COLUMNS, *levels)
        .select_from(
            tw__Towar.join(sl_StawkaVAT, sl_StawkaVAT.c.vat_Id == tw__Towar.c.tw_IdVatSp).outerjoin(
                tw_Cena, tw_Cena.c.tc_IdTowar == tw__Towar.c.tw_Id
            )
        )
        .where(tw__Towar.c.tw_Symbol.in_(list(skus)), flag(tw__Towar.c.tw_Usuniety, False))
    )


def price_level_names() -> Select[Any]:
    return (
        select(*(tw_Parametr.c[f"twp_NazwaCeny{n}"] for n in range(1, PRICE_LEVELS + 1)))
        .order_by(tw_Parametr.c.twp_Id)
        .limit(1)
    )


# -- warehouses and stock --------------------------------------------------------------------


def warehouses(symbols: Sequence[str] | None = None) -> Select[Any]:
    """Active warehouses (``mag_Status = 1``), optionally only the given symbols."""
    stmt = select(sl_Magazyn.c.mag_Id, sl_Magazyn.c.mag_Symbol, sl_Magazyn.c.mag_Glowny).where(
        sl_Magazyn.c.mag_Status == _int(1)
    )
    if symbols is not None:
        stmt = stmt.where(sl_Magazyn.c.mag_Symbol.in_(list(symbols)))
    return stmt.order_by(sl_Magazyn.c.mag_Id)


def warehouse_by_symbol(symbol: str) -> Select[Any]:
    return select(sl_Magazyn.c.mag_Id, sl_Magazyn.c.mag_Symbol).where(
        sl_Magazyn.c.mag_Symbol == symbol, sl_Magazyn.c.mag_Status == _int(1)
    )


def main_warehouse() -> Select[Any]:
    return (
        select(sl_Magazyn.c.mag_Id, sl_Magazyn.c.mag_Symbol)
        .where(flag(sl_Magazyn.c.mag_Glowny, True))
        .order_by(sl_Magazyn.c.mag_Id)
        .limit(1)
    )


def stock_levels(tw_ids: Sequence[int], mag_ids: Sequence[int]) -> Select[Any]:
    return select(
        tw_Stan.c.st_TowId, tw_Stan.c.st_MagId, tw_Stan.c.st_Stan, tw_Stan.c.st_StanRez
    ).where(tw_Stan.c.st_TowId.in_(list(tw_ids)), tw_Stan.c.st_MagId.in_(list(mag_ids)))


def reserve_stock(tw_id: int, mag_id: int, quantity: Decimal) -> Update:
    """``st_StanRez += quantity`` only while enough is free: a rowcount of 0 means it was not.

    The guard in the WHERE clause makes the check and the reservation one atomic step, so two
    orders racing for the last pieces cannot both win, whatever the isolation level.
    """
    return (
        update(tw_Stan)
        .where(
            tw_Stan.c.st_TowId == tw_id,
            tw_Stan.c.st_MagId == mag_id,
            tw_Stan.c.st_Stan - tw_Stan.c.st_StanRez >= quantity,
        )
        .values(st_StanRez=tw_Stan.c.st_StanRez + quantity)
    )


# -- orders ------------------------------------------------------------------------------------


def order_for_sale(skus: Sequence[str], level: int) -> Select[Any]:
    """What an order needs per product: VAT and the level's net price (stock: `stock_levels`)."""
    return (
        select(*PRODUCT_COLUMNS, tw_Cena.c[f"tc_CenaNetto{level}"].label("price_net"))
        .select_from(
            tw__Towar.join(sl_StawkaVAT, sl_StawkaVAT.c.vat_Id == tw__Towar.c.tw_IdVatSp).outerjoin(
                tw_Cena, tw_Cena.c.tc_IdTowar == tw__Towar.c.tw_Id
            )
        )
        .where(tw__Towar.c.tw_Symbol.in_(list(skus)), flag(tw__Towar.c.tw_Usuniety, False))
    )


def last_number(doc_type: int, period_start: datetime, period_end: datetime) -> Select[Any]:
    """The highest ``dok_Nr`` of a document type in a numbering period (a month)."""
    return select(func.max(dok__Dokument.c.dok_Nr)).where(
        dok__Dokument.c.dok_Typ == doc_type,
        dok__Dokument.c.dok_DataWyst >= period_start,
        dok__Dokument.c.dok_DataWyst < period_end,
    )


def insert_document(values: dict[str, Any]) -> Insert:
    return insert(dok__Dokument).values(**values)


def insert_line() -> Insert:
    """For ``executemany`` with one dict per line."""
    return insert(dok_Pozycja)


HEADER_COLUMNS = (
    dok__Dokument.c.dok_Id,
    dok__Dokument.c.dok_Typ,
    dok__Dokument.c.dok_NrPelny,
    dok__Dokument.c.dok_NrPelnyOryg,
    dok__Dokument.c.dok_Status,
    dok__Dokument.c.dok_OdbiorcaId,
    dok__Dokument.c.dok_PlatnikId,
    dok__Dokument.c.dok_DataWyst,
    dok__Dokument.c.dok_PlatTermin,
    dok__Dokument.c.dok_WartNetto,
    dok__Dokument.c.dok_WartVat,
    dok__Dokument.c.dok_WartBrutto,
    dok__Dokument.c.dok_Waluta,
    dok__Dokument.c.dok_Uwagi,
    dok__Dokument.c.dok_Podtytul,
    sl_Magazyn.c.mag_Symbol,
    sl_Kategoria.c.kat_Nazwa.label("channel"),
)


def _orders() -> Select[Any]:
    return (
        select(*HEADER_COLUMNS)
        .select_from(
            dok__Dokument.outerjoin(
                sl_Magazyn, sl_Magazyn.c.mag_Id == dok__Dokument.c.dok_MagId
            ).outerjoin(sl_Kategoria, sl_Kategoria.c.kat_Id == dok__Dokument.c.dok_KatId)
        )
        .where(dok__Dokument.c.dok_Typ == _int(DocType.ZK))
        .order_by(dok__Dokument.c.dok_Id)
        .limit(1)
    )


def order_by_id(dok_id: int) -> Select[Any]:
    return _orders().where(dok__Dokument.c.dok_Id == dok_id)


def order_by_number(number: str) -> Select[Any]:
    return _orders().where(dok__Dokument.c.dok_NrPelny == number)


def order_by_external_number(external_number: str) -> Select[Any]:
    """The ZK carrying the shop's number in ``dok_NrPelnyOryg``; also the duplicate guard."""
    return _orders().where(dok__Dokument.c.dok_NrPelnyOryg == external_number)


def category_by_name(name: str) -> Select[Any]:
    """A document category (``sl_Kategoria``) by name, ignoring case; the lowest id wins."""
    return (
        select(sl_Kategoria.c.kat_Id)
        .where(casefold(sl_Kategoria.c.kat_Nazwa) == name.lower())
        .order_by(sl_Kategoria.c.kat_Id)
        .limit(1)
    )


def insert_category(kat_id: int, name: str) -> Insert:
    return insert(sl_Kategoria).values(kat_Id=kat_id, kat_Nazwa=name)


def link_document(dok_id: int, order_id: int) -> Update:
    """Point a document at the order it was made from (``dok_DoDokId`` and the order's number)."""
    number = select(dok__Dokument.c.dok_NrPelny).where(dok__Dokument.c.dok_Id == order_id)
    return (
        update(dok__Dokument)
        .where(dok__Dokument.c.dok_Id == dok_id)
        .values(dok_DoDokId=order_id, dok_DoDokNrPelny=number.scalar_subquery())
    )


def linked_documents(order_id: int) -> Select[Any]:
    """The documents made from an order (``dok_DoDokId``), oldest first."""
    return (
        select(
            dok__Dokument.c.dok_Id,
            dok__Dokument.c.dok_Typ,
            dok__Dokument.c.dok_NrPelny,
            dok__Dokument.c.dok_Status,
            dok__Dokument.c.dok_MagId,
            dok__Dokument.c.dok_OdbiorcaId,
        )
        .where(dok__Dokument.c.dok_DoDokId == order_id)
        .order_by(dok__Dokument.c.dok_Id)
    )


def document_lines(dok_id: int) -> Select[Any]:
    return (
        select(
            dok_Pozycja.c.ob_DokHanLp,
            tw__Towar.c.tw_Symbol,
            tw__Towar.c.tw_Nazwa,
            dok_Pozycja.c.ob_Ilosc,
            dok_Pozycja.c.ob_Jm,
            dok_Pozycja.c.ob_CenaNetto,
            dok_Pozycja.c.ob_CenaBrutto,
            dok_Pozycja.c.ob_VatProc,
            dok_Pozycja.c.ob_WartNetto,
            dok_Pozycja.c.ob_WartVat,
            dok_Pozycja.c.ob_WartBrutto,
            sl_Magazyn.c.mag_Symbol,
        )
        .select_from(
            dok_Pozycja.join(tw__Towar, tw__Towar.c.tw_Id == dok_Pozycja.c.ob_TowId).outerjoin(
                sl_Magazyn, sl_Magazyn.c.mag_Id == dok_Pozycja.c.ob_MagId
            )
        )
        .where(dok_Pozycja.c.ob_DokHanId == dok_id)
        .order_by(dok_Pozycja.c.ob_DokHanLp)
    )


# -- invoices ----------------------------------------------------------------------------------


def invoices(
    kh_id: int,
    *,
    date_from: date | None,
    date_to: date | None,
    unpaid_only: bool,
    limit: int,
    offset: int,
) -> Select[Any]:
    """Executed FS and PA of a payer, newest first, with what is still open on each.

    ``limit`` is one more than a page. ``date_to`` is inclusive: it is compared as "before the
    next midnight", which also works when ``dok_DataWyst`` carries a time of day.
    """
    open_amount = func.coalesce(
        nz__Finanse.c.nzf_Wartosc, literal(Decimal(0), nz__Finanse.c.nzf_Wartosc.type)
    )
    stmt = (
        select(
            dok__Dokument.c.dok_Id,
            dok__Dokument.c.dok_Typ,
            dok__Dokument.c.dok_NrPelny,
            dok__Dokument.c.dok_DataWyst,
            dok__Dokument.c.dok_PlatTermin,
            dok__Dokument.c.dok_Waluta,
            dok__Dokument.c.dok_WartNetto,
            dok__Dokument.c.dok_WartVat,
            dok__Dokument.c.dok_WartBrutto,
            open_amount.label("open_amount"),
        )
        .select_from(
            dok__Dokument.outerjoin(
                nz__Finanse,
                and_(
                    nz__Finanse.c.nzf_IdDokumentAuto == dok__Dokument.c.dok_Id,
                    nz__Finanse.c.nzf_Typ == _int(RECEIVABLE),
                ),
            )
        )
        .where(
            dok__Dokument.c.dok_PlatnikId == kh_id,
            dok__Dokument.c.dok_Typ.in_([DocType.FS, DocType.PA]),
            dok__Dokument.c.dok_Status == _int(STATUS_EXECUTED),
        )
    )
    if date_from is not None:
        stmt = stmt.where(dok__Dokument.c.dok_DataWyst >= _midnight(date_from))
    if date_to is not None:
        stmt = stmt.where(dok__Dokument.c.dok_DataWyst < _next_midnight(date_to))
    if unpaid_only:
        stmt = stmt.where(nz__Finanse.c.nzf_Wartosc > Decimal(0))
    return (
        stmt.order_by(dok__Dokument.c.dok_DataWyst.desc(), dok__Dokument.c.dok_Id.desc())
        .limit(limit)
        .offset(offset)
    )


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)


def _next_midnight(day: date) -> datetime:
    return datetime.fromordinal(day.toordinal() + 1)


# -- system ------------------------------------------------------------------------------------


def database_time() -> Select[Any]:
    return select(func.current_timestamp())
