"""Field types shared by the operation models.

Money, prices and quantities are `Decimal` in Python and decimal *strings* on the wire
(``"1234.50"``): a JSON number with a fraction is refused, because a float cannot hold 0.10 and
an invoice must add up to the grosz. Dates travel as ISO 8601. ERP identifiers are strings:
Subiekt GT uses integers, SAP Business One uses codes such as ``C20000``, and one wire type must
hold both.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)

from protocol.operations.identifiers import is_valid_ean13, is_valid_nip, normalize_nip

_MAX_DIGITS = 19
_PLAIN_DECIMAL = re.compile(r"^-?\d+(\.\d+)?$")


def _plain_decimal(value: Any) -> Any:
    """Refuse floats, and strings that are not plain decimal notation ("1e3", "+3", "1_000")."""
    if isinstance(value, float):
        raise ValueError('send decimal amounts as strings, for example "1234.50"')
    if isinstance(value, str) and not _PLAIN_DECIMAL.match(value.strip()):
        raise ValueError('not a plain decimal number such as "1234.50"')
    return value


def _no_exponent(value: Decimal) -> Decimal:
    """Keep the wire form plain: ``Decimal("1E+3")`` would serialise as "1E+3"."""
    return value.quantize(_ONE) if value.as_tuple().exponent > 0 else value  # type: ignore[operator]


_ONE = Decimal(1)


def _decimal_type(places: int, description: str, example: str) -> Any:
    # Serialised by pydantic's own (Rust) Decimal-to-string; `_no_exponent` makes it plain.
    return Annotated[
        Decimal,
        BeforeValidator(_plain_decimal),
        Field(max_digits=_MAX_DIGITS, decimal_places=places, allow_inf_nan=False),
        AfterValidator(_no_exponent),
        WithJsonSchema(
            {
                "type": "string",
                "pattern": rf"^-?\d{{1,{_MAX_DIGITS - places}}}(\.\d{{1,{places}}})?$",
                "description": description,
                "examples": [example],
            }
        ),
    ]


Money = _decimal_type(2, "Amount as a decimal string, at most 2 decimal places", "1234.50")
Price = _decimal_type(4, "Unit price as a decimal string, at most 4 decimal places", "19.99")
Quantity = _decimal_type(4, "Quantity as a decimal string, at most 4 decimal places", "2")
Rate = _decimal_type(2, "Percentage as a decimal string", "23")


def _check_nip(value: str) -> str:
    digits = normalize_nip(value)
    if not is_valid_nip(digits):
        raise ValueError("not a valid Polish NIP (10 digits with a correct check digit)")
    return digits


def _check_ean(value: str) -> str:
    if not is_valid_ean13(value):
        raise ValueError("not a valid EAN-13 (13 digits with a correct check digit)")
    return value


Nip = Annotated[
    str,
    Field(min_length=10, max_length=16, examples=["5260001246"]),
    AfterValidator(_check_nip),
]
"""A Polish NIP; separators and a ``PL`` prefix are accepted and stripped."""

Ean13 = Annotated[str, Field(min_length=13, max_length=13), AfterValidator(_check_ean)]
ErpId = Annotated[str, Field(min_length=1, max_length=64, examples=["1042"])]
Symbol = Annotated[str, Field(min_length=1, max_length=64)]
Sku = Annotated[str, Field(min_length=1, max_length=64, examples=["KAW-001"])]
ShortText = Annotated[str, Field(max_length=255)]
Name = Annotated[str, Field(min_length=1, max_length=255)]
Notes = Annotated[str, Field(max_length=2000)]
Limit = Annotated[int, Field(ge=1, le=200)]
Offset = Annotated[int, Field(ge=0, le=1_000_000)]
Currency = Annotated[str, Field(min_length=3, max_length=3, examples=["PLN"])]


class Model(BaseModel):
    """Base of every operation model: unknown fields are refused, models are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Lookup(Model):
    """Exactly one of the fields identifies the record."""

    @model_validator(mode="after")
    def _exactly_one(self) -> Lookup:
        # __dict__ directly: iterating the model goes through pydantic's Python __iter__,
        # and this runs on every call that names a customer, product or order.
        given = sum(value is not None for value in self.__dict__.values())
        if given != 1:
            names = ", ".join(type(self).model_fields)
            raise ValueError(f"give exactly one of: {names}")
        return self


class Address(Model):
    street: ShortText = ""
    building: Annotated[str, Field(max_length=20)] = ""
    apartment: Annotated[str, Field(max_length=20)] = ""
    postal_code: Annotated[str, Field(max_length=12)] = ""
    city: Annotated[str, Field(max_length=100)] = ""
    country: Annotated[str, Field(min_length=2, max_length=2)] = "PL"


class Page(Model):
    """Paging of a search: ``next_offset`` is null on the last page."""

    next_offset: int | None = None
