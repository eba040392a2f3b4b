"""The SQL of the warehouse operations: transfers (MM), pickups, planned deliveries (ZD).

Statements only, as in `agent.connectors.demo.queries` (every value a bound parameter). Stock
moves are guarded updates: the check and the change are one statement, so a transfer cannot take
what an order reserved a moment before, whatever the isolation level.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Insert, Select, Update, case, insert, select, update

from agent.connectors.demo.schema import (
    STATUS_ORDER_OPEN,
    DocType,
    dok__Dokument,
    dok_Odbior,
    dok_Pozycja,
    sl_Magazyn,
    tw__Towar,
    tw_Stan,
)

_source = sl_Magazyn.alias("source")
_target = sl_Magazyn.alias("target")


def take_stock(tw_id: int, mag_id: int, quantity: Decimal, release: Decimal) -> Update:
    """``st_Stan -= quantity`` and ``st_StanRez -= release``, only if that leaves neither the
    free stock nor the reservation negative: a rowcount of 0 means the warehouse cannot spare it.

    A plain transfer releases nothing (it may only take free stock); an order's goods release
    their own reservation, ``release = quantity``.
    """
    return (
        update(tw_Stan)
        .where(
            tw_Stan.c.st_TowId == tw_id,
            tw_Stan.c.st_MagId == mag_id,
            tw_Stan.c.st_Stan - tw_Stan.c.st_StanRez >= quantity - release,
            tw_Stan.c.st_StanRez >= release,
        )
        .values(st_Stan=tw_Stan.c.st_Stan - quantity, st_StanRez=tw_Stan.c.st_StanRez - release)
    )


def add_stock(tw_id: int, mag_id: int, quantity: Decimal, reserve: Decimal) -> Update:
    """``st_Stan += quantity``, ``st_StanRez += reserve``; rowcount 0: no ``tw_Stan`` row yet."""
    return (
        update(tw_Stan)
        .where(tw_Stan.c.st_TowId == tw_id, tw_Stan.c.st_MagId == mag_id)
        .values(st_Stan=tw_Stan.c.st_Stan + quantity, st_StanRez=tw_Stan.c.st_StanRez + reserve)
    )


def insert_stock(tw_id: int, mag_id: int, quantity: Decimal, reserve: Decimal) -> Insert:
    """The first ``tw_Stan`` row of a product in a warehouse it never had."""
    return insert(tw_Stan).values(
        st_TowId=tw_id,
        st_MagId=mag_id,
        st_Stan=quantity,
        st_StanRez=reserve,
        st_StanMin=Decimal(0),
        st_StanMax=Decimal(0),
    )


def order_lines(dok_id: int) -> Select[Any]:
    """A ZK's lines with what a stock move needs: line id, product, quantity, warehouse."""
    return (
        select(
            dok_Pozycja.c.ob_Id,
            dok_Pozycja.c.ob_TowId,
            dok_Pozycja.c.ob_Ilosc,
            dok_Pozycja.c.ob_MagId,
            dok_Pozycja.c.ob_Jm,
            dok_Pozycja.c.ob_VatId,
            dok_Pozycja.c.ob_VatProc,
            tw__Towar.c.tw_Symbol,
        )
        .select_from(dok_Pozycja.join(tw__Towar, tw__Towar.c.tw_Id == dok_Pozycja.c.ob_TowId))
        .where(dok_Pozycja.c.ob_DokHanId == dok_id)
        .order_by(dok_Pozycja.c.ob_DokHanLp)
    )


def move_order_lines(ob_ids: Sequence[int], mag_id: int) -> Update:
    """Point ZK lines at the warehouse their reservation now lives in."""
    return update(dok_Pozycja).where(dok_Pozycja.c.ob_Id.in_(list(ob_ids))).values(ob_MagId=mag_id)


def set_document_warehouse(dok_id: int, mag_id: int) -> Update:
    return update(dok__Dokument).where(dok__Dokument.c.dok_Id == dok_id).values(dok_MagId=mag_id)


def transfer_header(dok_id: int) -> Select[Any]:
    """An MM with its source (``dok_MagId``) and target (``dok_OdbiorcaId``) warehouse symbols."""
    return (
        select(
            dok__Dokument.c.dok_Id,
            dok__Dokument.c.dok_NrPelny,
            dok__Dokument.c.dok_DataWyst,
            dok__Dokument.c.dok_Uwagi,
            dok__Dokument.c.dok_DoDokId,
            _source.c.mag_Symbol.label("from_symbol"),
            _target.c.mag_Symbol.label("to_symbol"),
        )
        .select_from(
            dok__Dokument.join(_source, _source.c.mag_Id == dok__Dokument.c.dok_MagId).join(
                _target, _target.c.mag_Id == dok__Dokument.c.dok_OdbiorcaId
            )
        )
        .where(dok__Dokument.c.dok_Id == dok_id, dok__Dokument.c.dok_Typ == DocType.MM)
    )


def transfer_lines(dok_id: int) -> Select[Any]:
    """An MM's lines: warehouse documents hang on ``ob_DokMagId`` (``ob_DokHanId`` is NULL)."""
    return (
        select(
            dok_Pozycja.c.ob_DokHanLp,
            tw__Towar.c.tw_Symbol,
            tw__Towar.c.tw_Nazwa,
            dok_Pozycja.c.ob_Ilosc,
            dok_Pozycja.c.ob_Jm,
        )
        .select_from(dok_Pozycja.join(tw__Towar, tw__Towar.c.tw_Id == dok_Pozycja.c.ob_TowId))
        .where(dok_Pozycja.c.ob_DokMagId == dok_id)
        .order_by(dok_Pozycja.c.ob_DokHanLp)
    )


def transfers_by_token(token: str) -> Select[Any]:
    """The MMs one write made (``dok_TransakcjaSymbol``), oldest first."""
    return (
        select(dok__Dokument.c.dok_Id, dok__Dokument.c.dok_DoDokId)
        .where(dok__Dokument.c.dok_TransakcjaSymbol == token, dok__Dokument.c.dok_Typ == DocType.MM)
        .order_by(dok__Dokument.c.dok_Id)
    )


def insert_pickup(
    odb_id: int, dok_id: int, mag_id: int, when: datetime, token: str | None
) -> Insert:
    return insert(dok_Odbior).values(
        odb_Id=odb_id, odb_DokId=dok_id, odb_MagId=mag_id, odb_Data=when, odb_TransakcjaSymbol=token
    )


def _pickups() -> Select[Any]:
    return select(
        dok_Odbior.c.odb_DokId, dok_Odbior.c.odb_Data, sl_Magazyn.c.mag_Symbol
    ).select_from(dok_Odbior.join(sl_Magazyn, sl_Magazyn.c.mag_Id == dok_Odbior.c.odb_MagId))


def pickup_of_order(dok_id: int) -> Select[Any]:
    return _pickups().where(dok_Odbior.c.odb_DokId == dok_id)


def pickup_by_token(token: str) -> Select[Any]:
    return _pickups().where(dok_Odbior.c.odb_TransakcjaSymbol == token).limit(1)


def planned_deliveries(tw_ids: Sequence[int], symbols: Sequence[str]) -> Select[Any]:
    """Open purchase orders' (ZD) lines for these products into these warehouses, earliest
    expected first (undated last)."""
    return (
        select(
            dok_Pozycja.c.ob_TowId,
            dok_Pozycja.c.ob_Ilosc,
            sl_Magazyn.c.mag_Symbol,
            dok__Dokument.c.dok_Id,
            dok__Dokument.c.dok_NrPelny,
            dok__Dokument.c.dok_TerminRealizacji,
        )
        .select_from(
            dok_Pozycja.join(
                dok__Dokument, dok__Dokument.c.dok_Id == dok_Pozycja.c.ob_DokHanId
            ).join(sl_Magazyn, sl_Magazyn.c.mag_Id == dok_Pozycja.c.ob_MagId)
        )
        .where(
            dok__Dokument.c.dok_Typ == DocType.ZD,
            dok__Dokument.c.dok_Status == STATUS_ORDER_OPEN,
            dok_Pozycja.c.ob_TowId.in_(list(tw_ids)),
            sl_Magazyn.c.mag_Symbol.in_(list(symbols)),
        )
        .order_by(
            case((dok__Dokument.c.dok_TerminRealizacji.is_(None), 1), else_=0),
            dok__Dokument.c.dok_TerminRealizacji,
            dok__Dokument.c.dok_Id,
            dok_Pozycja.c.ob_DokHanLp,
        )
    )
