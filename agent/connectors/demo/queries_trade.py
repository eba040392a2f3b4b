"""The SQL of the trade operations (quotes, customer terms, sales reports).

Like `queries`, each function returns a SQLAlchemy Core statement with every value bound, and
runs nothing. The sales report aggregates in the database (one grouped query and one total),
never by reading lines into Python: a real office has millions of them.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    case,
    func,
    literal,
    select,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import Date

from agent.connectors.demo.schema import (
    MAIN_ADDRESS,
    STATUS_EXECUTED,
    DocType,
    adr__Ewid,
    dok__Dokument,
    dok_Pozycja,
    kh__Kontrahent,
    sl_FormaPlatnosci,
    sl_Kategoria,
    sl_Magazyn,
    sl_Rabat,
    tw__Towar,
)
from protocol.operations.trade import SalesGrouping

SALES_TYPES = (DocType.FS, DocType.PA, DocType.KFS)
"""What the report counts: invoices and receipts, and corrections, whose lines carry negative
quantities and values (so summing as stored subtracts them)."""


class day_of(FunctionElement[date]):  # noqa: N801 - reads like the SQL function it stands for
    """The calendar day of a ``datetime`` column, for grouping by day on every backend."""

    type = Date()
    inherit_cache = True


@compiles(day_of)
def _day_of_default(element: day_of, compiler: SQLCompiler, **kw: Any) -> str:
    return f"date({compiler.process(element.clauses, **kw)})"


@compiles(day_of, "mssql")
def _day_of_mssql(element: day_of, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS date)"


def _int(value: int) -> ColumnElement[int]:
    return literal(value, Integer())


# -- customer terms ----------------------------------------------------------------------------


def customer_terms(kh_id: int) -> Select[Any]:
    """The customer's terms with its discount and its payment method's name."""
    return (
        select(
            kh__Kontrahent.c.kh_Id,
            kh__Kontrahent.c.kh_Cena,
            kh__Kontrahent.c.kh_Zablokowany,
            kh__Kontrahent.c.kh_MaxWartKred,
            kh__Kontrahent.c.kh_PlatOdroczone,
            kh__Kontrahent.c.kh_MaxDniSp,
            sl_Rabat.c.rt_Procent,
            sl_FormaPlatnosci.c.fp_Nazwa,
        )
        .select_from(
            kh__Kontrahent.outerjoin(
                sl_Rabat, sl_Rabat.c.rt_Id == kh__Kontrahent.c.kh_IdRabat
            ).outerjoin(
                sl_FormaPlatnosci, sl_FormaPlatnosci.c.fp_Id == kh__Kontrahent.c.kh_IdFormaP
            )
        )
        .where(kh__Kontrahent.c.kh_Id == kh_id)
    )


def customer_discount(kh_id: int) -> Select[Any]:
    return (
        select(sl_Rabat.c.rt_Procent)
        .select_from(kh__Kontrahent.join(sl_Rabat, sl_Rabat.c.rt_Id == kh__Kontrahent.c.kh_IdRabat))
        .where(kh__Kontrahent.c.kh_Id == kh_id)
    )


def quote_details(dok_id: int) -> Select[Any]:
    """What a quote keeps beyond an order: its validity, and the discount taken off its
    ERP-priced lines (the largest ``ob_Rabat``)."""
    discount = (
        select(func.max(dok_Pozycja.c.ob_Rabat))
        .where(dok_Pozycja.c.ob_DokHanId == dok_id)
        .scalar_subquery()
    )
    return select(dok__Dokument.c.dok_TerminRealizacji, discount.label("discount")).where(
        dok__Dokument.c.dok_Id == dok_id
    )


# -- sales report ------------------------------------------------------------------------------

_line_warehouse = func.coalesce(dok_Pozycja.c.ob_MagId, dok__Dokument.c.dok_MagId)


def _sales_lines() -> Any:
    return dok_Pozycja.join(dok__Dokument, dok__Dokument.c.dok_Id == dok_Pozycja.c.ob_DokHanId)


def _figures() -> tuple[ColumnElement[Any], ...]:
    cost = dok_Pozycja.c.ob_WartNabycia
    return (
        func.count(dok__Dokument.c.dok_Id.distinct()).label("documents"),
        func.sum(dok_Pozycja.c.ob_Ilosc).label("quantity"),
        func.sum(dok_Pozycja.c.ob_WartNetto).label("net"),
        func.sum(dok_Pozycja.c.ob_WartBrutto).label("gross"),
        func.sum(cost).label("cost"),
        func.sum(case((cost.is_(None), _int(1)), else_=_int(0))).label("unknown_cost"),
    )


def _in_range(stmt: Select[Any], date_from: date, date_to: date) -> Select[Any]:
    return stmt.where(
        dok__Dokument.c.dok_Typ.in_(list(SALES_TYPES)),
        dok__Dokument.c.dok_Status == _int(STATUS_EXECUTED),
        dok__Dokument.c.dok_DataWyst >= datetime(date_from.year, date_from.month, date_from.day),
        dok__Dokument.c.dok_DataWyst < datetime.fromordinal(date_to.toordinal() + 1),
    )


def sales_totals(date_from: date, date_to: date) -> Select[Any]:
    return _in_range(select(*_figures()).select_from(_sales_lines()), date_from, date_to)


def sales_by(
    group_by: SalesGrouping, date_from: date, date_to: date, limit: int, offset: int
) -> Select[Any]:
    """Sales grouped by ``group_by``: ``key`` and ``name`` per group, then the figures.

    Days come in date order; every other grouping biggest net first (a top-N), ties by key.
    ``limit`` is one more than a page.
    """
    source = _sales_lines()
    key: ColumnElement[Any]
    name: ColumnElement[Any]
    if group_by == "day":
        key = day_of(dok__Dokument.c.dok_DataWyst)
        name = literal(None)
        group: tuple[ColumnElement[Any], ...] = (key,)
    elif group_by == "product":
        source = source.join(tw__Towar, tw__Towar.c.tw_Id == dok_Pozycja.c.ob_TowId)
        key, name = tw__Towar.c.tw_Symbol, tw__Towar.c.tw_Nazwa
        group = (tw__Towar.c.tw_Id, key, name)
    elif group_by == "customer":
        source = source.outerjoin(
            adr__Ewid,
            (adr__Ewid.c.adr_IdObiektu == dok__Dokument.c.dok_PlatnikId)
            & (adr__Ewid.c.adr_TypAdresu == _int(MAIN_ADDRESS)),
        )
        key, name = dok__Dokument.c.dok_PlatnikId, adr__Ewid.c.adr_Nazwa
        group = (key, name)
    elif group_by == "channel":
        source = source.outerjoin(sl_Kategoria, sl_Kategoria.c.kat_Id == dok__Dokument.c.dok_KatId)
        key, name = sl_Kategoria.c.kat_Nazwa, literal(None)
        group = (key,)
    else:
        source = source.outerjoin(sl_Magazyn, sl_Magazyn.c.mag_Id == _line_warehouse)
        key, name = sl_Magazyn.c.mag_Symbol, sl_Magazyn.c.mag_Nazwa
        group = (key, name)
    stmt = _in_range(
        select(key.label("key"), name.label("name"), *_figures()).select_from(source),
        date_from,
        date_to,
    ).group_by(*group)
    if group_by == "day":
        stmt = stmt.order_by(key)
    else:
        stmt = stmt.order_by(func.sum(dok_Pozycja.c.ob_WartNetto).desc(), key)
    return stmt.limit(limit).offset(offset)
