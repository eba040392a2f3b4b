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
from datetime import date, datetime, timedelta
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
    CreditLimitExceeded,
    CustomerBlocked,
    ErpFailure,
    InsufficientStock,
    NotFound,
    ProductBlocked,
    Unsupported,
)
from agent.connectors.demo import queries as q
from agent.connectors.demo import queries_fulfilment as qf
from agent.connectors.demo.allocation import NotEnoughStock, allocate
from agent.connectors.demo.engine import IMMEDIATE
from agent.connectors.demo.keys import (
    CUSTOMER_KEY_COLUMN,
    CUSTOMER_KEY_WIDTH,
    ORDER_KEY_WIDTH,
    key_token,
)
from agent.connectors.demo.schema import MAIN_ADDRESS, ORDER_STATUSES
from agent.connectors.demo.seed import document_number
from agent.connectors.demo.values import (
    by_sku,
    check_lengths,
    credit_limit,
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
from protocol.operations.orders import (
    CreateOrderArgs,
    Order,
    OrderLine,
    OrderLineIn,
    OrderRef,
    SplitPolicy,
)
from protocol.operations.products import ProductStock, StockArgs, StockResult, WarehouseStock

log = logging.getLogger("agent.connectors.demo")

Today = Callable[[], date]
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class _Priced:
    """One order line, priced and checked, ready to write.

    ``quantity`` is the line's, or the part of it reserved in warehouse ``mag_id`` when the
    ``split_line`` policy spread one requested line over several warehouses.
    """

    line: OrderLineIn
    quantity: Decimal
    mag_id: int
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


def line_values(
    item: _Priced,
    *,
    dok_id: int,
    ob_id: int,
    lp: int,
    mag_id: int | None,
    discount: Decimal = Decimal(0),
) -> dict[str, Any]:
    """The ``dok_Pozycja`` row of a priced line of document ``dok_id``.

    ``mag_id`` is the warehouse the line's quantity is reserved in; None for a line that reserves
    nothing (an offer's). ``discount`` is the percent already taken off ``item``'s price, kept in
    ``ob_Rabat`` as Subiekt GT does.
    """
    return {
        "ob_Id": ob_id,
        "ob_DokHanId": dok_id,
        "ob_DokMagId": None,
        "ob_DokHanLp": lp,
        "ob_TowId": item.tw_id,
        "ob_Ilosc": item.quantity,
        "ob_Jm": item.unit,
        "ob_CenaNetto": item.price_net,
        "ob_CenaBrutto": item.price_gross,
        "ob_Rabat": discount,
        "ob_VatId": item.vat_id,
        "ob_VatProc": item.vat_rate,
        "ob_WartNetto": item.net,
        "ob_WartVat": item.vat,
        "ob_WartBrutto": item.gross,
        "ob_MagId": mag_id,
    }


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
        self._check_customer(customer, "orders")
        return customer

    def _find_warehouses(self, conn: Connection, symbols: Sequence[str] | None) -> list[Row[Any]]:
        """Active warehouses (``mag_Id``, ``mag_Symbol``) in the order given; the main one for
        None. Unknown symbols fail with `NotFound` listing them."""
        if symbols is None:
            return [conn.execute(q.main_warehouse()).one()]
        found = {row.mag_Symbol.casefold(): row for row in conn.execute(q.warehouses(symbols))}
        missing = [symbol for symbol in symbols if symbol.casefold() not in found]
        if missing:
            raise NotFound("no such warehouse", details={"warehouses": missing})
        return [found[symbol.casefold()] for symbol in symbols]

    def _price_lines(
        self,
        conn: Connection,
        lines: Sequence[OrderLineIn],
        warehouses: Sequence[int],
        level: int,
        split: SplitPolicy = "none",
    ) -> list[_Priced]:
        """Check every line before anything is written: unknown, blocked, short, unpriced.

        Each line's quantity is placed in ``warehouses`` (most preferred first) by the ``split``
        policy (`agent.connectors.demo.allocation`); a line split over two warehouses comes
        back as two priced rows.
        """
        skus = list(dict.fromkeys(line.sku for line in lines))
        rows = by_sku(conn.execute(q.order_for_sale(skus, level)).all())
        missing = unknown(skus, rows)
        if missing:
            raise NotFound("unknown products in the order", details={"unknown_skus": missing})
        blocked = sorted(row.tw_Symbol for row in rows.values() if row.tw_Zablokowany)
        if blocked:
            raise ProductBlocked(
                "Some products are blocked in the ERP and cannot be ordered.",
                details={"blocked_skus": blocked},
            )
        products = [rows[line.sku.casefold()] for line in lines]
        stock = conn.execute(q.stock_levels([p.tw_Id for p in products], list(warehouses)))
        free = {(r.st_TowId, r.st_MagId): r.st_Stan - r.st_StanRez for r in stock}
        wanted = [(p.tw_Id, line.quantity) for p, line in zip(products, lines, strict=True)]
        try:
            placed = allocate(wanted, warehouses, free, split)
        except NotEnoughStock as short:
            symbols = {p.tw_Id: p.tw_Symbol for p in products}
            raise InsufficientStock(
                "There is not enough stock for the order.",
                details={
                    "lines": [
                        {
                            "sku": symbols[s.product],
                            "requested": dec_str(s.requested),
                            "available": dec_str(s.available),
                        }
                        for s in short.shortages
                    ]
                },
            ) from None
        priced: list[_Priced] = []
        for line, row, pieces in zip(lines, products, placed, strict=True):
            price_net = line.price_net if line.price_net is not None else row.price_net
            if price_net is None:
                raise Conflict(
                    "the product has no price for the customer", details={"sku": row.tw_Symbol}
                )
            rate = row.vat_Stawka
            for mag_id, quantity in pieces:
                net = money(quantity * price_net)
                priced.append(
                    _Priced(
                        line=line,
                        quantity=quantity,
                        mag_id=mag_id,
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

    def _category(self, conn: Connection, name: str) -> int:
        """The id of document category ``name`` (an order's sales channel), made on first use."""
        kat_id = conn.execute(q.category_by_name(name)).scalar()
        if kat_id is None:
            kat_id = self._allocate(conn, "sl_Kategoria", 1)
            conn.execute(q.insert_category(kat_id, name))
        return int(kat_id)

    @staticmethod
    def _check_customer(customer: Row[Any], document: str) -> None:
        """Refuse a blocked customer (``kh_Zablokowany``): Subiekt GT issues it no ``document``."""
        if customer.kh_Zablokowany:
            raise CustomerBlocked(
                f"The customer is blocked in the ERP and gets no new {document}.",
                details={"customer_id": str(customer.kh_Id)},
            )

    def _check_credit(self, conn: Connection, customer: Row[Any], amount: Decimal) -> None:
        """Refuse a document that would take the customer's open receivables past their credit
        limit (``kh_MaxWartKred``; no limit when it is zero), as Subiekt GT warns."""
        limit = credit_limit(customer)
        if limit is None:
            return
        receivables = money(conn.execute(q.receivables_total(customer.kh_Id)).scalar_one())
        if receivables + amount > limit:
            raise CreditLimitExceeded(
                "The document would take the customer past their credit limit.",
                details={
                    "credit_limit": str(limit),
                    "receivables": str(receivables),
                    "gross": str(money(amount)),
                },
            )

    @staticmethod
    def _document_token(idempotency_key: str | None) -> str | None:
        """What a document written with this key stores in ``dok_TransakcjaSymbol``."""
        return key_token(idempotency_key, ORDER_KEY_WIDTH) if idempotency_key else None

    def _insert_header(
        self, conn: Connection, *, dok_id: int, doc_type: int, status: int, **columns: Any
    ) -> str:
        """Insert the header of a document issued today, numbered next in its type and month;
        ``columns`` (the parties, amounts, the key token…) add to or override the defaults
        every document shares. Returns the full number (``MM 3/11/2026``)."""
        today = self._today()
        nr, number = self._next_number(conn, doc_type, today)
        issued = datetime(today.year, today.month, today.day)
        defaults: dict[str, Any] = {
            "dok_Id": dok_id,
            "dok_Typ": doc_type,
            "dok_Podtyp": 0,
            "dok_Nr": nr,
            "dok_NrRoz": "",
            "dok_NrPelny": number,
            "dok_NrPelnyOryg": "",
            "dok_DataWyst": issued,
            "dok_DataMag": issued,
            "dok_TerminRealizacji": None,
            "dok_Uwagi": "",
            "dok_Podtytul": "",
            "dok_Status": status,
        }
        conn.execute(q.insert_document(defaults | columns))
        return number

    def _next_number(self, conn: Connection, doc_type: int, issued: date) -> tuple[int, str]:
        """The next ``dok_Nr`` of ``doc_type`` in ``issued``'s month and its full number
        (``ZK 15/11/2026``); run inside the write transaction, which serialises writers."""
        period_start = datetime(issued.year, issued.month, 1)
        period_end = (period_start + timedelta(days=32)).replace(day=1)
        last = conn.execute(q.last_number(doc_type, period_start, period_end)).scalar()
        nr = int(last or 0) + 1
        return nr, document_number(doc_type, nr, issued)

    def _write_line(
        self, conn: Connection, item: _Priced, *, dok_id: int, ob_id: int, lp: int
    ) -> None:
        """Insert one ``dok_Pozycja`` and reserve its quantity in its warehouse's ``tw_Stan``."""
        conn.execute(
            q.insert_line(),
            [line_values(item, dok_id=dok_id, ob_id=ob_id, lp=lp, mag_id=item.mag_id)],
        )
        reserved = conn.execute(q.reserve_stock(item.tw_id, item.mag_id, item.quantity))
        if reserved.rowcount != 1:
            raise InsufficientStock(
                "There is not enough stock for the order.",
                details={"lines": [{"sku": item.line.sku, "requested": dec_str(item.quantity)}]},
            )

    def _find_order(self, conn: Connection, ref: OrderRef) -> Row[Any]:
        """The ZK header (`queries.HEADER_COLUMNS`) an `OrderRef` names, or `NotFound`."""
        if ref.id is not None:
            stmt = q.order_by_id(int_id(ref.id)) if ref.id.isdigit() else None
        elif ref.number is not None:
            stmt = q.order_by_number(ref.number)
        else:
            assert ref.external_number is not None
            stmt = q.order_by_external_number(ref.external_number)
        header = conn.execute(stmt).first() if stmt is not None else None
        if header is None:
            raise NotFound("no such order")
        return header

    def _link_to_order(self, conn: Connection, dok_id: int, order_id: int) -> None:
        """Record that document ``dok_id`` (FS, PA, MM, a complaint…) was made from ZK ``order_id``.

        Subiekt GT keeps this in the document's ``dok_DoDokId`` / ``dok_DoDokNrPelny`` (public
        integrations find an order's invoice by ``dok_DoDokId``; C). A correction (KFS) points at
        its invoice instead, the same way, so it reaches the order through it.
        """
        conn.execute(q.link_document(dok_id, order_id))

    def _linked_documents(self, conn: Connection, order_id: int) -> list[Row[Any]]:
        """The documents made from ZK ``order_id`` (``dok_Id``, ``dok_Typ``, ``dok_NrPelny``,
        ``dok_Status``, ``dok_MagId``, ``dok_OdbiorcaId``), oldest first."""
        return list(conn.execute(q.linked_documents(order_id)).all())

    def _stock(self, conn: Connection, args: StockArgs) -> StockResult:
        """Stock per warehouse as ``products.stock`` shows it (``products.availability`` adds
        planned deliveries to the same view)."""
        skus = list(dict.fromkeys(args.skus))
        mags = conn.execute(q.warehouses(args.warehouses)).all()
        if args.warehouses is not None:
            missing = sorted(set(args.warehouses) - {m.mag_Symbol for m in mags})
            if missing:
                raise NotFound("no such warehouse", details={"warehouses": missing})
        products = by_sku(conn.execute(q.products_by_skus(skus)).all())
        found = [products[s.casefold()] for s in skus if s.casefold() in products]
        levels: dict[tuple[int, int], Row[Any]] = {}
        if found and mags:
            stmt = q.stock_levels([p.tw_Id for p in found], [m.mag_Id for m in mags])
            levels = {(r.st_TowId, r.st_MagId): r for r in conn.execute(stmt)}
        items: list[ProductStock] = []
        for product in found:
            per_mag: list[WarehouseStock] = []
            for mag in mags:
                level = levels.get((product.tw_Id, mag.mag_Id))
                qty = level.st_Stan if level is not None else Decimal(0)
                reserved = level.st_StanRez if level is not None else Decimal(0)
                per_mag.append(
                    WarehouseStock(
                        warehouse=mag.mag_Symbol,
                        quantity=trim(qty),
                        reserved=trim(reserved),
                        available=trim(qty - reserved),
                    )
                )
            items.append(
                ProductStock(
                    sku=product.tw_Symbol,
                    product_id=str(product.tw_Id),
                    warehouses=per_mag,
                    quantity=trim(sum((w.quantity for w in per_mag), Decimal(0))),
                    reserved=trim(sum((w.reserved for w in per_mag), Decimal(0))),
                    available=trim(sum((w.available for w in per_mag), Decimal(0))),
                )
            )
        return StockResult(items=items, unknown_skus=unknown(skus, products))

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
                warehouse=row.mag_Symbol,
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
            channel=header.channel,
            notes=header.dok_Uwagi or "",
            shop_status=conn.execute(qf.shop_status(header.dok_Id)).scalar(),
            lines=lines,
        )
