"""The SQL of the fulfilment operations (`agent.connectors.demo.fulfilment`).

Same rules as `agent.connectors.demo.queries`: statements only, every value a bound parameter.
The writes that check and change in one statement (``… WHERE dok_Status = :open``,
``… WHERE nzf_Wartosc >= :amount``) are how two concurrent calls are kept apart on a server
database, where the demo's write lock is only the row locks these statements take.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Delete, Insert, Select, Update, and_, case, delete, func, insert, or_, select
from sqlalchemy import update as sa_update

from agent.connectors.demo.schema import (
    RECEIVABLE,
    STATUS_EXECUTED,
    DocType,
    dok__Dokument,
    dok_Pozycja,
    fl_Wartosc,
    kh__Kontrahent,
    nz__Finanse,
    nz_FinanseSplata,
    rk_Pozycja,
    rk_Reklamacja,
    sl_Magazyn,
    tw__Towar,
    tw_Stan,
)

SHOP_STATUS_GROUP = 1
"""``flw_IdGrupyFlag`` of the demo's one flag group, "shop status" (G)."""

FLAG_OBJECT_ORDER = 16
"""``flw_TypObiektu`` the demo uses for a ZK (its ``dok_Typ``; G)."""

_zero = Decimal(0)

# -- orders ------------------------------------------------------------------------------------


def shop_status(dok_id: int) -> Select[Any]:
    return select(fl_Wartosc.c.flw_Komentarz).where(
        fl_Wartosc.c.flw_IdGrupyFlag == SHOP_STATUS_GROUP,
        fl_Wartosc.c.flw_TypObiektu == FLAG_OBJECT_ORDER,
        fl_Wartosc.c.flw_IdObiektu == dok_id,
    )


def clear_shop_status(dok_id: int) -> Delete:
    return delete(fl_Wartosc).where(
        fl_Wartosc.c.flw_IdGrupyFlag == SHOP_STATUS_GROUP,
        fl_Wartosc.c.flw_TypObiektu == FLAG_OBJECT_ORDER,
        fl_Wartosc.c.flw_IdObiektu == dok_id,
    )


def insert_shop_status(dok_id: int, text: str, when: datetime) -> Insert:
    return insert(fl_Wartosc).values(
        flw_IdGrupyFlag=SHOP_STATUS_GROUP,
        flw_TypObiektu=FLAG_OBJECT_ORDER,
        flw_IdObiektu=dok_id,
        flw_IdFlagi=None,
        flw_Komentarz=text,
        flw_IdUzytkownika=1,
        flw_CzasOstatniejZmiany=when,
    )


def change_status(dok_id: int, new: int, allowed: Sequence[int]) -> Update:
    """Move a document to status ``new`` only from one of ``allowed``: the row is claimed."""
    return (
        sa_update(dok__Dokument)
        .where(dok__Dokument.c.dok_Id == dok_id, dok__Dokument.c.dok_Status.in_(list(allowed)))
        .values(dok_Status=new)
    )


def lock_document(dok_id: int) -> Update:
    """A no-op update that row-locks the document until commit (serialises its payments)."""
    return (
        sa_update(dok__Dokument)
        .where(dok__Dokument.c.dok_Id == dok_id)
        .values(dok_Status=dok__Dokument.c.dok_Status)
    )


def order_lines(dok_id: int) -> Select[Any]:
    """Every column of a document's lines (to copy them) with the SKU, in line order."""
    return (
        select(dok_Pozycja, tw__Towar.c.tw_Symbol, sl_Magazyn.c.mag_Symbol)
        .select_from(
            dok_Pozycja.join(tw__Towar, tw__Towar.c.tw_Id == dok_Pozycja.c.ob_TowId).outerjoin(
                sl_Magazyn, sl_Magazyn.c.mag_Id == dok_Pozycja.c.ob_MagId
            )
        )
        .where(dok_Pozycja.c.ob_DokHanId == dok_id)
        .order_by(dok_Pozycja.c.ob_DokHanLp, dok_Pozycja.c.ob_Id)
    )


def stock_rows(pairs: Sequence[tuple[int, int]]) -> Select[Any]:
    """``tw_Stan`` of (product, warehouse) pairs."""
    return select(tw_Stan).where(
        or_(*(and_(tw_Stan.c.st_TowId == tw, tw_Stan.c.st_MagId == mag) for tw, mag in pairs))
    )


def release_reservation(tw_id: int, mag_id: int, quantity: Decimal) -> Update:
    """Give back a reservation; never below zero (an ERP user may have edited it meanwhile)."""
    return (
        sa_update(tw_Stan)
        .where(tw_Stan.c.st_TowId == tw_id, tw_Stan.c.st_MagId == mag_id)
        .values(st_StanRez=_released(quantity))
    )


def _released(quantity: Decimal) -> Any:
    return case((tw_Stan.c.st_StanRez > quantity, tw_Stan.c.st_StanRez - quantity), else_=_zero)


def issue_stock(tw_id: int, mag_id: int, quantity: Decimal) -> Update:
    """Take goods out of stock and release their reservation, only if they are there."""
    return (
        sa_update(tw_Stan)
        .where(
            tw_Stan.c.st_TowId == tw_id,
            tw_Stan.c.st_MagId == mag_id,
            tw_Stan.c.st_Stan >= quantity,
        )
        .values(st_Stan=tw_Stan.c.st_Stan - quantity, st_StanRez=_released(quantity))
    )


def restock(tw_id: int, mag_id: int, quantity: Decimal) -> Update:
    return (
        sa_update(tw_Stan)
        .where(tw_Stan.c.st_TowId == tw_id, tw_Stan.c.st_MagId == mag_id)
        .values(st_Stan=tw_Stan.c.st_Stan + quantity)
    )


def insert_stock(tw_id: int, mag_id: int, quantity: Decimal) -> Insert:
    return insert(tw_Stan).values(
        st_TowId=tw_id,
        st_MagId=mag_id,
        st_Stan=quantity,
        st_StanRez=_zero,
        st_StanMin=_zero,
        st_StanMax=_zero,
    )


# -- sales documents ---------------------------------------------------------------------------

_SALES_COLUMNS = (
    dok__Dokument.c.dok_Id,
    dok__Dokument.c.dok_Typ,
    dok__Dokument.c.dok_NrPelny,
    dok__Dokument.c.dok_Status,
    dok__Dokument.c.dok_PlatnikId,
    dok__Dokument.c.dok_OdbiorcaId,
    dok__Dokument.c.dok_DataWyst,
    dok__Dokument.c.dok_PlatTermin,
    dok__Dokument.c.dok_WartNetto,
    dok__Dokument.c.dok_WartVat,
    dok__Dokument.c.dok_WartBrutto,
    dok__Dokument.c.dok_KwDoZaplaty,
    dok__Dokument.c.dok_Waluta,
    dok__Dokument.c.dok_MagId,
    dok__Dokument.c.dok_KatId,
    dok__Dokument.c.dok_CenyPoziom,
    dok__Dokument.c.dok_DoDokId,
    dok__Dokument.c.dok_DoDokNrPelny,
    dok__Dokument.c.dok_NrIdentNabywcy,
    dok__Dokument.c.dok_Uwagi,
)


def document(dok_id: int) -> Select[Any]:
    """A document header with the columns a sales document or a correction is made from."""
    return select(*_SALES_COLUMNS).where(dok__Dokument.c.dok_Id == dok_id)


def _sales(types: Sequence[int]) -> Select[Any]:
    return (
        select(*_SALES_COLUMNS)
        .where(
            dok__Dokument.c.dok_Typ.in_(list(types)),
            dok__Dokument.c.dok_Status == STATUS_EXECUTED,
        )
        .order_by(dok__Dokument.c.dok_Id)
        .limit(1)
    )


SALES_TYPES = (DocType.FS, DocType.PA)


def sales_document_by_id(dok_id: int, types: Sequence[int] = SALES_TYPES) -> Select[Any]:
    return _sales(types).where(dok__Dokument.c.dok_Id == dok_id)


def sales_document_by_number(number: str) -> Select[Any]:
    return _sales(SALES_TYPES).where(dok__Dokument.c.dok_NrPelny == number)


def document_by_key(token: str, types: Sequence[int]) -> Select[Any]:
    """The document of ``types`` written with this key token (``ix_dok_TransakcjaSymbol``)."""
    return (
        select(dok__Dokument.c.dok_Id)
        .where(
            dok__Dokument.c.dok_TransakcjaSymbol == token,
            dok__Dokument.c.dok_Typ.in_(list(types)),
        )
        .order_by(dok__Dokument.c.dok_Id)
        .limit(1)
    )


def payment_terms(kh_id: int) -> Select[Any]:
    """Deferred payment allowed, and the payment days of an invoice (``kh_MaxDniSp``)."""
    return select(kh__Kontrahent.c.kh_PlatOdroczone, kh__Kontrahent.c.kh_MaxDniSp).where(
        kh__Kontrahent.c.kh_Id == kh_id
    )


# -- receivables and payments ------------------------------------------------------------------


def receivable_of(dok_id: int) -> Select[Any]:
    return select(nz__Finanse).where(
        nz__Finanse.c.nzf_IdDokumentAuto == dok_id, nz__Finanse.c.nzf_Typ == RECEIVABLE
    )


def insert_settlement(values: dict[str, Any]) -> Insert:
    return insert(nz__Finanse).values(**values)


def pay_receivable(nzf_id: int, amount: Decimal) -> Update:
    """Book ``amount`` off a receivable, only if that much is still open."""
    return (
        sa_update(nz__Finanse)
        .where(nz__Finanse.c.nzf_Id == nzf_id, nz__Finanse.c.nzf_Wartosc >= amount)
        .values(
            nzf_Wartosc=nz__Finanse.c.nzf_Wartosc - amount,
            nzf_Splata=nz__Finanse.c.nzf_Splata + amount,
        )
    )


def reduce_receivable(nzf_id: int, amount: Decimal) -> Update:
    """A correction takes ``amount`` off what is open (the payments stay as they were)."""
    return (
        sa_update(nz__Finanse)
        .where(nz__Finanse.c.nzf_Id == nzf_id, nz__Finanse.c.nzf_Wartosc >= amount)
        .values(nzf_Wartosc=nz__Finanse.c.nzf_Wartosc - amount)
    )


def prepaid(order_id: int) -> Select[Any]:
    """What was paid on an order before its sales document existed."""
    return select(func.coalesce(func.sum(nz_FinanseSplata.c.nzs_Kwota), _zero)).where(
        nz_FinanseSplata.c.nzs_IdDokumentu == order_id,
        nz_FinanseSplata.c.nzs_IdFinanse.is_(None),
    )


def apply_prepayments(order_id: int, nzf_id: int) -> Update:
    return (
        sa_update(nz_FinanseSplata)
        .where(
            nz_FinanseSplata.c.nzs_IdDokumentu == order_id,
            nz_FinanseSplata.c.nzs_IdFinanse.is_(None),
        )
        .values(nzs_IdFinanse=nzf_id)
    )


def insert_payment(values: dict[str, Any]) -> Insert:
    return insert(nz_FinanseSplata).values(**values)


def payment_by_key(token: str) -> Select[Any]:
    return (
        select(nz_FinanseSplata)
        .where(nz_FinanseSplata.c.nzs_TransakcjaSymbol == token)
        .order_by(nz_FinanseSplata.c.nzs_Id)
        .limit(1)
    )


def payment_by_id(nzs_id: int) -> Select[Any]:
    return select(nz_FinanseSplata).where(nz_FinanseSplata.c.nzs_Id == nzs_id)


def settlement_by_id(nzf_id: int) -> Select[Any]:
    return select(nz__Finanse).where(nz__Finanse.c.nzf_Id == nzf_id)


# -- returns -----------------------------------------------------------------------------------


def corrections_of(dok_id: int) -> Select[Any]:
    """The lines of earlier corrections (KFS) of a document: negative quantities."""
    return (
        select(dok_Pozycja.c.ob_TowId, dok_Pozycja.c.ob_MagId, dok_Pozycja.c.ob_Ilosc)
        .select_from(
            dok_Pozycja.join(dok__Dokument, dok__Dokument.c.dok_Id == dok_Pozycja.c.ob_DokHanId)
        )
        .where(dok__Dokument.c.dok_DoDokId == dok_id, dok__Dokument.c.dok_Typ == DocType.KFS)
    )


def payable_of(dok_id: int, kind: int) -> Select[Any]:
    return select(nz__Finanse.c.nzf_Wartosc).where(
        nz__Finanse.c.nzf_IdDokumentAuto == dok_id, nz__Finanse.c.nzf_Typ == kind
    )


# -- complaints --------------------------------------------------------------------------------


def last_complaint_number(period_start: datetime, period_end: datetime) -> Select[Any]:
    return select(func.max(rk_Reklamacja.c.rk_Nr)).where(
        rk_Reklamacja.c.rk_Data >= period_start, rk_Reklamacja.c.rk_Data < period_end
    )


def insert_complaint(values: dict[str, Any]) -> Insert:
    return insert(rk_Reklamacja).values(**values)


def insert_complaint_line() -> Insert:
    """For ``executemany`` with one dict per line."""
    return insert(rk_Pozycja)


def complaint_by_id(rk_id: int) -> Select[Any]:
    return (
        select(rk_Reklamacja, dok__Dokument.c.dok_NrPelny)
        .select_from(
            rk_Reklamacja.join(dok__Dokument, dok__Dokument.c.dok_Id == rk_Reklamacja.c.rk_DokId)
        )
        .where(rk_Reklamacja.c.rk_Id == rk_id)
    )


def complaint_lines(rk_id: int) -> Select[Any]:
    return (
        select(tw__Towar.c.tw_Symbol, rk_Pozycja.c.rkp_Ilosc)
        .select_from(rk_Pozycja.join(tw__Towar, tw__Towar.c.tw_Id == rk_Pozycja.c.rkp_TowId))
        .where(rk_Pozycja.c.rkp_RkId == rk_id)
        .order_by(rk_Pozycja.c.rkp_Lp)
    )


def complaint_by_key(token: str) -> Select[Any]:
    return (
        select(rk_Reklamacja.c.rk_Id)
        .where(rk_Reklamacja.c.rk_TransakcjaSymbol == token)
        .order_by(rk_Reklamacja.c.rk_Id)
        .limit(1)
    )
