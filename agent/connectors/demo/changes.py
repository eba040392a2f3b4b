"""Change detection in the demo ERP (Subiekt GT's tables): no triggers, no schema changes.

Subiekt GT has no rowversion columns on the tables that matter, so each poll compares narrow
snapshots with the previous poll's (`Snapshot`, the opaque state of
`agent.connectors.base.ConnectorSession.poll_changes`):

- stock: ``tw_Stan`` (``st_Stan``, ``st_StanRez`` per product and warehouse) → `StockChanged`;
- prices: a digest of each product's ``tw_Cena`` levels and VAT rate → `PriceChanged`, with
  every level as ``products.prices`` shows it;
- new sales documents (FS, PA, KFS in ``dok__Dokument``) → `InvoiceIssued`, new payments
  (``nz_FinanseSplata``) → `PaymentRegistered`: ids come from ``ins_ident`` *before* the
  inserting transaction commits, so a document may appear below an id already seen. A
  high-water mark would skip it; `RecentIds` keeps the recent range instead, until no
  transaction that took an id in it can still be running (`GRACE_S`);
- customer orders (ZK): the status of every order not in a final state, plus new ones →
  `OrderStatusChanged` (a new order is reported with no previous status).

Only changed rows are read in full and turned into changes. The first poll (no state) takes the
baseline and reports nothing.
"""

from __future__ import annotations

import hashlib
import logging
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar

import orjson
from sqlalchemy import Connection

from agent.connectors.base import ChangePoll
from agent.connectors.demo import queries as q
from agent.connectors.demo import queries_changes as qc
from agent.connectors.demo.schema import ORDER_STATUSES, DocType
from agent.connectors.demo.session import DemoSessionBase
from agent.connectors.demo.values import by_sku, day, money, price_levels, trim, used_levels
from protocol.changes import (
    Change,
    InvoiceIssued,
    OrderStatusChanged,
    PaymentRegistered,
    PriceChanged,
    StockChanged,
)

log = logging.getLogger("agent.connectors.demo.changes")
_T = TypeVar("_T")

GRACE_S = 600.0
"""A transaction that took an id commits or rolls back within this long (Subiekt GT's and the
agent's are seconds long); ids allocated before then are settled."""
BASELINE_IDS = 1000
"""At the baseline, ids this far below the highest stay watched: a document numbered just
before the baseline may still be committing."""
CHUNK = 500
"""Ids per ``IN (...)`` list: every database takes this many parameters."""
FORMAT = 1

INVOICE_KINDS: dict[int, str] = {DocType.FS: "FS", DocType.PA: "PA", DocType.KFS: "KFS"}
FINAL_ORDER_STATES = frozenset({"completed", "cancelled"})
"""Order statuses that do not change any more: such orders are no longer watched."""


def _open_order_codes() -> list[int]:
    return sorted(code for code, name in ORDER_STATUSES.items() if name not in FINAL_ORDER_STATES)


def _status(code: int) -> str:
    return ORDER_STATUSES.get(code, f"status_{code}")


def _digest(values: Sequence[Any]) -> int:
    """A 64-bit digest of a row's raw values (a signed integer, so JSON keeps it exact)."""
    blake = hashlib.blake2b(repr(tuple(values)).encode(), digest_size=8)
    return int.from_bytes(blake.digest(), "big", signed=True)


def _chunks(values: Sequence[_T]) -> Iterator[Sequence[_T]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


@dataclass(frozen=True, slots=True)
class RecentIds:
    """New rows of a table whose ids are handed out before commit.

    Every id at or below ``floor`` is settled; ``seen`` are the ids above it already reported.
    ``marks`` remember when the highest id seen rose: every id below that one was handed out
    before that moment, so `GRACE_S` later the floor may move up to it.
    """

    floor: int
    seen: frozenset[int]
    marks: tuple[tuple[float, int], ...]

    @classmethod
    def baseline(cls, highest: int, now_s: float) -> RecentIds:
        return cls(max(highest - BASELINE_IDS, 0), frozenset(), ((now_s, highest),))

    def advance(self, found: Iterable[int], now_s: float) -> tuple[RecentIds, list[int]]:
        """Take the ids now above the floor; return the next state and the ids not seen before."""
        new = sorted(set(found) - self.seen)
        seen = self.seen.union(new)
        top = max(seen, default=self.floor)
        marks = self.marks
        if not marks or top > marks[-1][1]:
            marks = (*marks, (now_s, top))
        floor = self.floor
        settled = [mark for mark in marks if mark[0] <= now_s - GRACE_S]
        if settled:
            floor = max(floor, settled[-1][1])
            marks = tuple(mark for mark in marks if mark[0] > now_s - GRACE_S)
        return RecentIds(floor, frozenset(i for i in seen if i > floor), marks), new

    def dump(self) -> dict[str, Any]:
        return {"floor": self.floor, "seen": sorted(self.seen), "marks": self.marks}

    @classmethod
    def load(cls, data: dict[str, Any]) -> RecentIds:
        marks = tuple((float(at), int(top)) for at, top in data["marks"])
        return cls(int(data["floor"]), frozenset(int(i) for i in data["seen"]), marks)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the previous poll saw; encoded as compressed JSON for the agent's outbox."""

    stock: dict[tuple[int, int], tuple[str, str]]
    """(product, warehouse) → (quantity, reserved) as the driver returned them."""
    prices: dict[int, int]
    """Product → digest of its price columns and VAT rate."""
    documents: RecentIds
    """FS, PA, KFS and ZK."""
    payments: RecentIds
    orders: dict[int, int]
    """Orders not in a final state → their ``dok_Status``."""

    def encode(self) -> bytes:
        data = {
            "format": FORMAT,
            "stock": [[tw, mag, qty, rez] for (tw, mag), (qty, rez) in self.stock.items()],
            "prices": list(self.prices.items()),
            "documents": self.documents.dump(),
            "payments": self.payments.dump(),
            "orders": list(self.orders.items()),
        }
        return zlib.compress(orjson.dumps(data), 1)

    @classmethod
    def decode(cls, state: bytes) -> Snapshot | None:
        """The snapshot, or None when ``state`` is not one this version wrote."""
        try:
            data = orjson.loads(zlib.decompress(state))
            if data.get("format") != FORMAT:
                return None
            return cls(
                stock={(tw, mag): (qty, rez) for tw, mag, qty, rez in data["stock"]},
                prices={int(tw): int(digest) for tw, digest in data["prices"]},
                documents=RecentIds.load(data["documents"]),
                payments=RecentIds.load(data["payments"]),
                orders={int(dok): int(status) for dok, status in data["orders"]},
            )
        except (zlib.error, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None


class ChangeDetection(DemoSessionBase):
    """`poll_changes` for the demo session; one read transaction per poll."""

    def poll_changes(self, state: bytes | None) -> ChangePoll:
        return self._attempt(partial(self._poll_changes, state), None, True)

    def _poll_changes(self, state: bytes | None) -> ChangePoll:
        previous = Snapshot.decode(state) if state is not None else None
        if state is not None and previous is None:
            log.warning("the change detection state is unreadable; taking a new baseline")
        with self._read() as conn:
            snapshot, changes = _Poll(conn, datetime.now(UTC), time.time()).run(previous)
        return ChangePoll(changes=changes, state=snapshot.encode())


class _Poll:
    """One poll over one connection: ``at`` stamps the changes, ``now_s`` moves `RecentIds`."""

    def __init__(self, conn: Connection, at: datetime, now_s: float) -> None:
        self.conn = conn
        self.at = at
        self.now_s = now_s

    def run(self, previous: Snapshot | None) -> tuple[Snapshot, list[Change]]:
        # Open orders before new documents: an order committed in between is then seen as new
        # (with its status read afterwards), never as new *and* as already open.
        open_orders: dict[int, int] = dict(
            self.conn.execute(qc.orders_in_states(_open_order_codes())).all()
        )
        stock = self._stock_snapshot()
        prices = self._price_snapshot()
        if previous is None:
            documents = RecentIds.baseline(self._scalar(qc.highest_document_id()), self.now_s)
            documents, _ = documents.advance(self._document_ids(documents.floor), self.now_s)
            payments = RecentIds.baseline(self._scalar(qc.highest_payment_id()), self.now_s)
            payments, _ = payments.advance(self._payment_ids(payments.floor), self.now_s)
            return Snapshot(stock, prices, documents, payments, open_orders), []
        documents, new_documents = previous.documents.advance(
            self._document_ids(previous.documents.floor), self.now_s
        )
        payments, new_payments = previous.payments.advance(
            self._payment_ids(previous.payments.floor), self.now_s
        )
        orders, order_changes = self._orders(previous.orders, open_orders, new_documents)
        changes: list[Change] = [
            *order_changes,
            *self._invoices(new_documents),
            *self._payments(new_payments),
            *self._stock(previous.stock, stock),
            *self._prices(previous.prices, prices),
        ]
        return Snapshot(stock, prices, documents, payments, orders), changes

    def _scalar(self, stmt: Any) -> int:
        return int(self.conn.execute(stmt).scalar() or 0)

    def _rows(self, query: Any, ids: Sequence[int]) -> list[Any]:
        return [row for chunk in _chunks(ids) for row in self.conn.execute(query(chunk))]

    # -- snapshots -------------------------------------------------------------------------

    def _stock_snapshot(self) -> dict[tuple[int, int], tuple[str, str]]:
        return {
            (row.st_TowId, row.st_MagId): (str(row.st_Stan), str(row.st_StanRez))
            for row in self.conn.execute(qc.stock_snapshot())
        }

    def _price_snapshot(self) -> dict[int, int]:
        return {row[0]: _digest(row[1:]) for row in self.conn.execute(qc.price_snapshot())}

    def _document_ids(self, floor: int) -> list[int]:
        types = [*INVOICE_KINDS, DocType.ZK]
        return list(self.conn.execute(qc.document_ids_above(floor, types)).scalars())

    def _payment_ids(self, floor: int) -> list[int]:
        return list(self.conn.execute(qc.payment_ids_above(floor)).scalars())

    # -- changes ---------------------------------------------------------------------------

    def _orders(
        self, previous: dict[int, int], open_orders: dict[int, int], new_documents: list[int]
    ) -> tuple[dict[int, int], list[Change]]:
        left = [dok for dok in previous if dok not in open_orders]
        moved = [dok for dok, status in open_orders.items() if previous.get(dok) != status]
        wanted = sorted({*new_documents, *left, *moved})
        rows = {row.dok_Id: row for row in self._rows(qc.orders, wanted)}
        tracked = dict(open_orders)
        open_codes = _open_order_codes()
        changes: list[Change] = []
        for dok in wanted:
            row = rows.get(dok)
            if row is None or row.dok_Typ != DocType.ZK:
                continue  # an invoice (reported below), or an order deleted meanwhile
            before = previous.get(dok)
            if row.dok_Status in open_codes:
                tracked[dok] = row.dok_Status
            if before == row.dok_Status:
                continue
            changes.append(
                OrderStatusChanged(
                    occurred_at=self.at,
                    id=str(dok),
                    number=row.dok_NrPelny,
                    external_number=row.dok_NrPelnyOryg or None,
                    status=_status(row.dok_Status),
                    previous_status=None if before is None else _status(before),
                )
            )
        return tracked, changes

    def _invoices(self, new_documents: list[int]) -> list[Change]:
        wanted = sorted(new_documents)
        rows = [
            row for row in self._rows(qc.sales_documents, wanted) if row.dok_Typ in INVOICE_KINDS
        ]
        return [
            InvoiceIssued(
                occurred_at=self.at,
                id=str(row.dok_Id),
                number=row.dok_NrPelny,
                kind=INVOICE_KINDS[row.dok_Typ],
                customer_id=None if row.dok_PlatnikId is None else str(row.dok_PlatnikId),
                order_id=None if row.order_id is None else str(row.order_id),
                issued=day(row.dok_DataWyst) or self.at.date(),
                currency=row.dok_Waluta or "PLN",
                net=money(row.dok_WartNetto),
                vat=money(row.dok_WartVat),
                gross=money(row.dok_WartBrutto),
            )
            for row in sorted(rows, key=lambda row: row.dok_Id)
        ]

    def _payments(self, new_payments: list[int]) -> list[Change]:
        rows = sorted(self._rows(qc.payments, new_payments), key=lambda row: row.nzs_Id)
        return [
            PaymentRegistered(
                occurred_at=self.at,
                id=str(row.nzs_Id),
                customer_id=None if row.nzs_IdObiektu is None else str(row.nzs_IdObiektu),
                document_id=None if row.dok_Id is None else str(row.dok_Id),
                document_number=row.dok_NrPelny,
                amount=money(row.nzs_Kwota),
                currency=row.nzs_Waluta or "PLN",
                paid_on=day(row.nzs_Data) or self.at.date(),
                method=row.nzs_FormaPlatnosci or "",
            )
            for row in rows
        ]

    def _stock(
        self,
        previous: dict[tuple[int, int], tuple[str, str]],
        current: dict[tuple[int, int], tuple[str, str]],
    ) -> list[Change]:
        changed = sorted(
            k for k in previous.keys() | current.keys() if previous.get(k) != current.get(k)
        )
        if not changed:
            return []
        products = sorted({tw for tw, _ in changed})
        skus = dict(self._rows(qc.product_skus, products))
        warehouses: dict[int, str] = dict(self.conn.execute(qc.all_warehouses()).all())
        rows = {(row.st_TowId, row.st_MagId): row for row in self._rows(qc.stock_rows, products)}
        changes: list[Change] = []
        for tw, mag in changed:
            if tw not in skus or mag not in warehouses:
                continue
            row = rows.get((tw, mag))
            quantity = row.st_Stan if row is not None else Decimal(0)
            reserved = row.st_StanRez if row is not None else Decimal(0)
            changes.append(
                StockChanged(
                    occurred_at=self.at,
                    sku=skus[tw],
                    product_id=str(tw),
                    warehouse=warehouses[mag],
                    quantity=trim(quantity),
                    reserved=trim(reserved),
                    available=trim(quantity - reserved),
                )
            )
        return changes

    def _prices(self, previous: dict[int, int], current: dict[int, int]) -> list[Change]:
        changed = sorted(
            k for k in previous.keys() | current.keys() if previous.get(k) != current.get(k)
        )
        if not changed:
            return []
        skus = [sku for _, sku in self._rows(qc.product_skus, changed)]
        used = used_levels(self.conn.execute(q.price_level_names()).first())
        products = by_sku(
            [row for chunk in _chunks(skus) for row in self.conn.execute(q.product_prices(chunk))]
        )
        return [
            PriceChanged(
                occurred_at=self.at,
                sku=row.tw_Symbol,
                product_id=str(row.tw_Id),
                levels=price_levels(row, used),
            )
            for row in sorted(products.values(), key=lambda row: row.tw_Id)
        ]
