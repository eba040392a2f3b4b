"""The demo ERP's trade operations: quotes, a customer's commercial terms, sales reports.

A quote is what Subiekt GT calls an offer: a ZK (``dok_Typ`` 16) with ``dok_Status`` 6, the
status one public integration shows for offers (C). It is priced like an order (the customer's
price level, less the customer's discount from ``sl_Rabat``) and checked like one (blocked
customer or products, stock in the warehouse it would ship from), but reserves nothing: its
lines carry no warehouse (``ob_MagId`` NULL), so whatever releases or moves an order's
reservations line by line finds nothing to release on an offer. The validity date goes in the
ZK's realisation date ``dok_TerminRealizacji`` (G).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Row

from agent.connectors.base import CallContext, Conflict, finds, handles
from agent.connectors.demo import queries as q
from agent.connectors.demo import queries_trade as qt
from agent.connectors.demo.keys import order_id_by_key
from agent.connectors.demo.schema import PRICE_LEVELS, DocType
from agent.connectors.demo.session import DemoSessionBase, _Priced, line_values
from agent.connectors.demo.values import NOTES_MAX, credit_limit, day, money, trim, used_levels
from protocol.operations.customers import CustomerRef
from protocol.operations.trade import (
    CreateQuoteArgs,
    CustomerPriceLevel,
    CustomerTerms,
    PaymentTerms,
    Quote,
    SalesFigures,
    SalesReport,
    SalesReportArgs,
    SalesRow,
)

STATUS_OFFER = 6
"""``dok_Status`` of a ZK that is an offer (one public source, C; see docs/erp/demo.md)."""
QUOTE_DAYS = 30
"""How long a quote holds when the caller names no ``valid_until``."""
ZERO = Decimal(0)


def _level(customer: Row[Any]) -> int:
    """The customer's price level (``kh_Cena``), level 1 when unset or out of range."""
    return customer.kh_Cena if customer.kh_Cena in range(1, PRICE_LEVELS + 1) else 1


def _discounted(item: _Priced, percent: Decimal) -> _Priced:
    """``item`` with ``percent`` taken off its unit net price, rounded to the grosz like the
    ERP's document lines; the line's values follow from the new price."""
    price_net = money(item.price_net * (100 - percent) / 100)
    net = money(item.quantity * price_net)
    return replace(
        item,
        price_net=price_net,
        price_gross=money(price_net * (100 + item.vat_rate) / 100),
        net=net,
        vat=money(net * item.vat_rate / 100),
    )


def _figures(row: Row[Any]) -> dict[str, Any]:
    """A report row's aggregates as catalogue values; cost and margin only when every line
    counted has its purchase value."""
    net = money(row.net if row.net is not None else ZERO)
    known = row.unknown_cost == 0 and row.cost is not None
    return {
        "documents": int(row.documents),
        "quantity": trim(row.quantity if row.quantity is not None else ZERO),
        "net": net,
        "gross": money(row.gross if row.gross is not None else ZERO),
        "cost": money(row.cost) if known else None,
        "margin": net - money(row.cost) if known else None,
    }


def _key(group_by: str, value: Any) -> str | None:
    if value is None:
        return None
    if group_by == "day":  # a date from a server, ISO text from SQLite
        return value.isoformat() if isinstance(value, date) else str(value)[:10]
    return str(value)


class TradeHandlers(DemoSessionBase):
    """Handlers of `protocol.operations.trade`."""

    @handles("quotes.create")
    def create_quote(self, args: CreateQuoteArgs, ctx: CallContext) -> Quote:
        if len(args.notes) > NOTES_MAX:
            raise Conflict(f"Notes longer than {NOTES_MAX} characters do not fit the ERP document.")
        today = self._today()
        valid_until = args.valid_until or today + timedelta(days=QUOTE_DAYS)
        if valid_until < today:
            raise Conflict(
                "The quote's validity date is in the past.",
                details={"valid_until": valid_until.isoformat()},
            )
        with self._write() as conn:
            customer = self._find_customer(conn, args.customer)
            self._check_customer(customer, "quotes")
            (warehouse,) = self._find_warehouses(
                conn, None if args.warehouse is None else [args.warehouse]
            )
            level = _level(customer)
            percent = conn.execute(qt.customer_discount(customer.kh_Id)).scalar() or ZERO
            priced = [
                item if item.line.price_net is not None else _discounted(item, percent)
                for item in self._price_lines(conn, args.lines, [warehouse.mag_Id], level)
            ]
            net = sum((p.net for p in priced), ZERO)
            vat = sum((p.vat for p in priced), ZERO)
            dok_id = self._allocate(conn, "dok__Dokument", 1)
            first_line_id = self._allocate(conn, "dok_Pozycja", len(priced))
            self._insert_header(
                conn,
                dok_id=dok_id,
                doc_type=DocType.ZK,
                status=STATUS_OFFER,
                dok_MagId=warehouse.mag_Id,
                dok_TerminRealizacji=datetime(valid_until.year, valid_until.month, valid_until.day),
                dok_PlatnikId=customer.kh_Id,
                dok_OdbiorcaId=customer.kh_Id,
                dok_CenyPoziom=level,
                dok_WartNetto=net,
                dok_WartVat=vat,
                dok_WartBrutto=net + vat,
                dok_KwDoZaplaty=net + vat,
                dok_Waluta="PLN",
                dok_Uwagi=args.notes,
                dok_TransakcjaSymbol=self._document_token(ctx.idempotency_key),
            )
            conn.execute(
                q.insert_line(),
                [
                    line_values(
                        item,
                        dok_id=dok_id,
                        ob_id=first_line_id + lp - 1,
                        lp=lp,
                        mag_id=None,
                        discount=ZERO if item.line.price_net is not None else percent,
                    )
                    for lp, item in enumerate(priced, start=1)
                ],
            )
            return self._load_quote(conn, dok_id)

    @finds("quotes.create")
    def find_quote(self, idempotency_key: str) -> Quote | None:
        with self._read() as conn:
            dok_id = conn.execute(order_id_by_key(idempotency_key)).scalar()
            return None if dok_id is None else self._load_quote(conn, int(dok_id))

    def _load_quote(self, conn: Connection, dok_id: int) -> Quote:
        order = self._load_order(conn, conn.execute(q.order_by_id(dok_id)).one())
        extra = conn.execute(qt.quote_details(dok_id)).one()
        return Quote(
            id=order.id,
            number=order.number,
            status=order.status,
            customer_id=order.customer_id,
            warehouse=order.warehouse,
            issued=order.issued,
            valid_until=day(extra.dok_TerminRealizacji) or order.issued,
            currency=order.currency,
            discount=trim(extra.discount if extra.discount is not None else ZERO),
            net=order.net,
            vat=order.vat,
            gross=order.gross,
            notes=order.notes,
            lines=list(order.lines),
        )

    @handles("customers.terms")
    def customer_terms(self, args: CustomerRef, ctx: CallContext) -> CustomerTerms:
        with self._read() as conn:
            kh_id = self._find_customer(conn, args).kh_Id
            row = conn.execute(qt.customer_terms(kh_id)).one()
            names = dict(used_levels(conn.execute(q.price_level_names()).first()))
            receivables = money(conn.execute(q.receivables_total(kh_id)).scalar_one())
        level = row.kh_Cena
        limit = credit_limit(row)
        return CustomerTerms(
            customer_id=str(row.kh_Id),
            blocked=bool(row.kh_Zablokowany),
            price_level=None
            if level is None
            else CustomerPriceLevel(level=level, name=names.get(level, "")),
            discount=trim(row.rt_Procent if row.rt_Procent is not None else ZERO),
            credit_limit=limit,
            receivables=receivables,
            credit_available=None if limit is None else max(limit - receivables, money(ZERO)),
            payment=PaymentTerms(
                deferred=bool(row.kh_PlatOdroczone),
                days=int(row.kh_MaxDniSp or 0),
                method=row.fp_Nazwa,
            ),
        )

    @handles("reports.sales")
    def sales_report(self, args: SalesReportArgs, ctx: CallContext) -> SalesReport:
        grouped = qt.sales_by(
            args.group_by, args.date_from, args.date_to, args.limit + 1, args.offset
        )
        with self._read() as conn:
            rows = conn.execute(grouped).all()
            totals = conn.execute(qt.sales_totals(args.date_from, args.date_to)).one()
        return SalesReport(
            date_from=args.date_from,
            date_to=args.date_to,
            group_by=args.group_by,
            totals=SalesFigures(**_figures(totals)),
            items=[
                SalesRow(key=_key(args.group_by, row.key), name=row.name, **_figures(row))
                for row in rows[: args.limit]
            ],
            next_offset=args.offset + args.limit if len(rows) > args.limit else None,
        )
