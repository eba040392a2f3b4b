"""The ``demo`` connector: the twelve catalogue operations over a Subiekt GT-shaped database.

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
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import Connection, Engine, Row
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from agent.connectors.base import (
    CallContext,
    Conflict,
    Connector,
    ConnectorError,
    ConnectorInfo,
    ConnectorSession,
    ErpFailure,
    NotFound,
    Unsupported,
    handles,
)
from agent.connectors.demo import queries as q
from agent.connectors.demo.engine import DEFAULT_BUSY_TIMEOUT_MS, IMMEDIATE, build_engine
from agent.connectors.demo.keys import (
    CUSTOMER_KEY_COLUMN,
    CUSTOMER_KEY_WIDTH,
    ORDER_KEY_COLUMN,
    ORDER_KEY_WIDTH,
    customer_id_by_key,
    key_token,
    order_id_by_key,
)
from agent.connectors.demo.schema import (
    DOC_SYMBOLS,
    MAIN_ADDRESS,
    ORDER_STATUSES,
    PRICE_LEVELS,
    STATUS_ORDER_OPEN,
    DocType,
)
from agent.connectors.demo.seed import create_demo_database, document_number
from agent.connectors.sql import Fault, apply_statement_limit, classify, connector_error, translate
from agent.connectors.sql.timeouts import remaining_seconds
from protocol.operations.catalogue import WRITE_OPERATIONS
from protocol.operations.customers import (
    Customer,
    CustomerBalance,
    CustomerPage,
    CustomerRef,
    CustomerSearchArgs,
    NewCustomer,
    OpenDocument,
)
from protocol.operations.identifiers import normalize_nip
from protocol.operations.invoices import Invoice, InvoiceListArgs, InvoicePage
from protocol.operations.orders import CreateOrderArgs, Order, OrderLine, OrderLineIn, OrderRef
from protocol.operations.products import (
    PriceLevel,
    PricesArgs,
    PricesResult,
    Product,
    ProductPage,
    ProductPrices,
    ProductRef,
    ProductSearchArgs,
    ProductStock,
    StockArgs,
    StockResult,
    WarehouseStock,
)
from protocol.operations.system import PingArgs, PingResult
from protocol.operations.types import Address

log = logging.getLogger("agent.connectors.demo")

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

Today = Callable[[], date]
_T = TypeVar("_T")


def _agent_version() -> str:
    try:
        return version("erp-relay")
    except PackageNotFoundError:
        return "0.0.0"


# -- the session -------------------------------------------------------------------------------


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


class DemoSession(ConnectorSession):
    """One connection to the demo ERP, used by one worker thread at a time."""

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

    # -- plumbing ----------------------------------------------------------------------------

    def execute(self, operation: str, args: BaseModel, ctx: CallContext) -> BaseModel:
        write = operation in WRITE_OPERATIONS
        if write and not self._writes:
            raise Unsupported(f"{operation} is disabled: this demo connector is read-only")
        run = partial(super().execute, operation, args, ctx)
        return self._attempt(run, ctx.deadline, rerun=not write)

    def find_write(self, operation: str, idempotency_key: str) -> BaseModel | None:
        """The order or customer an earlier write with this key created, or None.

        `create_order` and `create_customer` store the key's token (`key_token`) in the
        document they insert, in the same transaction, so a committed write is always found.
        """
        if operation not in ("orders.create", "customers.create"):
            raise Unsupported(f"the demo connector cannot look up earlier {operation} writes")
        return self._attempt(partial(self._find_write, operation, idempotency_key), None, True)

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

    def _find_write(self, operation: str, idempotency_key: str) -> BaseModel | None:
        with self._read() as conn:
            if operation == "orders.create":
                dok_id = conn.execute(order_id_by_key(idempotency_key)).scalar()
                if dok_id is None:
                    return None
                return self._load_order(conn, conn.execute(q.order_by_id(int(dok_id))).one())
            kh_id = conn.execute(customer_id_by_key(idempotency_key)).scalar()
            if kh_id is None:
                return None
            return _customer(conn.execute(q.customer_by_id(int(kh_id))).one())

    def _allocate(self, conn: Connection, table_name: str, count: int) -> int:
        """The first of ``count`` fresh ids for ``table_name``, taken from ``ins_ident``."""
        if conn.execute(q.bump_ident(table_name, count)).rowcount != 1:
            raise ErpFailure(f"ins_ident has no counter for {table_name}")
        last = conn.execute(q.read_ident(table_name)).scalar_one()
        return int(last) - count + 1

    # -- system ------------------------------------------------------------------------------

    @handles("ping")
    def ping(self, args: PingArgs, ctx: CallContext) -> PingResult:
        with self._read() as conn:
            now = conn.execute(q.database_time()).scalar_one()
        if isinstance(now, str):
            now = datetime.fromisoformat(now)
        if self._sqlite and now.tzinfo is None:
            now = now.replace(tzinfo=UTC)  # SQLite's CURRENT_TIMESTAMP is UTC
        return PingResult(
            connector=DemoConnector.name,
            erp=self._erp,
            agent_version=_agent_version(),
            database_time=now,
        )

    # -- customers ---------------------------------------------------------------------------

    def _find_customer(self, conn: Connection, ref: CustomerRef) -> Row[Any]:
        if ref.id is not None:
            found = ref.id.isdigit()
            row = conn.execute(q.customer_by_id(_int_id(ref.id))).first() if found else None
        elif ref.symbol is not None:
            row = conn.execute(q.customer_by_symbol(ref.symbol)).first()
        else:
            assert ref.nip is not None
            row = conn.execute(q.customer_by_nip(ref.nip)).first()
        if row is None:
            raise NotFound("no such customer")
        return row

    @handles("customers.get")
    def get_customer(self, args: CustomerRef, ctx: CallContext) -> Customer:
        with self._read() as conn:
            return _customer(self._find_customer(conn, args))

    @handles("customers.search")
    def search_customers(self, args: CustomerSearchArgs, ctx: CallContext) -> CustomerPage:
        stmt = q.customer_search(args.query, args.city, args.limit + 1, args.offset)
        with self._read() as conn:
            rows = conn.execute(stmt).all()
        return CustomerPage(
            items=[_customer(row) for row in rows[: args.limit]],
            next_offset=args.offset + args.limit if len(rows) > args.limit else None,
        )

    @handles("customers.balance")
    def customer_balance(self, args: CustomerRef, ctx: CallContext) -> CustomerBalance:
        today = self._today()
        with self._read() as conn:
            customer = self._find_customer(conn, args)
            rows = conn.execute(q.open_receivables(customer.kh_Id)).all()
        documents: list[OpenDocument] = []
        receivables = overdue = Decimal(0)
        for row in rows:
            due = _day(row.nzf_TerminPlatnosci)
            late = (today - due).days if due is not None and due < today else 0
            receivables += row.nzf_Wartosc
            if late:
                overdue += row.nzf_Wartosc
            documents.append(
                OpenDocument(
                    id=str(row.nzf_IdDokumentAuto or row.nzf_Id),
                    number=row.number or "",
                    issued=_day(row.issued) or today,
                    due=due,
                    amount=_money(row.nzf_WartoscPierwotna),
                    open=_money(row.nzf_Wartosc),
                    overdue_days=late,
                )
            )
        limit = _credit_limit(customer)
        return CustomerBalance(
            customer_id=str(customer.kh_Id),
            receivables=_money(receivables),
            overdue=_money(overdue),
            credit_limit=limit,
            credit_available=None
            if limit is None
            else max(_money(limit - receivables), Decimal("0.00")),
            open_documents=documents,
        )

    @handles("customers.create")
    def create_customer(self, args: NewCustomer, ctx: CallContext) -> Customer:
        token = key_token(ctx.idempotency_key, CUSTOMER_KEY_WIDTH) if ctx.idempotency_key else ""
        with self._write() as conn:
            kh_id = self._insert_customer(conn, args, token)
            return _customer(conn.execute(q.customer_by_id(kh_id)).one())

    def _insert_customer(self, conn: Connection, new: NewCustomer, key: str = "") -> int:
        """Write ``kh__Kontrahent`` and its main ``adr__Ewid``; the caller's transaction."""
        _check_lengths(new)
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

    # -- products ----------------------------------------------------------------------------

    @handles("products.get")
    def get_product(self, args: ProductRef, ctx: CallContext) -> Product:
        with self._read() as conn:
            if args.id is not None:
                stmt = q.product_by_id(_int_id(args.id)) if args.id.isdigit() else None
            elif args.sku is not None:
                stmt = q.product_by_sku(args.sku)
            else:
                assert args.ean is not None
                stmt = q.product_by_ean(args.ean)
            row = conn.execute(stmt).first() if stmt is not None else None
        if row is None:
            raise NotFound("no such product")
        return _product(row)

    @handles("products.search")
    def search_products(self, args: ProductSearchArgs, ctx: CallContext) -> ProductPage:
        with self._read() as conn:
            rows = conn.execute(q.product_search(args.query, args.limit + 1, args.offset)).all()
        return ProductPage(
            items=[_product(row) for row in rows[: args.limit]],
            next_offset=args.offset + args.limit if len(rows) > args.limit else None,
        )

    @handles("products.stock")
    def stock(self, args: StockArgs, ctx: CallContext) -> StockResult:
        skus = list(dict.fromkeys(args.skus))
        with self._read() as conn:
            mags = conn.execute(q.warehouses(args.warehouses)).all()
            if args.warehouses is not None:
                missing = sorted(set(args.warehouses) - {m.mag_Symbol for m in mags})
                if missing:
                    raise NotFound("no such warehouse", details={"warehouses": missing})
            products = _by_sku(conn.execute(q.products_by_skus(skus)).all())
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
                        quantity=_trim(qty),
                        reserved=_trim(reserved),
                        available=_trim(qty - reserved),
                    )
                )
            items.append(
                ProductStock(
                    sku=product.tw_Symbol,
                    product_id=str(product.tw_Id),
                    warehouses=per_mag,
                    quantity=_trim(sum((w.quantity for w in per_mag), Decimal(0))),
                    reserved=_trim(sum((w.reserved for w in per_mag), Decimal(0))),
                    available=_trim(sum((w.available for w in per_mag), Decimal(0))),
                )
            )
        return StockResult(items=items, unknown_skus=_unknown(skus, products))

    @handles("products.prices")
    def prices(self, args: PricesArgs, ctx: CallContext) -> PricesResult:
        skus = list(dict.fromkeys(args.skus))
        with self._read() as conn:
            names_row = conn.execute(q.price_level_names()).first()
            products = _by_sku(conn.execute(q.product_prices(skus)).all())
        names = [(n, names_row[n - 1]) for n in range(1, PRICE_LEVELS + 1)] if names_row else []
        used = [(n, name) for n, name in names if name]
        items: list[ProductPrices] = []
        for sku in skus:
            row = products.get(sku.casefold())
            if row is None:
                continue
            rate = row.vat_Stawka
            levels = []
            for n, name in used:
                net = row._mapping[f"tc_CenaNetto{n}"]
                if net is None:
                    continue
                gross = row._mapping[f"tc_CenaBrutto{n}"]
                if gross is None:
                    gross = _money(net * (100 + rate) / 100)
                levels.append(
                    PriceLevel(level=n, name=name, net=_trim(net, 2), gross=_trim(gross, 2))
                )
            items.append(
                ProductPrices(
                    sku=row.tw_Symbol,
                    product_id=str(row.tw_Id),
                    vat_rate=_trim(rate),
                    levels=levels,
                )
            )
        return PricesResult(items=items, unknown_skus=_unknown(skus, products))

    # -- orders ------------------------------------------------------------------------------

    @handles("orders.create")
    def create_order(self, args: CreateOrderArgs, ctx: CallContext) -> Order:
        if len(args.notes) > NOTES_MAX:
            raise Conflict(f"notes longer than {NOTES_MAX} characters do not fit the ERP document")
        if args.delivery_method is not None and len(args.delivery_method) > DELIVERY_MAX:
            raise Conflict(f"delivery_method longer than {DELIVERY_MAX} characters")
        today = self._today()
        with self._write() as conn:
            existing = conn.execute(q.order_by_external_number(args.external_number)).first()
            if existing is not None:
                raise Conflict(
                    "an order with this external number already exists",
                    details={
                        "external_number": args.external_number,
                        "order_id": str(existing.dok_Id),
                        "number": existing.dok_NrPelny,
                    },
                )
            customer = self._order_customer(conn, args, ctx)
            mag_id, _mag_symbol = self._order_warehouse(conn, args.warehouse)
            level = customer.kh_Cena if customer.kh_Cena in range(1, PRICE_LEVELS + 1) else 1
            priced = self._price_lines(conn, args.lines, mag_id, level)
            dok_id = self._allocate(conn, "dok__Dokument", 1)
            first_line_id = self._allocate(conn, "dok_Pozycja", len(priced))
            period_start = datetime(today.year, today.month, 1)
            period_end = (period_start + timedelta(days=32)).replace(day=1)
            last = conn.execute(q.last_number(DocType.ZK, period_start, period_end)).scalar()
            nr = int(last or 0) + 1
            issued = datetime(today.year, today.month, today.day)
            net = sum((p.net for p in priced), Decimal(0))
            vat = sum((p.vat for p in priced), Decimal(0))
            conn.execute(
                q.insert_document(
                    {
                        "dok_Id": dok_id,
                        "dok_Typ": DocType.ZK,
                        "dok_Podtyp": 0,
                        "dok_MagId": mag_id,
                        "dok_Nr": nr,
                        "dok_NrRoz": "",
                        "dok_NrPelny": document_number(DocType.ZK, nr, today),
                        "dok_NrPelnyOryg": args.external_number,
                        "dok_DataWyst": issued,
                        "dok_DataMag": issued,
                        "dok_TerminRealizacji": None,
                        "dok_PlatnikId": customer.kh_Id,
                        "dok_OdbiorcaId": customer.kh_Id,
                        "dok_PlatTermin": None,
                        "dok_CenyPoziom": level,
                        "dok_WartNetto": net,
                        "dok_WartVat": vat,
                        "dok_WartBrutto": net + vat,
                        "dok_KwDoZaplaty": net + vat,
                        "dok_Waluta": "PLN",
                        "dok_Uwagi": args.notes,
                        "dok_Podtytul": args.delivery_method or "",
                        "dok_Status": STATUS_ORDER_OPEN,
                        ORDER_KEY_COLUMN: key_token(ctx.idempotency_key, ORDER_KEY_WIDTH)
                        if ctx.idempotency_key
                        else None,
                    }
                )
            )
            for lp, item in enumerate(priced, start=1):
                self._write_line(
                    conn, item, dok_id=dok_id, ob_id=first_line_id + lp - 1, lp=lp, mag_id=mag_id
                )
            return self._load_order(conn, conn.execute(q.order_by_id(int(dok_id))).one())

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
        rows = _by_sku(conn.execute(q.order_for_sale(skus, mag_id, level)).all())
        unknown = _unknown(skus, rows)
        if unknown:
            raise NotFound("unknown products in the order", details={"unknown_skus": unknown})
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
                        "requested": _str(requested[row.tw_Id]),
                        "available": _str(max(available, Decimal(0))),
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
            net = _money(line.quantity * price_net)
            priced.append(
                _Priced(
                    line=line,
                    tw_id=row.tw_Id,
                    vat_id=row.vat_Id,
                    vat_rate=rate,
                    unit=row.tw_JednMiary,
                    price_net=price_net,
                    price_gross=_money(price_net * (100 + rate) / 100),
                    net=net,
                    vat=_money(net * rate / 100),
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
                details={"lines": [{"sku": item.line.sku, "requested": _str(item.line.quantity)}]},
            )

    @handles("orders.get")
    def get_order(self, args: OrderRef, ctx: CallContext) -> Order:
        with self._read() as conn:
            if args.id is not None:
                stmt = q.order_by_id(_int_id(args.id)) if args.id.isdigit() else None
            elif args.number is not None:
                stmt = q.order_by_number(args.number)
            else:
                assert args.external_number is not None
                stmt = q.order_by_external_number(args.external_number)
            header = conn.execute(stmt).first() if stmt is not None else None
            if header is None:
                raise NotFound("no such order")
            return self._load_order(conn, header)

    def _load_order(self, conn: Connection, header: Row[Any]) -> Order:
        lines = [
            OrderLine(
                position=row.ob_DokHanLp,
                sku=row.tw_Symbol,
                name=row.tw_Nazwa,
                quantity=_trim(row.ob_Ilosc),
                unit=row.ob_Jm,
                price_net=_trim(row.ob_CenaNetto, 2),
                price_gross=_trim(row.ob_CenaBrutto, 2),
                vat_rate=_trim(row.ob_VatProc),
                net=_money(row.ob_WartNetto),
                vat=_money(row.ob_WartVat),
                gross=_money(row.ob_WartBrutto),
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
            issued=_day(header.dok_DataWyst) or self._today(),
            currency=header.dok_Waluta or "PLN",
            net=_money(header.dok_WartNetto),
            vat=_money(header.dok_WartVat),
            gross=_money(header.dok_WartBrutto),
            delivery_method=header.dok_Podtytul or None,
            notes=header.dok_Uwagi or "",
            lines=lines,
        )

    # -- invoices ----------------------------------------------------------------------------

    @handles("invoices.list")
    def list_invoices(self, args: InvoiceListArgs, ctx: CallContext) -> InvoicePage:
        with self._read() as conn:
            customer = self._find_customer(conn, args.customer)
            stmt = q.invoices(
                customer.kh_Id,
                date_from=args.date_from,
                date_to=args.date_to,
                unpaid_only=args.unpaid_only,
                limit=args.limit + 1,
                offset=args.offset,
            )
            rows = conn.execute(stmt).all()
        items = [
            Invoice(
                id=str(row.dok_Id),
                number=row.dok_NrPelny,
                kind=DOC_SYMBOLS.get(row.dok_Typ, str(row.dok_Typ)),
                issued=_day(row.dok_DataWyst) or date.min,
                due=_day(row.dok_PlatTermin),
                currency=row.dok_Waluta or "PLN",
                net=_money(row.dok_WartNetto),
                vat=_money(row.dok_WartVat),
                gross=_money(row.dok_WartBrutto),
                open=_money(row.open_amount),
                paid=row.open_amount <= 0,
            )
            for row in rows[: args.limit]
        ]
        return InvoicePage(
            items=items,
            next_offset=args.offset + args.limit if len(rows) > args.limit else None,
        )


# -- the connector -----------------------------------------------------------------------------


class DemoConnector(Connector):
    """The built-in demo ERP: a seeded SQLite file, or any database with Subiekt GT's tables.

    Config options (the ``[connector]`` section):

    - ``path``: SQLite file; created and seeded when missing unless ``seed = false``.
    - ``url``: any SQLAlchemy URL instead (``mssql+pyodbc://...`` for a Subiekt-shaped database);
      never seeded unless ``seed = true`` is given.
    - ``seed``: create and fill the demo data when the database is empty.
    - ``writes``: serve the write operations (default true for ``path``, false for ``url``:
      direct inserts into a production Subiekt GT bypass Sfera, which InsERT does not support).
    - ``random_seed``: the generator's seed (default 42).
    - ``busy_timeout_ms``: how long a SQLite writer waits for another (default 5000).
    """

    name = "demo"
    session_class = DemoSession

    def __init__(
        self,
        url_or_path: str,
        *,
        seed: bool = True,
        random_seed: int = 42,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        writes: bool = True,
        today: Today = date.today,
    ) -> None:
        if seed:
            create_demo_database(url_or_path, random_seed, today=today())
        self._engine: Engine = build_engine(url_or_path, busy_timeout_ms=busy_timeout_ms)
        self._today = today
        self._writes = writes
        backend = self._engine.url.get_backend_name()
        self._erp = f"Demo ERP (Subiekt GT schema) on {backend}"

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> DemoConnector:
        path, url = options.get("path"), options.get("url")
        if (path is None) == (url is None):
            raise ValueError("demo connector: give exactly one of 'path' (SQLite file) or 'url'")
        seed = options.get("seed", path is not None)
        writes = options.get("writes", path is not None)
        for key, flag in (("seed", seed), ("writes", writes)):
            if not isinstance(flag, bool):
                raise ValueError(f"demo connector: {key!r} must be true or false")
        random_seed = options.get("random_seed", 42)
        busy = options.get("busy_timeout_ms", DEFAULT_BUSY_TIMEOUT_MS)
        for key, value in (("random_seed", random_seed), ("busy_timeout_ms", busy)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"demo connector: {key!r} must be a non-negative integer")
        if path is not None:
            if not isinstance(path, str | Path) or not str(path):
                raise ValueError("demo connector: 'path' must be a file path")
            target = str(Path(path).expanduser())
            if not seed and not Path(target).exists():
                raise ValueError(f"demo connector: {target} does not exist and seed = false")
        else:
            if not isinstance(url, str):
                raise ValueError("demo connector: 'url' must be an SQLAlchemy URL string")
            try:
                make_url(url)
            except sa_exc.ArgumentError as exc:
                raise ValueError(f"demo connector: 'url' is not a valid URL: {exc}") from None
            target = url
        return cls(target, seed=seed, random_seed=random_seed, busy_timeout_ms=busy, writes=writes)

    def info(self) -> ConnectorInfo:
        operations = DemoSession.operations()
        if not self._writes:
            operations -= WRITE_OPERATIONS
        return ConnectorInfo(name=self.name, erp=self._erp, operations=operations)

    def open_session(self) -> DemoSession:
        try:
            conn = self._engine.connect()
        except sa_exc.DBAPIError as exc:
            raise translate(exc, self._engine.dialect.name) from exc
        return DemoSession(conn, today=self._today, erp=self._erp, writes=self._writes)

    def close(self) -> None:
        self._engine.dispose()


# -- translation of rows and errors ------------------------------------------------------------


def _int_id(value: str) -> int:
    """An ERP id as Subiekt's ``int`` key; ids beyond its range match nothing."""
    number = int(value)
    return number if number < 2**31 else -1


def _money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _trim(value: Decimal, places: int = 0) -> Decimal:
    """Up to 4 decimals, no trailing zeros, at least ``places``: 2.0000 → 2, 19.9 → 19.90."""
    exact = value.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP).normalize()
    exponent = exact.as_tuple().exponent
    assert isinstance(exponent, int)
    if exponent > -places:
        return exact.quantize(Decimal(1).scaleb(-places))
    return exact


def _str(value: Decimal) -> str:
    return format(_trim(value), "f")


def _day(value: datetime | date | None) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    return value


def _by_sku(rows: Sequence[Row[Any]]) -> dict[str, Row[Any]]:
    """Rows keyed by folded SKU: SQL Server matches symbols case-insensitively, and so do we."""
    return {row.tw_Symbol.casefold(): row for row in rows}


def _unknown(skus: Sequence[str], found: Mapping[str, Any]) -> list[str]:
    return [sku for sku in skus if sku.casefold() not in found]


def _credit_limit(row: Row[Any]) -> Decimal | None:
    limit = row.kh_MaxWartKred
    return _money(limit) if limit is not None and limit > 0 else None


def _customer(row: Row[Any]) -> Customer:
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
        credit_limit=_credit_limit(row),
    )


def _product(row: Row[Any]) -> Product:
    return Product(
        id=str(row.tw_Id),
        sku=row.tw_Symbol,
        name=row.tw_Nazwa,
        ean=row.tw_PodstKodKresk or None,
        unit=row.tw_JednMiary,
        vat_rate=_trim(row.vat_Stawka),
        blocked=bool(row.tw_Zablokowany),
    )


def _check_lengths(new: NewCustomer) -> None:
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
