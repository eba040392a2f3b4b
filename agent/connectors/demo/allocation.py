"""Where each order line's quantity is reserved: the split policies of ``orders.create``.

Pure arithmetic over free stock (``st_Stan − st_StanRez`` per product and warehouse), so the
policies (`protocol.operations.orders.SplitPolicy`) are plain to read and to test:

- ``none``: the whole order from one warehouse, the first in preference order that has enough
  of every product (lines of the same product add up). When none has, the shortages reported
  are those of the most preferred warehouse, which is the single-warehouse refusal unchanged.
- ``whole_line``: each line, in order, from the first warehouse that still has enough for all of
  it; a line no warehouse can cover is short by what the best one has left.
- ``split_line``: each line takes what the warehouses have, in preference order, until covered;
  a product is short when all the warehouses together have less than its lines ask.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from protocol.operations.orders import SplitPolicy

Free = Mapping[tuple[int, int], Decimal]
"""Free quantity by (product id, warehouse id); a missing pair has none."""
Piece = tuple[int, Decimal]
"""(warehouse id, quantity) of one line."""

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Shortage:
    product: int
    requested: Decimal
    available: Decimal


class NotEnoughStock(Exception):
    def __init__(self, shortages: list[Shortage]) -> None:
        super().__init__("not enough stock")
        self.shortages = shortages


def allocate(
    lines: Sequence[tuple[int, Decimal]],
    warehouses: Sequence[int],
    free: Free,
    policy: SplitPolicy,
) -> list[list[Piece]]:
    """The pieces of each (product id, quantity) line, or `NotEnoughStock` with every shortage."""
    if policy == "none":
        return _one_warehouse(lines, warehouses, free)
    if policy == "whole_line":
        return _whole_lines(lines, warehouses, free)
    return _split_lines(lines, warehouses, free)


def _totals(lines: Sequence[tuple[int, Decimal]]) -> dict[int, Decimal]:
    totals: dict[int, Decimal] = {}
    for product, quantity in lines:
        totals[product] = totals.get(product, _ZERO) + quantity
    return totals


def _free(free: Free, product: int, warehouse: int) -> Decimal:
    return max(free.get((product, warehouse), _ZERO), _ZERO)


def _one_warehouse(
    lines: Sequence[tuple[int, Decimal]], warehouses: Sequence[int], free: Free
) -> list[list[Piece]]:
    totals = _totals(lines)
    for mag in warehouses:
        if all(total <= _free(free, product, mag) for product, total in totals.items()):
            return [[(mag, quantity)] for _product, quantity in lines]
    first = warehouses[0]
    raise NotEnoughStock(
        [
            Shortage(product, total, _free(free, product, first))
            for product, total in totals.items()
            if total > _free(free, product, first)
        ]
    )


def _whole_lines(
    lines: Sequence[tuple[int, Decimal]], warehouses: Sequence[int], free: Free
) -> list[list[Piece]]:
    left = {(p, m): _free(free, p, m) for p, _q in lines for m in warehouses}
    placed: list[list[Piece]] = []
    short: list[Shortage] = []
    for product, quantity in lines:
        mag = next((m for m in warehouses if left[product, m] >= quantity), None)
        if mag is None:
            best = max(left[product, m] for m in warehouses)
            short.append(Shortage(product, quantity, best))
            continue
        left[product, mag] -= quantity
        placed.append([(mag, quantity)])
    if short:
        raise NotEnoughStock(short)
    return placed


def _split_lines(
    lines: Sequence[tuple[int, Decimal]], warehouses: Sequence[int], free: Free
) -> list[list[Piece]]:
    left = {(p, m): _free(free, p, m) for p, _q in lines for m in warehouses}
    short = [
        Shortage(product, total, everywhere)
        for product, total in _totals(lines).items()
        if total > (everywhere := sum((left[product, m] for m in warehouses), _ZERO))
    ]
    if short:
        raise NotEnoughStock(short)
    placed: list[list[Piece]] = []
    for product, quantity in lines:
        pieces: list[Piece] = []
        remaining = quantity
        for mag in warehouses:
            take = min(left[product, mag], remaining)
            if take > 0:
                pieces.append((mag, take))
                left[product, mag] -= take
                remaining -= take
            if remaining == 0:
                break
        placed.append(pieces)
    return placed
