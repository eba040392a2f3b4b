"""The SQL of change detection (`agent.connectors.demo.changes`): narrow reads of change markers.

Snapshot queries read only the columns a change is judged by (stock: two amounts per product and
warehouse; prices: the price columns and the VAT rate id), with money left as the driver returns
it (`raw`): they are hashed or compared with the previous poll, never shown, so converting
hundreds of thousands of values to `Decimal` every couple of seconds would be wasted. Detail
queries then read the few changed rows in full. Like `agent.connectors.demo.queries`, nothing is
run here and every value is a bound parameter.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, case, func, select, type_coerce
from sqlalchemy.types import NullType

from agent.connectors.demo.schema import (
    PRICE_LEVELS,
    DocType,
    dok__Dokument,
    nz__Finanse,
    nz_FinanseSplata,
    sl_Magazyn,
    tw__Towar,
    tw_Cena,
    tw_Stan,
)


def raw(column: ColumnElement[Any]) -> ColumnElement[Any]:
    """The column as the driver returns it (an integer of 1/10,000ths on SQLite, a decimal on a
    server): good for comparing with itself, not for showing."""
    return type_coerce(column, NullType()).label(column.name)


# -- snapshots -------------------------------------------------------------------------------


def stock_snapshot() -> Select[Any]:
    """Every stock row: product, warehouse, quantity and reserved."""
    return select(
        tw_Stan.c.st_TowId, tw_Stan.c.st_MagId, raw(tw_Stan.c.st_Stan), raw(tw_Stan.c.st_StanRez)
    )


def price_snapshot() -> Select[Any]:
    """Every product's price columns (net and gross of levels 1..10) and VAT rate id."""
    prices = [
        raw(tw_Cena.c[f"{kind}{n}"])
        for n in range(1, PRICE_LEVELS + 1)
        for kind in ("tc_CenaNetto", "tc_CenaBrutto")
    ]
    return select(tw_Cena.c.tc_IdTowar, tw__Towar.c.tw_IdVatSp, *prices).select_from(
        tw_Cena.join(tw__Towar, tw__Towar.c.tw_Id == tw_Cena.c.tc_IdTowar)
    )


def document_ids_above(floor: int, types: Collection[int]) -> Select[Any]:
    """Ids of documents of ``types`` above ``floor`` (the recent range a poll looks at)."""
    return select(dok__Dokument.c.dok_Id).where(
        dok__Dokument.c.dok_Id > floor, dok__Dokument.c.dok_Typ.in_(list(types))
    )


def payment_ids_above(floor: int) -> Select[Any]:
    return select(nz_FinanseSplata.c.nzs_Id).where(nz_FinanseSplata.c.nzs_Id > floor)


def highest_document_id() -> Select[Any]:
    return select(func.max(dok__Dokument.c.dok_Id))


def highest_payment_id() -> Select[Any]:
    return select(func.max(nz_FinanseSplata.c.nzs_Id))


def orders_in_states(statuses: Collection[int]) -> Select[Any]:
    """Id and status of every customer order (ZK) in one of ``statuses``."""
    return select(dok__Dokument.c.dok_Id, dok__Dokument.c.dok_Status).where(
        dok__Dokument.c.dok_Typ == DocType.ZK, dok__Dokument.c.dok_Status.in_(list(statuses))
    )


# -- details of what changed -----------------------------------------------------------------


def product_skus(tw_ids: Sequence[int]) -> Select[Any]:
    return select(tw__Towar.c.tw_Id, tw__Towar.c.tw_Symbol).where(
        tw__Towar.c.tw_Id.in_(list(tw_ids))
    )


def all_warehouses() -> Select[Any]:
    """Every warehouse, active or not: stock kept in a closed one still changes."""
    return select(sl_Magazyn.c.mag_Id, sl_Magazyn.c.mag_Symbol)


def stock_rows(tw_ids: Sequence[int]) -> Select[Any]:
    return select(
        tw_Stan.c.st_TowId, tw_Stan.c.st_MagId, tw_Stan.c.st_Stan, tw_Stan.c.st_StanRez
    ).where(tw_Stan.c.st_TowId.in_(list(tw_ids)))


def orders(dok_ids: Sequence[int]) -> Select[Any]:
    return select(
        dok__Dokument.c.dok_Id,
        dok__Dokument.c.dok_Typ,
        dok__Dokument.c.dok_NrPelny,
        dok__Dokument.c.dok_NrPelnyOryg,
        dok__Dokument.c.dok_Status,
    ).where(dok__Dokument.c.dok_Id.in_(list(dok_ids)))


def sales_documents(dok_ids: Sequence[int]) -> Select[Any]:
    """Headers of new sales documents with the order each was made from: an invoice or receipt
    points at its ZK (``dok_DoDokId``), a correction at its invoice, which points at the ZK."""
    parent = dok__Dokument.alias("parent")
    grandparent = dok__Dokument.alias("grandparent")
    order_id = case(
        (parent.c.dok_Typ == DocType.ZK, parent.c.dok_Id),
        (grandparent.c.dok_Typ == DocType.ZK, grandparent.c.dok_Id),
        else_=None,
    )
    return (
        select(
            dok__Dokument.c.dok_Id,
            dok__Dokument.c.dok_Typ,
            dok__Dokument.c.dok_NrPelny,
            dok__Dokument.c.dok_PlatnikId,
            dok__Dokument.c.dok_DataWyst,
            dok__Dokument.c.dok_Waluta,
            dok__Dokument.c.dok_WartNetto,
            dok__Dokument.c.dok_WartVat,
            dok__Dokument.c.dok_WartBrutto,
            order_id.label("order_id"),
        )
        .select_from(
            dok__Dokument.outerjoin(
                parent, parent.c.dok_Id == dok__Dokument.c.dok_DoDokId
            ).outerjoin(grandparent, grandparent.c.dok_Id == parent.c.dok_DoDokId)
        )
        .where(dok__Dokument.c.dok_Id.in_(list(dok_ids)))
    )


def payments(nzs_ids: Sequence[int]) -> Select[Any]:
    """New payments with the document each was booked against: named by the payment, or the
    document of the receivable it paid."""
    document = dok__Dokument.alias("document")
    return (
        select(
            nz_FinanseSplata.c.nzs_Id,
            nz_FinanseSplata.c.nzs_IdObiektu,
            nz_FinanseSplata.c.nzs_Kwota,
            nz_FinanseSplata.c.nzs_Waluta,
            nz_FinanseSplata.c.nzs_Data,
            nz_FinanseSplata.c.nzs_FormaPlatnosci,
            document.c.dok_Id,
            document.c.dok_NrPelny,
        )
        .select_from(
            nz_FinanseSplata.outerjoin(
                nz__Finanse, nz__Finanse.c.nzf_Id == nz_FinanseSplata.c.nzs_IdFinanse
            ).outerjoin(
                document,
                document.c.dok_Id
                == func.coalesce(
                    nz_FinanseSplata.c.nzs_IdDokumentu, nz__Finanse.c.nzf_IdDokumentAuto
                ),
            )
        )
        .where(nz_FinanseSplata.c.nzs_Id.in_(list(nzs_ids)))
    )
