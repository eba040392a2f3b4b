"""The demo ERP session's plumbing, and the steps several operation groups share.

The ``demo`` connector: the twelve catalogue operations over a Subiekt GT-shaped database.

A `DemoSession` owns one SQLAlchemy `Connection` for its whole life (one database connection per
worker thread) and runs every call in one transaction: reads in a plain one, so the queries of
one call see one snapshot; writes in one that takes the write lock first (``BEGIN IMMEDIATE`` on
SQLite), so an order's checks and its reservation cannot interleave with another order's.
Database errors are read by the shared SQL layer (`agent.connectors.sql.errors`) and never carry
the database's own text to the caller.

The session outlives database restarts: a call that finds its connection dead reconnects. When
the connection died before the call's own statements ran (while setting the statement limit)
the call simply goes on over the new connection; a read that lost it mid-way is run once more
on a fresh one; a write that lost it is *not* re-run, since it may have committed: it fails as
retryable ``erp_unavailable`` and the agent's write journal settles it with `find_write`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import Connection, Row
from sqlalchemy import exc as sa_exc

from agent.connectors.base import (
    CallContext,
    Conflict,
    ConnectorError,
    ConnectorSession,
    ErpFailure,
    NotFound,
    Unsupported,
)
from agent.connectors.demo import queries as q
from agent.connectors.demo.engine import IMMEDIATE
from agent.connectors.demo.keys import CUSTOMER_KEY_COLUMN, CUSTOMER_KEY_WIDTH, key_token
from agent.connectors.demo.schema import MAIN_ADDRESS, ORDER_STATUSES
from agent.connectors.demo.values import (
    by_sku,
    check_lengths,
    day,
    dec_str,
    int_id,
    money,
    trim,
    unknown,
)
from agent.connectors.sql import Fault, apply_statement_limit, classify, connector_error
from agent.connectors.sql.timeouts import remaining_seconds
from protocol.operations.catalogue import WRITE_OPERATIONS
from protocol.operations.customers import CustomerRef, NewCustomer
from protocol.operations.orders import CreateOrderArgs, Order, OrderLine, OrderLineIn

log = logging.getLogger("agent.connectors.demo")

Today = Callable[[], date]
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class _Priced:
    """One order line, priced and checked, ready to write."""

    line: OrderLineIn
    tw_id: int
    vat_id: int
    vat_rate: Decimal
    unit: str
    price_net: Decimal
    price_gross: Decimal
    net: Decimal
    vat: Decimal

    @property
    def gross(self) -> Decimal:
        return self.net + self.vat


class DemoSessionBase(ConnectorSession):
    """One connection to the demo ERP, used by one worker thread at a time.

    The handlers live in one class per operation group (`agent.connectors.demo.connector`,
    ``fulfilment``, ``warehouse``, ``trade``), each a subclass of this one; `DemoSession`
    puts them together.
    """

    def __init__(self, conn: Connection, *, today: Today, erp: str, writes: bool = True) -> None:
        self._conn = conn
        self._today = today
        self._erp = erp
        self._writes = writes
        self._dialect = conn.dialect
        self._sqlite = conn.dialect.name == "sqlite"
        self._dbapi: Any = conn.connection.dbapi_connection
        self._limited: Any = None
        """The DB-API connection a statement limit is in force on, if any."""

    def execute(self, operation: str, args: BaseModel, ctx: CallContext) -> BaseModel:
        write = operation in WRITE_OPERATIONS
        if write and not self._writes:
            raise Unsupported(f"{operation} is disabled: this demo connector is read-only")
        run = partial(super().execute, operation, args, ctx)
        return self._attempt(run, ctx.deadline, rerun=not write)

    def find_write(self, operation: str, idempotency_key: str) -> BaseModel | None:
        """The result an earlier write with this key left in the ERP, or None.

        Every write handler stores the key's token (`key_token`) in the document it inserts,
        in the same transaction, so a committed write is always found; each write operation
        has its `@finds` method. Runs on a live connection like a read.
        """
        run = partial(super().find_write, operation, idempotency_key)
        return self._attempt(run, None, True)

    def _attempt(self, run: Callable[[], _T], deadline: float | None, rerun: bool) -> _T:
        """``run`` on a live connection, reconnecting as the module docstring says."""
        for attempt in (1, 2):
            self._prepare(deadline)
            try:
                return run()
            except ConnectorError:
                raise
            except sa_exc.SQLAlchemyError as exc:
                fault = classify(exc, self._dialect.name)
                if fault is Fault.LOST:
                    self._discard_connection()
                    if rerun and attempt == 1:
                        log.warning("ERP database connection lost; reading again on a new one")
                        continue
                raise connector_error(fault) from exc
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _prepare(self, deadline: float | None) -> None:
        """Make sure the connection is up and limit its statements to the call's deadline.

        Nothing of the call has run yet, so a connection found dead here is replaced and the
        call goes on, write or not. It also refreshes the raw connection `interrupt` uses, in
        the owning thread.
        """
        seconds = remaining_seconds(deadline)
        for attempt in (1, 2):
            try:
                dbapi = self._conn.connection.dbapi_connection  # reconnects if invalidated
                self._dbapi = dbapi
                if seconds is not None or self._limited is dbapi:
                    limited = apply_statement_limit(dbapi, self._dialect, seconds)
                    self._limited = dbapi if limited else None
                return
            except (sa_exc.SQLAlchemyError, self._dialect.loaded_dbapi.Error) as exc:
                fault = classify(exc, self._dialect.name)
                if fault is not Fault.LOST or attempt == 2:
                    raise connector_error(fault) from exc
                self._discard_connection()

    def _discard_connection(self) -> None:
        """Drop a dead connection; the next use of ``self._conn`` opens a new one."""
        self._limited = None
        if not self._conn.invalidated:
            self._conn.invalidate()

    def interrupt(self) -> None:
        """Abort the running statement (SQLite only; other drivers have no thread-safe cancel,
        and the server-side limit set by `_prepare` ends their statements at the deadline)."""
        if self._sqlite and self._dbapi is not None:
            self._dbapi.interrupt()

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._conn.begin():
            yield self._conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        self._conn.info[IMMEDIATE] = True
        try:
            with self._conn.begin():
                yield self._conn
        finally:
            self._conn.info.pop(IMMEDIATE, None)

    def _allocate(self, conn: Connection, table_name: str, count: int) -> int:
        """The first of ``count`` fresh ids for ``table_name``, taken from ``ins_ident``."""
        if conn.execute(q.bump_ident(table_name, count)).rowcount != 1:
            raise ErpFailure(f"ins_ident has no counter for {table_name}")
        last = conn.execute(q.read_ident(table_name)).scalar_one()
        return int(last) - count + 1

    def _find_customer(self, conn: Connection, ref: CustomerRef) -> Row[Any]:
        if ref.id is not None:
            found = ref.id.isdigit()
            row = conn.execute(q.customer_by_id(int_id(ref.id))).first() if found else None
        elif ref.symbol is not None:
            row = conn.execute(q.customer_by_symbol(ref.symbol)).first()
        else:
            assert ref.nip is not None
            row = conn.execute(q.customer_by_nip(ref.nip)).first()
        if row is None:
            raise NotFound("no such customer")
        return row

    def _insert_customer(self, conn: Connection, new: NewCustomer, key: str = "") -> int:
        """Write ``kh__Kontrahent`` and its main ``adr__Ewid``; the caller's transaction."""
        check_lengths(new)
        if new.nip is not None and conn.execute(q.nip_taken(new.nip)).first() is not None:
            raise Conflict("a customer with this NIP already exists", details={"nip": new.nip})
        if new.symbol is not None and conn.execute(q.symbol_taken(new.symbol)).first():
            raise Conflict(
                "a customer with this symbol already exists", details={"symbol": new.symbol}
            )
        kh_id = self._allocate(conn, "kh__Kontrahent", 1)
        adr_id = self._allocate(conn, "adr__Ewid", 1)
        symbol = new.symbol or self._free_symbol(conn, new.name, kh_id)
        person = new.kind == "person"
        first, _, last = new.name.partition(" ") if person else ("", "", "")
        conn.execute(
            q.insert_customer(
                {
                    "kh_Id": kh_id,
                    "kh_Symbol": symbol,
                    "kh_Rodzaj": 0,
                    "kh_EMail": new.email or "",
                    "kh_Osoba": person,
                    "kh_Imie": first[:20],
                    "kh_Nazwisko": last[:51],
                    "kh_Cena": 1,
                    "kh_PlatOdroczone": False,
                    "kh_MaxWartKred": Decimal(0),
                    "kh_MaxDniSp": 0,
                    "kh_Zablokowany": False,
                    "kh_Uwagi": "",
                    "kh_DataDodania": datetime.now(),  # Subiekt GT stores local time
                    CUSTOMER_KEY_COLUMN: key,
                }
            )
        )
        conn.execute(
            q.insert_address(
                {
                    "adr_Id": adr_id,
                    "adr_IdObiektu": kh_id,
                    "adr_TypAdresu": MAIN_ADDRESS,
                    "adr_Nazwa": new.name[:53],
                    "adr_NazwaPelna": new.full_name or new.name,
                    "adr_Telefon": new.phone or "",
                    "adr_Ulica": new.address.street,
                    "adr_NrDomu": new.address.building,
                    "adr_NrLokalu": new.address.apartment,
                    "adr_Kod": new.address.postal_code,
                    "adr_Miejscowosc": new.address.city,
                    "adr_NIP": new.nip or "",
                    "adr_Symbol": symbol,
                }
            )
        )
        return kh_id

    def _free_symbol(self, conn: Connection, name: str, kh_id: int) -> str:
        """A Subiekt-like symbol from the name (``DELTA``, ``DELTA2``…), else ``KH<id>``."""
        base = "".join(ch for ch in name.upper() if ch.isalnum() or ch == " ").strip()[:16].strip()
        candidates = [base, *(f"{base}{n}" for n in range(2, 10))] if base else []
        for candidate in [*candidates, f"KH{kh_id}"]:
            if conn.execute(q.symbol_taken(candidate)).first() is None:
                return candidate
        raise Conflict("could not generate a free customer symbol; give one")

    def _order_customer(
        self, conn: Connection, args: CreateOrderArgs, ctx: CallContext
    ) -> Row[Any]:
        if args.new_customer is not None:
            key = ctx.idempotency_key
            token = key_token(key, CUSTOMER_KEY_WIDTH) if key else ""
            kh_id = self._insert_customer(conn, args.new_customer, token)
            return conn.execute(q.customer_by_id(kh_id)).one()
        assert args.customer is not None
        customer = self._find_customer(conn, args.customer)
        if customer.kh_Zablokowany:
            raise Conflict(
                "the customer is blocked in the ERP",
                details={"customer_id": str(customer.kh_Id)},
            )
        return customer

    def _order_warehouse(self, conn: Connection, symbol: str | None) -> tuple[int, str]:
        stmt = q.main_warehouse() if symbol is None else q.warehouse_by_symbol(symbol)
        row = conn.execute(stmt).first()
        if row is None:
            raise NotFound("no such warehouse", details={"warehouse": symbol})
        return int(row.mag_Id), str(row.mag_Symbol)

    def _price_lines(
        self, conn: Connection, lines: Sequence[OrderLineIn], mag_id: int, level: int
    ) -> list[_Priced]:
        """Check every line before anything is written: unknown, blocked, unpriced, short."""
        skus = list(dict.fromkeys(line.sku for line in lines))
        rows = by_sku(conn.execute(q.order_for_sale(skus, mag_id, level)).all())
        missing = unknown(skus, rows)
        if missing:
            raise NotFound("unknown products in the order", details={"unknown_skus": missing})
        blocked = sorted(row.tw_Symbol for row in rows.values() if row.tw_Zablokowany)
        if blocked:
            raise Conflict("blocked products in the order", details={"blocked_skus": blocked})
        requested: dict[int, Decimal] = {}
        for line in lines:
            tw_id = rows[line.sku.casefold()].tw_Id
            requested[tw_id] = requested.get(tw_id, Decimal(0)) + line.quantity
        short = []
        for sku in skus:
            row = rows[sku.casefold()]
            available = (row.st_Stan or Decimal(0)) - (row.st_StanRez or Decimal(0))
            if requested[row.tw_Id] > available:
                short.append(
                    {
                        "sku": row.tw_Symbol,
                        "requested": dec_str(requested[row.tw_Id]),
                        "available": dec_str(max(available, Decimal(0))),
                    }
                )
        if short:
            raise Conflict("not enough stock", details={"lines": short})
        priced: list[_Priced] = []
        for line in lines:
            row = rows[line.sku.casefold()]
            price_net = line.price_net if line.price_net is not None else row.price_net
            if price_net is None:
                raise Conflict(
                    "the product has no price for the customer", details={"sku": row.tw_Symbol}
                )
            rate = row.vat_Stawka
            net = money(line.quantity * price_net)
            priced.append(
                _Priced(
                    line=line,
                    tw_id=row.tw_Id,
                    vat_id=row.vat_Id,
                    vat_rate=rate,
                    unit=row.tw_JednMiary,
                    price_net=price_net,
                    price_gross=money(price_net * (100 + rate) / 100),
                    net=net,
                    vat=money(net * rate / 100),
                )
            )
        return priced

    def _write_line(
        self, conn: Connection, item: _Priced, *, dok_id: int, ob_id: int, lp: int, mag_id: int
    ) -> None:
        """Insert one ``dok_Pozycja`` and reserve its quantity in ``tw_Stan``."""
        conn.execute(
            q.insert_line(),
            [
                {
                    "ob_Id": ob_id,
                    "ob_DokHanId": dok_id,
                    "ob_DokMagId": None,
                    "ob_DokHanLp": lp,
                    "ob_TowId": item.tw_id,
                    "ob_Ilosc": item.line.quantity,
                    "ob_Jm": item.unit,
                    "ob_CenaNetto": item.price_net,
                    "ob_CenaBrutto": item.price_gross,
                    "ob_Rabat": Decimal(0),
                    "ob_VatId": item.vat_id,
                    "ob_VatProc": item.vat_rate,
                    "ob_WartNetto": item.net,
                    "ob_WartVat": item.vat,
                    "ob_WartBrutto": item.gross,
                    "ob_MagId": mag_id,
                }
            ],
        )
        reserved = conn.execute(q.reserve_stock(item.tw_id, mag_id, item.line.quantity))
        if reserved.rowcount != 1:
            raise Conflict(
                "not enough stock",
                details={
                    "lines": [{"sku": item.line.sku, "requested": dec_str(item.line.quantity)}]
                },
            )

    def _load_order(self, conn: Connection, header: Row[Any]) -> Order:
        lines = [
            OrderLine(
                position=row.ob_DokHanLp,
                sku=row.tw_Symbol,
                name=row.tw_Nazwa,
                quantity=trim(row.ob_Ilosc),
                unit=row.ob_Jm,
                price_net=trim(row.ob_CenaNetto, 2),
                price_gross=trim(row.ob_CenaBrutto, 2),
                vat_rate=trim(row.ob_VatProc),
                net=money(row.ob_WartNetto),
                vat=money(row.ob_WartVat),
                gross=money(row.ob_WartBrutto),
            )
            for row in conn.execute(q.document_lines(header.dok_Id))
        ]
        return Order(
            id=str(header.dok_Id),
            number=header.dok_NrPelny,
            external_number=header.dok_NrPelnyOryg or None,
            status=ORDER_STATUSES.get(header.dok_Status, f"status_{header.dok_Status}"),
            customer_id=str(header.dok_OdbiorcaId or header.dok_PlatnikId),
            warehouse=header.mag_Symbol or "",
            issued=day(header.dok_DataWyst) or self._today(),
            currency=header.dok_Waluta or "PLN",
            net=money(header.dok_WartNetto),
            vat=money(header.dok_WartVat),
            gross=money(header.dok_WartBrutto),
            delivery_method=header.dok_Podtytul or None,
            notes=header.dok_Uwagi or "",
            lines=lines,
        )
