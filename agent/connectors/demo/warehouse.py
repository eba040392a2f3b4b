"""The demo ERP's warehouse operations: transfers (MM), pickup in store, availability.

An MM (``dok_Typ = 9``) is a warehouse document: ``dok_MagId`` is the warehouse the goods leave,
``dok_OdbiorcaId`` the one they arrive in, and its lines hang on ``ob_DokMagId`` with
``ob_DokHanId`` NULL (the shared notes, C). It moves ``tw_Stan.st_Stan`` at once, as Subiekt GT
does when the MM is issued. Shipping an order to a store moves its reservation with its goods:
the source's ``st_StanRez`` falls by what the order had reserved there, the store's rises by
the same, and the ZK lines' ``ob_MagId`` follow.

Exactly-once: the MM carries the key's token in ``dok_TransakcjaSymbol`` (every MM of one
``orders.ship_to_store`` the same token); a pickup row carries it in ``odb_TransakcjaSymbol``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Row

from agent.connectors.base import (
    CallContext,
    Conflict,
    InsufficientStock,
    InvalidState,
    NotFound,
    finds,
    handles,
)
from agent.connectors.demo import queries as q
from agent.connectors.demo import queries_warehouse as qw
from agent.connectors.demo.keys import ORDER_KEY_WIDTH, key_token
from agent.connectors.demo.schema import (
    ORDER_STATUSES,
    STATUS_EXECUTED,
    STATUS_ORDER_COMPLETED,
    STATUS_ORDER_OPEN,
    DocType,
)
from agent.connectors.demo.session import DemoSessionBase
from agent.connectors.demo.values import NOTES_MAX, by_sku, day, dec_str, trim, unknown
from protocol.operations.products import StockArgs
from protocol.operations.warehouse import (
    AvailabilityResult,
    CreateTransferArgs,
    PickedUpArgs,
    PickedUpResult,
    PlannedDelivery,
    ProductAvailability,
    ShipToStoreArgs,
    ShipToStoreResult,
    Transfer,
    TransferLine,
)

_PICKUP_STATUSES = (STATUS_ORDER_OPEN, STATUS_ORDER_COMPLETED)
"""A pickup may be recorded before or after the sales document (``orders.fulfil``)."""


@dataclass(frozen=True, slots=True)
class _Move:
    """One line of an MM: a product and how much of it moves; ``reserved`` moves the order's
    reservation with it (``orders.ship_to_store``), a plain transfer moves free stock only."""

    tw_id: int
    sku: str
    quantity: Decimal
    unit: str
    vat_id: int
    vat_rate: Decimal
    reserved: bool


def _status(header: Row[Any]) -> str:
    return ORDER_STATUSES.get(header.dok_Status, f"status_{header.dok_Status}")


class WarehouseHandlers(DemoSessionBase):
    """Handlers of `protocol.operations.warehouse`."""

    @handles("transfers.create")
    def create_transfer(self, args: CreateTransferArgs, ctx: CallContext) -> Transfer:
        self._check_notes(args.notes)
        skus = list(dict.fromkeys(line.sku for line in args.lines))
        with self._write() as conn:
            source, target = self._find_warehouses(conn, [args.from_warehouse, args.to_warehouse])
            products = by_sku(conn.execute(q.products_by_skus(skus)).all())
            missing = unknown(skus, products)
            if missing:
                raise NotFound(
                    "unknown products in the transfer", details={"unknown_skus": missing}
                )
            totals: dict[str, Decimal] = {}
            for line in args.lines:
                key = line.sku.casefold()
                totals[key] = totals.get(key, Decimal(0)) + line.quantity
            moves = [
                _Move(
                    tw_id=row.tw_Id,
                    sku=row.tw_Symbol,
                    quantity=totals[key],
                    unit=row.tw_JednMiary,
                    vat_id=row.vat_Id,
                    vat_rate=row.vat_Stawka,
                    reserved=False,
                )
                for key, row in ((sku.casefold(), products[sku.casefold()]) for sku in skus)
            ]
            self._check_free(conn, moves, source.mag_Id)
            dok_id = self._write_transfer(
                conn, moves, source.mag_Id, target.mag_Id, args.notes, self._token(ctx)
            )
            return self._load_transfer(conn, dok_id)

    @finds("transfers.create")
    def find_transfer(self, idempotency_key: str) -> Transfer | None:
        with self._read() as conn:
            found = conn.execute(qw.transfers_by_token(self._key(idempotency_key))).first()
            return None if found is None else self._load_transfer(conn, found.dok_Id)

    @handles("orders.ship_to_store")
    def ship_to_store(self, args: ShipToStoreArgs, ctx: CallContext) -> ShipToStoreResult:
        self._check_notes(args.notes)
        with self._write() as conn:
            header = self._find_order(conn, args.order)
            if header.dok_Status != STATUS_ORDER_OPEN:
                raise InvalidState(
                    "Only an open order can be shipped to a store.",
                    details={"status": _status(header)},
                )
            store = self._find_warehouses(conn, [args.store])[0]
            lines = [
                row
                for row in conn.execute(qw.order_lines(header.dok_Id))
                if row.ob_MagId != store.mag_Id
            ]
            if not lines:
                raise InvalidState(
                    "The order is already in that store's warehouse.",
                    details={"status": _status(header)},
                )
            token = self._token(ctx)
            transfers = []
            for source in dict.fromkeys(row.ob_MagId for row in lines):
                moved = [row for row in lines if row.ob_MagId == source]
                moves = [
                    _Move(
                        tw_id=row.ob_TowId,
                        sku=row.tw_Symbol,
                        quantity=row.ob_Ilosc,
                        unit=row.ob_Jm,
                        vat_id=row.ob_VatId,
                        vat_rate=row.ob_VatProc,
                        reserved=True,
                    )
                    for row in moved
                ]
                dok_id = self._write_transfer(
                    conn, moves, source, store.mag_Id, args.notes, token, order_id=header.dok_Id
                )
                conn.execute(qw.move_order_lines([row.ob_Id for row in moved], store.mag_Id))
                transfers.append(dok_id)
            conn.execute(qw.set_document_warehouse(header.dok_Id, store.mag_Id))
            return self._shipped(conn, header.dok_Id, transfers)

    @finds("orders.ship_to_store")
    def find_ship_to_store(self, idempotency_key: str) -> ShipToStoreResult | None:
        with self._read() as conn:
            rows = conn.execute(qw.transfers_by_token(self._key(idempotency_key))).all()
            if not rows or rows[0].dok_DoDokId is None:
                return None
            return self._shipped(conn, rows[0].dok_DoDokId, [row.dok_Id for row in rows])

    @handles("orders.picked_up")
    def picked_up(self, args: PickedUpArgs, ctx: CallContext) -> PickedUpResult:
        with self._write() as conn:
            header = self._find_order(conn, args.order)
            done = conn.execute(qw.pickup_of_order(header.dok_Id)).first()
            if done is not None:  # idempotent: collected once, answered the same ever after
                return self._pickup(conn, done)
            if header.dok_Status not in _PICKUP_STATUSES:
                raise InvalidState(
                    "Only an open or completed order can be picked up.",
                    details={"status": _status(header)},
                )
            shipped = [
                row
                for row in self._linked_documents(conn, header.dok_Id)
                if row.dok_Typ == DocType.MM
            ]
            if not shipped:
                raise InvalidState(
                    "The order has not been shipped to a store.",
                    details={"status": _status(header)},
                )
            today = self._today()
            conn.execute(
                qw.insert_pickup(
                    self._allocate(conn, "dok_Odbior", 1),
                    header.dok_Id,
                    shipped[-1].dok_OdbiorcaId,
                    datetime(today.year, today.month, today.day),
                    self._token(ctx),
                )
            )
            return self._pickup(conn, conn.execute(qw.pickup_of_order(header.dok_Id)).one())

    @finds("orders.picked_up")
    def find_pickup(self, idempotency_key: str) -> PickedUpResult | None:
        with self._read() as conn:
            row = conn.execute(qw.pickup_by_token(self._key(idempotency_key))).first()
            return None if row is None else self._pickup(conn, row)

    @handles("products.availability")
    def availability(self, args: StockArgs, ctx: CallContext) -> AvailabilityResult:
        with self._read() as conn:
            stock = self._stock(conn, args)
            deliveries: dict[int, list[PlannedDelivery]] = {}
            if stock.items:
                symbols = [w.warehouse for w in stock.items[0].warehouses]
                ids = [int(item.product_id) for item in stock.items]
                for row in conn.execute(qw.planned_deliveries(ids, symbols)):
                    deliveries.setdefault(row.ob_TowId, []).append(
                        PlannedDelivery(
                            warehouse=row.mag_Symbol,
                            quantity=trim(row.ob_Ilosc),
                            expected=day(row.dok_TerminRealizacji),
                            purchase_order_id=str(row.dok_Id),
                            purchase_order_number=row.dok_NrPelny,
                        )
                    )
        return AvailabilityResult(
            items=[
                ProductAvailability(
                    **dict(item), deliveries=deliveries.get(int(item.product_id), [])
                )
                for item in stock.items
            ],
            unknown_skus=stock.unknown_skus,
        )

    # -- steps -----------------------------------------------------------------------------

    @staticmethod
    def _check_notes(notes: str) -> None:
        if len(notes) > NOTES_MAX:
            raise Conflict(f"notes longer than {NOTES_MAX} characters do not fit the ERP document")

    @staticmethod
    def _key(idempotency_key: str) -> str:
        return key_token(idempotency_key, ORDER_KEY_WIDTH)

    def _token(self, ctx: CallContext) -> str | None:
        return self._key(ctx.idempotency_key) if ctx.idempotency_key else None

    def _check_free(self, conn: Connection, moves: Sequence[_Move], mag_id: int) -> None:
        """Refuse, listing every short product, what the source cannot spare (free stock)."""
        stmt = q.stock_levels([m.tw_id for m in moves], [mag_id])
        free = {r.st_TowId: r.st_Stan - r.st_StanRez for r in conn.execute(stmt)}
        short = [
            {
                "sku": m.sku,
                "requested": dec_str(m.quantity),
                "available": dec_str(max(free.get(m.tw_id, Decimal(0)), Decimal(0))),
            }
            for m in moves
            if m.quantity > free.get(m.tw_id, Decimal(0))
        ]
        if short:
            raise InsufficientStock(
                "The source warehouse does not have that much free stock.",
                details={"lines": short},
            )

    def _write_transfer(
        self,
        conn: Connection,
        moves: Sequence[_Move],
        source: int,
        target: int,
        notes: str,
        token: str | None,
        *,
        order_id: int | None = None,
    ) -> int:
        """Insert an MM from ``source`` to ``target`` and move the stock (and reservations)."""
        dok_id = self._allocate(conn, "dok__Dokument", 1)
        first_line = self._allocate(conn, "dok_Pozycja", len(moves))
        self._insert_header(
            conn,
            dok_id=dok_id,
            doc_type=DocType.MM,
            status=STATUS_EXECUTED,
            dok_MagId=source,
            dok_OdbiorcaId=target,
            dok_WartNetto=Decimal(0),
            dok_WartVat=Decimal(0),
            dok_WartBrutto=Decimal(0),
            dok_Uwagi=notes,
            dok_TransakcjaSymbol=token,
        )
        if order_id is not None:
            self._link_to_order(conn, dok_id, order_id)
        conn.execute(
            q.insert_line(),
            [
                {
                    "ob_Id": first_line + n,
                    "ob_DokHanId": None,
                    "ob_DokMagId": dok_id,
                    "ob_DokHanLp": n + 1,
                    "ob_TowId": m.tw_id,
                    "ob_Ilosc": m.quantity,
                    "ob_Jm": m.unit,
                    "ob_CenaNetto": Decimal(0),
                    "ob_CenaBrutto": Decimal(0),
                    "ob_VatId": m.vat_id,
                    "ob_VatProc": m.vat_rate,
                    "ob_WartNetto": Decimal(0),
                    "ob_WartVat": Decimal(0),
                    "ob_WartBrutto": Decimal(0),
                    "ob_MagId": source,
                }
                for n, m in enumerate(moves)
            ],
        )
        for m in moves:
            reserved = m.quantity if m.reserved else Decimal(0)
            taken = conn.execute(qw.take_stock(m.tw_id, source, m.quantity, reserved))
            if taken.rowcount != 1:
                raise InsufficientStock(
                    "The source warehouse does not have that much stock.",
                    details={"lines": [{"sku": m.sku, "requested": dec_str(m.quantity)}]},
                )
            if conn.execute(qw.add_stock(m.tw_id, target, m.quantity, reserved)).rowcount != 1:
                conn.execute(qw.insert_stock(m.tw_id, target, m.quantity, reserved))
        return dok_id

    def _load_transfer(self, conn: Connection, dok_id: int) -> Transfer:
        header = conn.execute(qw.transfer_header(dok_id)).one()
        return Transfer(
            id=str(header.dok_Id),
            number=header.dok_NrPelny,
            from_warehouse=header.from_symbol,
            to_warehouse=header.to_symbol,
            issued=day(header.dok_DataWyst) or self._today(),
            order_id=None if header.dok_DoDokId is None else str(header.dok_DoDokId),
            notes=header.dok_Uwagi or "",
            lines=[
                TransferLine(
                    position=row.ob_DokHanLp,
                    sku=row.tw_Symbol,
                    name=row.tw_Nazwa,
                    quantity=trim(row.ob_Ilosc),
                    unit=row.ob_Jm,
                )
                for row in conn.execute(qw.transfer_lines(dok_id))
            ],
        )

    def _shipped(
        self, conn: Connection, order_id: int, transfers: Sequence[int]
    ) -> ShipToStoreResult:
        return ShipToStoreResult(
            order=self._load_order(conn, conn.execute(q.order_by_id(order_id)).one()),
            transfers=[self._load_transfer(conn, dok_id) for dok_id in transfers],
        )

    def _pickup(self, conn: Connection, row: Row[Any]) -> PickedUpResult:
        return PickedUpResult(
            order=self._load_order(conn, conn.execute(q.order_by_id(row.odb_DokId)).one()),
            store=row.mag_Symbol,
            picked_up=day(row.odb_Data) or self._today(),
        )
