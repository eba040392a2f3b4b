"""The ``demo`` connector: the catalogue operations over a Subiekt GT-shaped database.

`DemoSession` puts together the handler groups; each runs on the plumbing of
`agent.connectors.demo.session` (one connection per worker thread, one transaction per call,
reconnecting, errors read by the shared SQL layer). This module holds the lookups and the first
writes (customers, products, orders, invoices) and the connector itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from agent.connectors.base import (
    CallContext,
    Conflict,
    Connector,
    ConnectorInfo,
    NotFound,
    finds,
    handles,
)
from agent.connectors.demo import queries as q
from agent.connectors.demo.changes import ChangeDetection
from agent.connectors.demo.engine import DEFAULT_BUSY_TIMEOUT_MS, build_engine
from agent.connectors.demo.fulfilment import FulfilmentHandlers
from agent.connectors.demo.keys import (
    CUSTOMER_KEY_WIDTH,
    customer_id_by_key,
    key_token,
    order_id_by_key,
)
from agent.connectors.demo.schema import DOC_SYMBOLS, PRICE_LEVELS, STATUS_ORDER_OPEN, DocType
from agent.connectors.demo.seed import create_demo_database
from agent.connectors.demo.session import Today
from agent.connectors.demo.trade import TradeHandlers
from agent.connectors.demo.values import (
    DELIVERY_MAX,
    NOTES_MAX,
    by_sku,
    credit_limit,
    customer_view,
    day,
    int_id,
    money,
    price_levels,
    product_view,
    trim,
    unknown,
    used_levels,
)
from agent.connectors.demo.warehouse import WarehouseHandlers
from agent.connectors.sql import translate
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
from protocol.operations.invoices import Invoice, InvoiceListArgs, InvoicePage
from protocol.operations.orders import CreateOrderArgs, Order, OrderRef
from protocol.operations.products import (
    PricesArgs,
    PricesResult,
    Product,
    ProductPage,
    ProductPrices,
    ProductRef,
    ProductSearchArgs,
    StockArgs,
    StockResult,
)
from protocol.operations.system import PingArgs, PingResult


def _agent_version() -> str:
    try:
        return version("erp-relay")
    except PackageNotFoundError:
        return "0.0.0"


class DemoSession(FulfilmentHandlers, WarehouseHandlers, TradeHandlers, ChangeDetection):
    """Every operation the demo ERP serves, on one connection."""

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

    @handles("customers.get")
    def get_customer(self, args: CustomerRef, ctx: CallContext) -> Customer:
        with self._read() as conn:
            return customer_view(self._find_customer(conn, args))

    @handles("customers.search")
    def search_customers(self, args: CustomerSearchArgs, ctx: CallContext) -> CustomerPage:
        stmt = q.customer_search(args.query, args.city, args.limit + 1, args.offset)
        with self._read() as conn:
            rows = conn.execute(stmt).all()
        return CustomerPage(
            items=[customer_view(row) for row in rows[: args.limit]],
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
            due = day(row.nzf_TerminPlatnosci)
            late = (today - due).days if due is not None and due < today else 0
            receivables += row.nzf_Wartosc
            if late:
                overdue += row.nzf_Wartosc
            documents.append(
                OpenDocument(
                    id=str(row.nzf_IdDokumentAuto or row.nzf_Id),
                    number=row.number or "",
                    issued=day(row.issued) or today,
                    due=due,
                    amount=money(row.nzf_WartoscPierwotna),
                    open=money(row.nzf_Wartosc),
                    overdue_days=late,
                )
            )
        limit = credit_limit(customer)
        return CustomerBalance(
            customer_id=str(customer.kh_Id),
            receivables=money(receivables),
            overdue=money(overdue),
            credit_limit=limit,
            credit_available=None
            if limit is None
            else max(money(limit - receivables), Decimal("0.00")),
            open_documents=documents,
        )

    @handles("customers.create")
    def create_customer(self, args: NewCustomer, ctx: CallContext) -> Customer:
        token = key_token(ctx.idempotency_key, CUSTOMER_KEY_WIDTH) if ctx.idempotency_key else ""
        with self._write() as conn:
            kh_id = self._insert_customer(conn, args, token)
            return customer_view(conn.execute(q.customer_by_id(kh_id)).one())

    @finds("customers.create")
    def find_customer(self, idempotency_key: str) -> Customer | None:
        with self._read() as conn:
            kh_id = conn.execute(customer_id_by_key(idempotency_key)).scalar()
            if kh_id is None:
                return None
            return customer_view(conn.execute(q.customer_by_id(int(kh_id))).one())

    @handles("products.get")
    def get_product(self, args: ProductRef, ctx: CallContext) -> Product:
        with self._read() as conn:
            if args.id is not None:
                stmt = q.product_by_id(int_id(args.id)) if args.id.isdigit() else None
            elif args.sku is not None:
                stmt = q.product_by_sku(args.sku)
            else:
                assert args.ean is not None
                stmt = q.product_by_ean(args.ean)
            row = conn.execute(stmt).first() if stmt is not None else None
        if row is None:
            raise NotFound("no such product")
        return product_view(row)

    @handles("products.search")
    def search_products(self, args: ProductSearchArgs, ctx: CallContext) -> ProductPage:
        with self._read() as conn:
            rows = conn.execute(q.product_search(args.query, args.limit + 1, args.offset)).all()
        return ProductPage(
            items=[product_view(row) for row in rows[: args.limit]],
            next_offset=args.offset + args.limit if len(rows) > args.limit else None,
        )

    @handles("products.stock")
    def stock(self, args: StockArgs, ctx: CallContext) -> StockResult:
        with self._read() as conn:
            return self._stock(conn, args)

    @handles("products.prices")
    def prices(self, args: PricesArgs, ctx: CallContext) -> PricesResult:
        skus = list(dict.fromkeys(args.skus))
        with self._read() as conn:
            names_row = conn.execute(q.price_level_names()).first()
            products = by_sku(conn.execute(q.product_prices(skus)).all())
        used = used_levels(names_row)
        items: list[ProductPrices] = []
        for sku in skus:
            row = products.get(sku.casefold())
            if row is None:
                continue
            items.append(
                ProductPrices(
                    sku=row.tw_Symbol,
                    product_id=str(row.tw_Id),
                    vat_rate=trim(row.vat_Stawka),
                    levels=price_levels(row, used),
                )
            )
        return PricesResult(items=items, unknown_skus=unknown(skus, products))

    @handles("orders.create")
    def create_order(self, args: CreateOrderArgs, ctx: CallContext) -> Order:
        if len(args.notes) > NOTES_MAX:
            raise Conflict(f"notes longer than {NOTES_MAX} characters do not fit the ERP document")
        if args.delivery_method is not None and len(args.delivery_method) > DELIVERY_MAX:
            raise Conflict(f"delivery_method longer than {DELIVERY_MAX} characters")
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
            mag_ids = [int(m.mag_Id) for m in self._find_warehouses(conn, args.preference)]
            level = customer.kh_Cena if customer.kh_Cena in range(1, PRICE_LEVELS + 1) else 1
            priced = self._price_lines(conn, args.lines, mag_ids, level, args.split)
            net = sum((p.net for p in priced), Decimal(0))
            vat = sum((p.vat for p in priced), Decimal(0))
            self._check_credit(conn, customer, net + vat)
            used = {p.mag_id for p in priced}
            mag_id = next(m for m in mag_ids if m in used)  # the header's: the first one used
            category = None if args.channel is None else self._category(conn, args.channel)
            dok_id = self._allocate(conn, "dok__Dokument", 1)
            first_line_id = self._allocate(conn, "dok_Pozycja", len(priced))
            self._insert_header(
                conn,
                dok_id=dok_id,
                doc_type=DocType.ZK,
                status=STATUS_ORDER_OPEN,
                dok_MagId=mag_id,
                dok_NrPelnyOryg=args.external_number,
                dok_PlatnikId=customer.kh_Id,
                dok_OdbiorcaId=customer.kh_Id,
                dok_PlatTermin=None,
                dok_CenyPoziom=level,
                dok_WartNetto=net,
                dok_WartVat=vat,
                dok_WartBrutto=net + vat,
                dok_KwDoZaplaty=net + vat,
                dok_Waluta="PLN",
                dok_Uwagi=args.notes,
                dok_Podtytul=args.delivery_method or "",
                dok_KatId=category,
                dok_TransakcjaSymbol=self._document_token(ctx.idempotency_key),
            )
            for lp, item in enumerate(priced, start=1):
                self._write_line(conn, item, dok_id=dok_id, ob_id=first_line_id + lp - 1, lp=lp)
            return self._load_order(conn, conn.execute(q.order_by_id(int(dok_id))).one())

    @finds("orders.create")
    def find_order(self, idempotency_key: str) -> Order | None:
        with self._read() as conn:
            dok_id = conn.execute(order_id_by_key(idempotency_key)).scalar()
            if dok_id is None:
                return None
            return self._load_order(conn, conn.execute(q.order_by_id(int(dok_id))).one())

    @handles("orders.get")
    def get_order(self, args: OrderRef, ctx: CallContext) -> Order:
        with self._read() as conn:
            return self._load_order(conn, self._find_order(conn, args))

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
                issued=day(row.dok_DataWyst) or date.min,
                due=day(row.dok_PlatTermin),
                currency=row.dok_Waluta or "PLN",
                net=money(row.dok_WartNetto),
                vat=money(row.dok_WartVat),
                gross=money(row.dok_WartBrutto),
                open=money(row.open_amount),
                paid=row.open_amount <= 0,
            )
            for row in rows[: args.limit]
        ]
        return InvoicePage(
            items=items,
            next_offset=args.offset + args.limit if len(rows) > args.limit else None,
        )


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
        return ConnectorInfo(name=self.name, erp=self._erp, operations=operations, changes=True)

    def open_session(self) -> DemoSession:
        try:
            conn = self._engine.connect()
        except sa_exc.DBAPIError as exc:
            raise translate(exc, self._engine.dialect.name) from exc
        return DemoSession(conn, today=self._today, erp=self._erp, writes=self._writes)

    def close(self) -> None:
        self._engine.dispose()
