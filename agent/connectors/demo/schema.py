"""The demo ERP's tables: a subset of Subiekt GT's real schema, with its real names.

The demo exists so that everything above the connector (agent, relay, benchmarks, CRM examples)
meets the same table shapes as an office running Subiekt GT: customers whose name and NIP live in
the address table, stock reservations in ``st_StanRez``, receivables in ``nz__Finanse``, integer
keys without IDENTITY handed out by ``ins_ident``. The column subset is what the twelve catalogue
operations need; names, lengths and meanings follow ``/work/shared/erp/erp-schemas.md`` section 1
and the EF Core scaffold it cites (see ``docs/erp/demo.md`` for the confidence of each).

Subiekt GT keeps money *and* quantities in SQL ``money``: a 64-bit integer counting 1/10,000ths.
`Money4` is that type on SQL Server and the very same representation (an integer of 1/10,000ths)
on SQLite, so sums, comparisons and ``st_StanRez + :qty`` stay exact in SQL and Python sees
`Decimal`, never `float`.
"""

# Table variables carry Subiekt GT's own names (kh__Kontrahent), so the SQL reads like its docs.
# ruff: noqa: N816

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    Table,
    Unicode,
)
from sqlalchemy.dialects import mssql
from sqlalchemy.types import TypeDecorator, TypeEngine

_SCALE = Decimal(10_000)
_FOUR_PLACES = Decimal("0.0001")


class Money4(TypeDecorator[Decimal]):
    """SQL ``money``: exact to 1/10,000; `Decimal` in Python on every database.

    SQL Server gets its native ``MONEY``. SQLite has no exact decimal type (``NUMERIC`` there is a
    float), so the value is stored as the integer number of 1/10,000ths, which is how SQL Server
    stores ``money`` too. Other databases get ``NUMERIC(19, 4)``.
    """

    impl = Numeric(19, 4, asdecimal=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        if dialect.name == "mssql":
            return dialect.type_descriptor(mssql.MONEY())
        return dialect.type_descriptor(Numeric(19, 4, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if isinstance(value, float):
            raise TypeError("money values must be Decimal, not float")
        amount = Decimal(value).quantize(_FOUR_PLACES, rounding=ROUND_HALF_UP)
        if dialect.name == "sqlite":
            return int(amount * _SCALE)
        return amount

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return (Decimal(int(value)) / _SCALE).quantize(_FOUR_PLACES)
        if isinstance(value, float):  # a driver that ignored asdecimal; never trust its float
            return Decimal(repr(value)).quantize(_FOUR_PLACES)
        return Decimal(value).quantize(_FOUR_PLACES)

    def coerce_compared_value(self, op: Any, value: Any) -> TypeEngine[Any]:
        """Literals compared with or added to money are money too (scaled on SQLite)."""
        return self


def _text(length: int | None = None) -> Unicode:
    """NVARCHAR: Polish names need Unicode on SQL Server (``varchar`` would use a code page)."""
    return Unicode(length)


PRICE_LEVELS = 10
"""Subiekt GT has price levels 1..10 in ``tw_Cena`` (level 0 exists; its meaning is unverified)."""

metadata = MetaData()

ins_ident = Table(
    "ins_ident",
    metadata,
    Column("ido_nazwa", _text(50), primary_key=True),
    Column("ido_wartosc", Integer, nullable=False),
)
"""Last id handed out per table; ``spIdentyfikator`` bumps it, so do we (never MAX()+1)."""

kh__Kontrahent = Table(
    "kh__Kontrahent",
    metadata,
    Column("kh_Id", Integer, primary_key=True, autoincrement=False),
    Column("kh_Symbol", _text(20), nullable=False),
    Column("kh_Rodzaj", Integer, nullable=False, default=0),
    Column("kh_EMail", _text(255), nullable=False, default=""),
    Column("kh_Osoba", Boolean, nullable=False, default=False),
    Column("kh_Imie", _text(20), nullable=False, default=""),
    Column("kh_Nazwisko", _text(51), nullable=False, default=""),
    Column("kh_Cena", Integer, nullable=True),
    Column("kh_PlatOdroczone", Boolean, nullable=False, default=False),
    Column("kh_MaxWartKred", Money4, nullable=False, default=Decimal(0)),
    Column("kh_MaxDniSp", Integer, nullable=False, default=0),
    Column("kh_Zablokowany", Boolean, nullable=False, default=False),
    Column("kh_Uwagi", _text(1000), nullable=False, default=""),
    Column("kh_DataDodania", DateTime, nullable=True),
    Column("kh_IdRabat", Integer, nullable=True),
    Column("kh_IdFormaP", Integer, nullable=True),
    *(Column(f"kh_Pole{n}", _text(50), nullable=False, default="") for n in range(1, 9)),
    Index("ix_kh_Symbol", "kh_Symbol", unique=True),
    Index("ix_kh_EMail", "kh_EMail"),
    Index("ix_kh_Pole8", "kh_Pole8"),
)
"""``kh_Pole1..8`` are Subiekt GT's customer custom fields (``varchar(50)``, notes: A). The demo
writes the idempotency token of ``customers.create`` into ``kh_Pole8`` (see ``keys.py``)."""

adr__Ewid = Table(
    "adr__Ewid",
    metadata,
    Column("adr_Id", Integer, primary_key=True, autoincrement=False),
    Column("adr_IdObiektu", Integer, nullable=False),
    Column("adr_TypAdresu", Integer, nullable=False),
    Column("adr_Nazwa", _text(53), nullable=False, default=""),
    Column("adr_NazwaPelna", _text(255), nullable=False, default=""),
    Column("adr_Telefon", _text(35), nullable=False, default=""),
    Column("adr_Ulica", _text(60), nullable=False, default=""),
    Column("adr_NrDomu", _text(10), nullable=False, default=""),
    Column("adr_NrLokalu", _text(10), nullable=False, default=""),
    Column("adr_Kod", _text(8), nullable=False, default=""),
    Column("adr_Miejscowosc", _text(40), nullable=False, default=""),
    Column("adr_NIP", _text(20), nullable=False, default=""),
    Column("adr_Symbol", _text(20), nullable=False, default=""),
    Index("ix_adr_IdObiektu_TypAdresu", "adr_IdObiektu", "adr_TypAdresu"),
    Index("ix_adr_NIP", "adr_NIP"),
    Index("ix_adr_Nazwa", "adr_Nazwa"),
)
"""``adr_TypAdresu = 1`` is the customer's main address, holding its name and NIP."""

sl_StawkaVAT = Table(
    "sl_StawkaVAT",
    metadata,
    Column("vat_Id", Integer, primary_key=True, autoincrement=False),
    Column("vat_Nazwa", _text(50), nullable=False),
    Column("vat_Stawka", Money4, nullable=False),
    Column("vat_Symbol", _text(5), nullable=False),
)

tw__Towar = Table(
    "tw__Towar",
    metadata,
    Column("tw_Id", Integer, primary_key=True, autoincrement=False),
    Column("tw_Symbol", _text(20), nullable=False),
    Column("tw_Rodzaj", Integer, nullable=False, default=1),
    Column("tw_Nazwa", _text(50), nullable=False),
    Column("tw_Opis", _text(255), nullable=False, default=""),
    Column("tw_PodstKodKresk", _text(20), nullable=False, default=""),
    Column("tw_JednMiary", _text(10), nullable=False),
    Column("tw_IdVatSp", Integer, nullable=False),
    Column("tw_Zablokowany", Boolean, nullable=False, default=False),
    Column("tw_Usuniety", Boolean, nullable=False, default=False),
    Index("ix_tw_Symbol", "tw_Symbol", unique=True),
    Index("ix_tw_PodstKodKresk", "tw_PodstKodKresk"),
)

tw_Cena = Table(
    "tw_Cena",
    metadata,
    Column("tc_Id", Integer, primary_key=True, autoincrement=False),
    Column("tc_IdTowar", Integer, nullable=False),
    *(Column(f"tc_CenaNetto{n}", Money4, nullable=True) for n in range(PRICE_LEVELS + 1)),
    *(Column(f"tc_CenaBrutto{n}", Money4, nullable=True) for n in range(PRICE_LEVELS + 1)),
    Index("ix_tc_IdTowar", "tc_IdTowar", unique=True),
)

tw_Parametr = Table(
    "tw_Parametr",
    metadata,
    Column("twp_Id", Integer, primary_key=True, autoincrement=False),
    *(
        Column(f"twp_NazwaCeny{n}", _text(30), nullable=False, default="")
        for n in range(1, PRICE_LEVELS + 1)
    ),
)
"""One row: the names of price levels 1..10 (an empty name means the level is unused)."""

sl_Rabat = Table(
    "sl_Rabat",
    metadata,
    Column("rt_Id", Integer, primary_key=True, autoincrement=False),
    Column("rt_Nazwa", _text(50), nullable=True),
    Column("rt_Rodzaj", Integer, nullable=False, default=0),
    Column("rt_Procent", Money4, nullable=False),
)
"""Discounts (scaffold); a customer's is ``kh__Kontrahent.kh_IdRabat``. Reading ``rt_Procent`` as
the percent taken off the customer's price level is ours (G)."""

sl_FormaPlatnosci = Table(
    "sl_FormaPlatnosci",
    metadata,
    Column("fp_Id", Integer, primary_key=True, autoincrement=False),
    Column("fp_Nazwa", _text(50), nullable=False),
    Column("fp_Termin", Integer, nullable=False, default=0),
    Column("fp_Typ", Integer, nullable=False, default=0),
    Column("fp_Aktywna", Boolean, nullable=False, default=True),
)
"""Payment methods (scaffold); a customer's default is ``kh__Kontrahent.kh_IdFormaP``."""

sl_Magazyn = Table(
    "sl_Magazyn",
    metadata,
    Column("mag_Id", Integer, primary_key=True, autoincrement=False),
    Column("mag_Symbol", _text(3), nullable=False),
    Column("mag_Nazwa", _text(50), nullable=False),
    Column("mag_Glowny", Boolean, nullable=False, default=False),
    Column("mag_Status", Integer, nullable=False, default=1),
    Index("ix_mag_Symbol", "mag_Symbol", unique=True),
)

tw_Stan = Table(
    "tw_Stan",
    metadata,
    Column("st_TowId", Integer, nullable=False),
    Column("st_MagId", Integer, nullable=False),
    Column("st_Stan", Money4, nullable=False, default=Decimal(0)),
    Column("st_StanRez", Money4, nullable=False, default=Decimal(0)),
    Column("st_StanMin", Money4, nullable=False, default=Decimal(0)),
    Column("st_StanMax", Money4, nullable=False, default=Decimal(0)),
    PrimaryKeyConstraint("st_TowId", "st_MagId"),
)

dok__Dokument = Table(
    "dok__Dokument",
    metadata,
    Column("dok_Id", Integer, primary_key=True, autoincrement=False),
    Column("dok_Typ", Integer, nullable=False),
    Column("dok_Podtyp", Integer, nullable=False, default=0),
    Column("dok_MagId", Integer, nullable=True),
    Column("dok_Nr", Integer, nullable=True),
    Column("dok_NrRoz", _text(3), nullable=True),
    Column("dok_NrPelny", _text(30), nullable=False),
    Column("dok_NrPelnyOryg", _text(30), nullable=False, default=""),
    Column("dok_NrIdentNabywcy", _text(20), nullable=True),
    Column("dok_DoDokId", Integer, nullable=True),
    Column("dok_DoDokNrPelny", _text(30), nullable=False, default=""),
    Column("dok_DataWyst", DateTime, nullable=False),
    Column("dok_DataMag", DateTime, nullable=False),
    Column("dok_TerminRealizacji", DateTime, nullable=True),
    Column("dok_PlatnikId", Integer, nullable=True),
    Column("dok_OdbiorcaId", Integer, nullable=True),
    Column("dok_PlatTermin", DateTime, nullable=True),
    Column("dok_CenyPoziom", Integer, nullable=True),
    Column("dok_WartNetto", Money4, nullable=False),
    Column("dok_WartVat", Money4, nullable=False),
    Column("dok_WartBrutto", Money4, nullable=False),
    Column("dok_KwDoZaplaty", Money4, nullable=True),
    Column("dok_Waluta", _text(3), nullable=True),
    Column("dok_Uwagi", _text(500), nullable=False, default=""),
    Column("dok_Podtytul", _text(50), nullable=False, default=""),
    Column("dok_Status", Integer, nullable=False),
    Column("dok_TransakcjaSymbol", _text(30), nullable=True),
    Column("dok_KatId", Integer, nullable=True),
    Index("ix_dok_Typ_DataWyst", "dok_Typ", "dok_DataWyst"),
    Index("ix_dok_PlatnikId_Typ_DataWyst", "dok_PlatnikId", "dok_Typ", "dok_DataWyst"),
    Index("ix_dok_NrPelny", "dok_NrPelny"),
    Index("ix_dok_NrPelnyOryg", "dok_NrPelnyOryg"),
    Index("ix_dok_TransakcjaSymbol", "dok_TransakcjaSymbol"),
    Index("ix_dok_DoDokId", "dok_DoDokId"),
)
"""Document headers. ``dok_NrPelnyOryg`` (the original/foreign number) holds the shop's number;
``dok_TransakcjaSymbol`` (``varchar(30) NULL``, scaffold) the idempotency token of the write.
``dok_DoDokId`` / ``dok_DoDokNrPelny`` (scaffold; public code links FS/PA to their ZK and a KFS to
its FS this way, C) point a document at the one it was made from."""

dok_Pozycja = Table(
    "dok_Pozycja",
    metadata,
    Column("ob_Id", Integer, primary_key=True, autoincrement=False),
    Column("ob_DokHanId", Integer, nullable=True),
    Column("ob_DokMagId", Integer, nullable=True),
    Column("ob_DokHanLp", Integer, nullable=False),
    Column("ob_TowId", Integer, nullable=False),
    Column("ob_Ilosc", Money4, nullable=False),
    Column("ob_Jm", _text(10), nullable=False),
    Column("ob_CenaNetto", Money4, nullable=False),
    Column("ob_CenaBrutto", Money4, nullable=False),
    Column("ob_Rabat", Money4, nullable=False, default=Decimal(0)),
    Column("ob_VatId", Integer, nullable=False),
    Column("ob_VatProc", Money4, nullable=False),
    Column("ob_WartNetto", Money4, nullable=False),
    Column("ob_WartVat", Money4, nullable=False),
    Column("ob_WartBrutto", Money4, nullable=False),
    Column("ob_MagId", Integer, nullable=True),
    Column("ob_CenaNabycia", Money4, nullable=True),
    Column("ob_WartNabycia", Money4, nullable=True),
    Index("ix_ob_DokHanId", "ob_DokHanId", "ob_DokHanLp"),
)
"""``ob_CenaNabycia`` / ``ob_WartNabycia`` (scaffold) are the purchase price and value of what a
sales line sold: the cost ``reports.sales`` takes the margin from (NULL: unknown)."""

nz__Finanse = Table(
    "nz__Finanse",
    metadata,
    Column("nzf_Id", Integer, primary_key=True, autoincrement=False),
    Column("nzf_Data", DateTime, nullable=False),
    Column("nzf_TerminPlatnosci", DateTime, nullable=True),
    Column("nzf_Typ", Integer, nullable=False),
    Column("nzf_WartoscPierwotna", Money4, nullable=False),
    Column("nzf_Wartosc", Money4, nullable=False),
    Column("nzf_Splata", Money4, nullable=False, default=Decimal(0)),
    Column("nzf_IdWaluty", _text(3), nullable=False, default="PLN"),
    Column("nzf_IdDokumentAuto", Integer, nullable=True),
    Column("nzf_IdObiektu", Integer, nullable=True),
    Column("nzf_TypObiektu", Integer, nullable=False),
    Column("nzf_Status", Integer, nullable=False, default=1),
    Column("nzf_NumerPelny", _text(30), nullable=True),
    Index("ix_nzf_Obiekt_Typ", "nzf_IdObiektu", "nzf_TypObiektu", "nzf_Typ"),
    Index("ix_nzf_IdDokumentAuto", "nzf_IdDokumentAuto"),
)
"""Settlements. ``nzf_Typ = 39`` receivable; ``nzf_Wartosc`` is what is still open."""

nz_FinanseSplata = Table(
    "nz_FinanseSplata",
    metadata,
    Column("nzs_Id", Integer, primary_key=True, autoincrement=False),
    Column("nzs_IdFinanse", Integer, nullable=True),
    Column("nzs_IdDokumentu", Integer, nullable=True),
    Column("nzs_IdObiektu", Integer, nullable=True),
    Column("nzs_Kwota", Money4, nullable=False),
    Column("nzs_Waluta", _text(3), nullable=False, default="PLN"),
    Column("nzs_Data", DateTime, nullable=False),
    Column("nzs_FormaPlatnosci", _text(50), nullable=False, default=""),
    Column("nzs_Opis", _text(100), nullable=False, default=""),
    Column("nzs_TransakcjaSymbol", _text(30), nullable=True),
    Index("ix_nzs_IdDokumentu", "nzs_IdDokumentu"),
    Index("ix_nzs_IdFinanse", "nzs_IdFinanse"),
    Index("ix_nzs_TransakcjaSymbol", "nzs_TransakcjaSymbol"),
)
"""Payments booked against a receivable (``nzs_IdFinanse``) or, before the invoice exists,
against the order (``nzs_IdDokumentu`` = the ZK, ``nzs_IdFinanse`` NULL). The table name is
Subiekt GT's (the shared notes: "payments are in nz_FinanseSplata"); its columns are ours
(**G**). ``nzs_TransakcjaSymbol`` holds the idempotency token of ``payments.register``."""


fl_Wartosc = Table(
    "fl_Wartosc",
    metadata,
    Column("flw_IdGrupyFlag", Integer, nullable=False),
    Column("flw_TypObiektu", Integer, nullable=False),
    Column("flw_IdObiektu", Integer, nullable=False),
    Column("flw_IdFlagi", Integer, nullable=True),
    Column("flw_Komentarz", _text(255), nullable=False, default=""),
    Column("flw_IdUzytkownika", Integer, nullable=False),
    Column("flw_CzasOstatniejZmiany", DateTime, nullable=False),
    PrimaryKeyConstraint("flw_IdGrupyFlag", "flw_TypObiektu", "flw_IdObiektu"),
)
"""Subiekt GT's flags on objects (names: scaffold). The demo keeps an order's shop-facing status
(``orders.update_status``) as the comment of its flag in one group; ids and meanings are G."""

rk_Reklamacja = Table(
    "rk_Reklamacja",
    metadata,
    Column("rk_Id", Integer, primary_key=True, autoincrement=False),
    Column("rk_Nr", Integer, nullable=False),
    Column("rk_NrPelny", _text(30), nullable=False),
    Column("rk_DokId", Integer, nullable=False),
    Column("rk_KhId", Integer, nullable=True),
    Column("rk_Data", DateTime, nullable=False),
    Column("rk_Opis", _text(1000), nullable=False, default=""),
    Column("rk_Status", Integer, nullable=False, default=1),
    Column("rk_TransakcjaSymbol", _text(30), nullable=True),
    Index("ix_rk_DokId", "rk_DokId"),
    Index("ix_rk_TransakcjaSymbol", "rk_TransakcjaSymbol"),
)
"""Complaints (``complaints.create``) about goods of an FS or PA (``rk_DokId``). Subiekt GT's
complaints module has its own tables we have no notes on: table and columns are the demo's (G)."""

rk_Pozycja = Table(
    "rk_Pozycja",
    metadata,
    Column("rkp_Id", Integer, primary_key=True, autoincrement=False),
    Column("rkp_RkId", Integer, nullable=False),
    Column("rkp_Lp", Integer, nullable=False),
    Column("rkp_TowId", Integer, nullable=False),
    Column("rkp_Ilosc", Money4, nullable=False),
    Index("ix_rkp_RkId", "rkp_RkId"),
)
"""The goods a complaint is about (G, like ``rk_Reklamacja``)."""


sl_Kategoria = Table(
    "sl_Kategoria",
    metadata,
    Column("kat_Id", Integer, primary_key=True, autoincrement=False),
    Column("kat_Nazwa", _text(50), nullable=False),
    Index("ix_kat_Nazwa", "kat_Nazwa"),
)
"""Document categories (``dok_KatId`` points here; names from Subiekt GT, columns beyond these
are left out). The demo keeps an order's sales channel as its category (**G**), one row per
channel name, created on first use."""

dok_Odbior = Table(
    "dok_Odbior",
    metadata,
    Column("odb_Id", Integer, primary_key=True, autoincrement=False),
    Column("odb_DokId", Integer, nullable=False),
    Column("odb_MagId", Integer, nullable=False),
    Column("odb_Data", DateTime, nullable=False),
    Column("odb_TransakcjaSymbol", _text(30), nullable=True),
    Index("ix_odb_DokId", "odb_DokId", unique=True),
    Index("ix_odb_TransakcjaSymbol", "odb_TransakcjaSymbol"),
)
"""Pickups in store (``orders.picked_up``): the ZK (``odb_DokId``) the customer collected, in
which store's warehouse, when, and the idempotency token. Subiekt GT has no such table; the
whole table is the demo's (**G**)."""


class DocType:
    """``dok_Typ`` codes of Subiekt GT (confidence B in the shared notes)."""

    FS = 2
    KFS = 6
    MM = 9
    WZ = 11
    ZD = 15
    ZK = 16
    PA = 21


DOC_SYMBOLS: dict[int, str] = {
    DocType.FS: "FS",
    DocType.KFS: "KFS",
    DocType.MM: "MM",
    DocType.ZD: "ZD",
    DocType.ZK: "ZK",
    DocType.PA: "PA",
}

RECEIVABLE = 39
"""``nzf_Typ`` of a receivable (należność)."""

OBJECT_CUSTOMER = 1
"""``nzf_TypObiektu`` of a customer (kontrahent)."""

MAIN_ADDRESS = 1
"""``adr_TypAdresu`` of a customer's main address."""

STATUS_EXECUTED = 1
"""``dok_Status`` of an executed (issued) sales document; the shared notes use it as the filter."""

STATUS_ORDER_OPEN = 7
"""``dok_Status`` of an active (open, reserving) ZK; one public source (C), see docs/erp/demo.md."""

STATUS_ORDER_COMPLETED = 8
"""``dok_Status`` of a ZK that was fulfilled (``orders.fulfil``); C like 7."""

STATUS_ORDER_CANCELLED = 9
"""``dok_Status`` the demo gives a cancelled ZK (``orders.cancel``): our choice, **G**."""

ORDER_STATUSES: dict[int, str] = {6: "offer", 7: "open", 8: "completed", 9: "cancelled"}
"""``dok_Status`` of a ZK as the catalogue's ``Order.status`` (6/7/8 seen in one public source,
9 = cancelled is the demo's, G)."""

PAYABLE = 40
"""``nzf_Typ`` of a payable (zobowiązanie): what a return owes a customer who had paid (G)."""

ID_TABLES = (
    "sl_Rabat",
    "sl_FormaPlatnosci",
    "kh__Kontrahent",
    "adr__Ewid",
    "tw__Towar",
    "tw_Cena",
    "dok__Dokument",
    "dok_Pozycja",
    "nz__Finanse",
    "nz_FinanseSplata",
    "rk_Reklamacja",
    "rk_Pozycja",
    "sl_Kategoria",
    "dok_Odbior",
)
"""Tables whose ids come from ``ins_ident``."""
