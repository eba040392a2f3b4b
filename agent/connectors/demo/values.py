"""Turning the demo ERP's rows into catalogue values, shared by every handler module.

Subiekt GT keeps money and quantities as SQL ``money`` (four decimals); the catalogue shows
amounts to the grosz and quantities without trailing zeros. Lookups by SKU fold case, because
SQL Server's Polish collation compares symbols case-insensitively and the demo must agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import Row

from agent.connectors.base import Conflict
from agent.connectors.demo.schema import PRICE_LEVELS
from protocol.operations.customers import Customer, NewCustomer
from protocol.operations.identifiers import normalize_nip
from protocol.operations.products import PriceLevel, Product
from protocol.operations.types import Address

CENT = Decimal("0.01")
NOTES_MAX = 500
"""``dok_Uwagi`` is ``varchar(500)`` in Subiekt GT."""
DELIVERY_MAX = 50
_FIELD_LIMITS = {
    "symbol": 20,
    "address.street": 60,
    "address.building": 10,
    "address.apartment": 10,
    "address.postal_code": 8,
    "address.city": 40,
    "phone": 35,
}
"""Column lengths of ``kh__Kontrahent`` / ``adr__Ewid`` stricter than the catalogue's."""


def int_id(value: str) -> int:
    """An ERP id as Subiekt's ``int`` key; ids beyond its range match nothing."""
    number = int(value)
    return number if number < 2**31 else -1


def money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def trim(value: Decimal, places: int = 0) -> Decimal:
    """Up to 4 decimals, no trailing zeros, at least ``places``: 2.0000 → 2, 19.9 → 19.90."""
    exact = value.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP).normalize()
    exponent = exact.as_tuple().exponent
    assert isinstance(exponent, int)
    if exponent > -places:
        return exact.quantize(Decimal(1).scaleb(-places))
    return exact


def dec_str(value: Decimal) -> str:
    return format(trim(value), "f")


def day(value: datetime | date | None) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    return value


def by_sku(rows: Sequence[Row[Any]]) -> dict[str, Row[Any]]:
    """Rows keyed by folded SKU: SQL Server matches symbols case-insensitively, and so do we."""
    return {row.tw_Symbol.casefold(): row for row in rows}


def unknown(skus: Sequence[str], found: Mapping[str, Any]) -> list[str]:
    return [sku for sku in skus if sku.casefold() not in found]


def credit_limit(row: Row[Any]) -> Decimal | None:
    limit = row.kh_MaxWartKred
    return money(limit) if limit is not None and limit > 0 else None


def customer_view(row: Row[Any]) -> Customer:
    nip = normalize_nip(row.adr_NIP) if row.adr_NIP else None
    return Customer(
        id=str(row.kh_Id),
        symbol=row.kh_Symbol,
        name=row.adr_Nazwa or row.kh_Symbol,
        full_name=row.adr_NazwaPelna or "",
        nip=nip or None,
        email=row.kh_EMail or None,
        phone=row.adr_Telefon or None,
        address=Address(
            street=row.adr_Ulica or "",
            building=row.adr_NrDomu or "",
            apartment=row.adr_NrLokalu or "",
            postal_code=row.adr_Kod or "",
            city=row.adr_Miejscowosc or "",
        ),
        kind="person" if row.kh_Osoba else "company",
        blocked=bool(row.kh_Zablokowany),
        price_level=row.kh_Cena,
        credit_limit=credit_limit(row),
    )


def product_view(row: Row[Any]) -> Product:
    return Product(
        id=str(row.tw_Id),
        sku=row.tw_Symbol,
        name=row.tw_Nazwa,
        ean=row.tw_PodstKodKresk or None,
        unit=row.tw_JednMiary,
        vat_rate=trim(row.vat_Stawka),
        blocked=bool(row.tw_Zablokowany),
    )


def used_levels(names_row: Row[Any] | None) -> list[tuple[int, str]]:
    """The price levels in use (``tw_Parametr`` gives them a name), as (number, name)."""
    if names_row is None:
        return []
    names = [(n, names_row[n - 1]) for n in range(1, PRICE_LEVELS + 1)]
    return [(n, name) for n, name in names if name]


def price_levels(row: Row[Any], used: Sequence[tuple[int, str]]) -> list[PriceLevel]:
    """A product's prices as ``products.prices`` shows them (and the change feed reports them):
    levels without a net price are left out, a missing gross is worked out from the VAT rate."""
    levels = []
    for n, name in used:
        net = row._mapping[f"tc_CenaNetto{n}"]
        if net is None:
            continue
        gross = row._mapping[f"tc_CenaBrutto{n}"]
        if gross is None:
            gross = money(net * (100 + row.vat_Stawka) / 100)
        levels.append(PriceLevel(level=n, name=name, net=trim(net, 2), gross=trim(gross, 2)))
    return levels


def check_lengths(new: NewCustomer) -> None:
    values = {
        "symbol": new.symbol or "",
        "address.street": new.address.street,
        "address.building": new.address.building,
        "address.apartment": new.address.apartment,
        "address.postal_code": new.address.postal_code,
        "address.city": new.address.city,
        "phone": new.phone or "",
    }
    too_long = [name for name, value in values.items() if len(value) > _FIELD_LIMITS[name]]
    if too_long:
        raise Conflict(
            "fields longer than the ERP stores",
            details={"fields": {name: _FIELD_LIMITS[name] for name in too_long}},
        )
