"""The demo ERP's fulfilment operations: what happens to an order (ZK) after ``orders.create``.

Every write claims the row it changes with a conditional update first (the ZK's status, the
receivable's open amount), so two calls racing on a server database cannot both pass a check;
on SQLite the write lock does the same. Tables, codes and choices are in docs/erp/demo.md:

- the shop status is the comment of the order's flag (``fl_Wartosc``);
- a cancelled ZK gets ``dok_Status = 9`` and gives back each line's reservation (at its
  ``ob_MagId``); an offer (6) reserves nothing, so it gives nothing back;
- payments are ``nz_FinanseSplata`` rows; a payment larger than what is still open is refused
  (``conflict`` with ``details.open``): the ERP books no overpayments, the shop refunds them;
- FS/PA copy the ZK's lines, take the goods out of stock where each line was reserved, and open
  a receivable (``nzf_Typ = 39``) for what the prepayments did not cover;
- a return is a correction (KFS, also for a receipt) with negative lines that puts the goods back
  where they left from, takes its value off the open receivable, and books the part that was
  already paid as a payable to the customer (``nzf_Typ = 40``);
- a complaint is a row of the demo's own ``rk_Reklamacja`` (no stock movement).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
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
from agent.connectors.demo import queries_fulfilment as qf
from agent.connectors.demo.keys import ORDER_KEY_WIDTH, key_token
from agent.connectors.demo.schema import (
    OBJECT_CUSTOMER,
    ORDER_STATUSES,
    PAYABLE,
    RECEIVABLE,
    STATUS_EXECUTED,
    STATUS_ORDER_CANCELLED,
    STATUS_ORDER_COMPLETED,
    STATUS_ORDER_OPEN,
    DocType,
)
from agent.connectors.demo.session import DemoSessionBase
from agent.connectors.demo.values import day, dec_str, int_id, money, trim
from protocol.operations.fulfilment import (
    CancelOrderArgs,
    Complaint,
    ComplaintLineIn,
    CreateComplaintArgs,
    CreateReturnArgs,
    DocumentRef,
    FulfilOrderArgs,
    Payment,
    RegisterPaymentArgs,
    Return,
    ReturnLine,
    SalesDocument,
    UpdateOrderStatusArgs,
)
from protocol.operations.orders import Order

KEY_WIDTH = ORDER_KEY_WIDTH
"""Every fulfilment write keeps its key token in a ``varchar(30)`` column (see keys.py)."""

STATUS_ORDER_OFFER = 6
_KINDS = {"FS": DocType.FS, "PA": DocType.PA}
_ZERO = Decimal(0)


def _month(today: date) -> tuple[datetime, datetime]:
    """The numbering period (a month) ``today`` falls in."""
    start = datetime(today.year, today.month, 1)
    return start, (start + timedelta(days=32)).replace(day=1)


def _midnight(today: date) -> datetime:
    return datetime(today.year, today.month, today.day)


def _status_name(status: int) -> str:
    return ORDER_STATUSES.get(status, f"status_{status}")


def _over(requested: dict[str, Decimal], allowed: dict[str, Decimal], skus: dict[str, str]) -> Any:
    """The lines asking for more than ``allowed`` (per SKU, casefolded), for a `Conflict`."""
    return [
        {
            "sku": skus[key],
            "requested": dec_str(quantity),
            "returnable": dec_str(max(allowed.get(key, _ZERO), _ZERO)),
        }
        for key, quantity in requested.items()
        if quantity > allowed.get(key, _ZERO)
    ]


def _line_rows(
    dok_id: int, first_id: int, lines: Sequence[tuple[Row[Any], Decimal]]
) -> list[dict[str, Any]]:
    """``dok_Pozycja`` rows of document ``dok_id`` copied from ``(line, quantity)`` pairs; a
    quantity other than the line's (a return's, negative) gets its values from the line's prices,
    rounded as an order's lines are."""
    rows = []
    for lp, (line, quantity) in enumerate(lines, start=1):
        if quantity == line.ob_Ilosc:
            net, vat = line.ob_WartNetto, line.ob_WartVat
        else:
            net = money(quantity * line.ob_CenaNetto)
            vat = money(net * line.ob_VatProc / 100)
        rows.append(
            {
                "ob_Id": first_id + lp - 1,
                "ob_DokHanId": dok_id,
                "ob_DokMagId": None,
                "ob_DokHanLp": lp,
                "ob_TowId": line.ob_TowId,
                "ob_Ilosc": quantity,
                "ob_Jm": line.ob_Jm,
                "ob_CenaNetto": line.ob_CenaNetto,
                "ob_CenaBrutto": line.ob_CenaBrutto,
                "ob_Rabat": line.ob_Rabat,
                "ob_VatId": line.ob_VatId,
                "ob_VatProc": line.ob_VatProc,
                "ob_WartNetto": net,
                "ob_WartVat": vat,
                "ob_WartBrutto": net + vat,
                "ob_MagId": line.ob_MagId,
            }
        )
    return rows


class FulfilmentHandlers(DemoSessionBase):
    """Handlers of `protocol.operations.fulfilment`."""

    # -- orders.update_status / orders.cancel ---------------------------------------------------

    @handles("orders.update_status")
    def update_order_status(self, args: UpdateOrderStatusArgs, ctx: CallContext) -> Order:
        with self._write() as conn:
            header = self._find_order(conn, args.order)
            conn.execute(qf.clear_shop_status(header.dok_Id))
            conn.execute(qf.insert_shop_status(header.dok_Id, args.status, datetime.now()))
            return self._load_order(conn, header)

    @finds("orders.update_status")
    def find_update_status(self, idempotency_key: str) -> Order | None:
        """Always None: setting a status leaves no key in the ERP, and running it again sets
        the same text, so the agent may run an interrupted one again."""
        return None

    @handles("orders.cancel")
    def cancel_order(self, args: CancelOrderArgs, ctx: CallContext) -> Order:
        with self._write() as conn:
            header = self._find_order(conn, args.order)
            order_id = int(header.dok_Id)
            if header.dok_Status != STATUS_ORDER_CANCELLED:
                allowed = (STATUS_ORDER_OFFER, STATUS_ORDER_OPEN)
                claimed = conn.execute(qf.change_status(order_id, STATUS_ORDER_CANCELLED, allowed))
                if claimed.rowcount != 1:
                    header = conn.execute(q.order_by_id(order_id)).one()
                    if header.dok_Status != STATUS_ORDER_CANCELLED:
                        raise InvalidState(
                            "the order has been fulfilled and can no longer be cancelled",
                            details={"status": _status_name(header.dok_Status)},
                        )
                elif header.dok_Status == STATUS_ORDER_OPEN:
                    for line in conn.execute(qf.order_lines(order_id)).all():
                        if line.ob_MagId is not None:
                            conn.execute(
                                qf.release_reservation(line.ob_TowId, line.ob_MagId, line.ob_Ilosc)
                            )
            return self._load_order(conn, conn.execute(q.order_by_id(order_id)).one())

    @finds("orders.cancel")
    def find_cancel(self, idempotency_key: str) -> Order | None:
        """Always None: a cancellation leaves no key in the ERP, and cancelling a cancelled
        order answers the order as it is, so the agent may run an interrupted one again."""
        return None

    # -- payments.register ---------------------------------------------------------------------

    @handles("payments.register")
    def register_payment(self, args: RegisterPaymentArgs, ctx: CallContext) -> Payment:
        token = key_token(ctx.idempotency_key, KEY_WIDTH) if ctx.idempotency_key else None
        paid_on = _midnight(args.paid_on or self._today())
        with self._write() as conn:
            if args.order is not None:
                header = self._find_order(conn, args.order)
                if header.dok_Status == STATUS_ORDER_CANCELLED:
                    raise InvalidState(
                        "the order is cancelled and takes no payments",
                        details={"status": _status_name(header.dok_Status)},
                    )
                sales = [
                    row
                    for row in self._linked_documents(conn, int(header.dok_Id))
                    if row.dok_Typ in qf.SALES_TYPES
                ]
                if not sales:
                    return self._prepay(conn, header, args, paid_on, token)
                target = conn.execute(qf.document(int(sales[0].dok_Id))).one()
            else:
                target = self._find_sales_document(conn, args.document)
            receivable = conn.execute(qf.receivable_of(int(target.dok_Id))).first()
            if (
                receivable is None
                or not conn.execute(qf.pay_receivable(int(receivable.nzf_Id), args.amount)).rowcount
            ):
                still_open = _ZERO if receivable is None else receivable.nzf_Wartosc
                raise Conflict(
                    "the payment is more than is still open on the document",
                    details={"open": str(money(still_open)), "number": target.dok_NrPelny},
                )
            nzs_id = self._insert_payment(
                conn, args, paid_on, token, nzf_id=receivable.nzf_Id, target=target
            )
            return self._payment_view(conn, nzs_id)

    def _prepay(
        self,
        conn: Connection,
        header: Row[Any],
        args: RegisterPaymentArgs,
        paid_on: datetime,
        token: str | None,
    ) -> Payment:
        """A payment on an order not fulfilled yet: booked against the ZK, applied at issue."""
        conn.execute(qf.lock_document(int(header.dok_Id)))
        still_open = (
            header.dok_WartBrutto - conn.execute(qf.prepaid(int(header.dok_Id))).scalar_one()
        )
        if args.amount > still_open:
            raise Conflict(
                "the payment is more than is still open on the order",
                details={"open": str(money(still_open)), "number": header.dok_NrPelny},
            )
        target = conn.execute(qf.document(int(header.dok_Id))).one()
        nzs_id = self._insert_payment(conn, args, paid_on, token, nzf_id=None, target=target)
        return self._payment_view(conn, nzs_id)

    def _insert_payment(
        self,
        conn: Connection,
        args: RegisterPaymentArgs,
        paid_on: datetime,
        token: str | None,
        *,
        nzf_id: int | None,
        target: Row[Any],
    ) -> int:
        nzs_id = self._allocate(conn, "nz_FinanseSplata", 1)
        conn.execute(
            qf.insert_payment(
                {
                    "nzs_Id": nzs_id,
                    "nzs_IdFinanse": nzf_id,
                    "nzs_IdDokumentu": target.dok_Id,
                    "nzs_IdObiektu": target.dok_PlatnikId,
                    "nzs_Kwota": args.amount,
                    "nzs_Waluta": target.dok_Waluta or "PLN",
                    "nzs_Data": paid_on,
                    "nzs_FormaPlatnosci": args.method,
                    "nzs_Opis": args.reference,
                    "nzs_TransakcjaSymbol": token,
                }
            )
        )
        return nzs_id

    def _payment_view(self, conn: Connection, nzs_id: int) -> Payment:
        row = conn.execute(qf.payment_by_id(nzs_id)).one()
        booked = conn.execute(qf.document(int(row.nzs_IdDokumentu))).one()
        settlement = (
            None
            if row.nzs_IdFinanse is None
            else conn.execute(qf.settlement_by_id(int(row.nzs_IdFinanse))).one()
        )
        if booked.dok_Typ == DocType.ZK:
            order_id: int | None = booked.dok_Id
            document_id = None if settlement is None else settlement.nzf_IdDokumentAuto
        else:
            order_id, document_id = booked.dok_DoDokId, booked.dok_Id
        if settlement is not None:
            still_open = settlement.nzf_Wartosc
        else:
            still_open = (
                booked.dok_WartBrutto - conn.execute(qf.prepaid(int(booked.dok_Id))).scalar_one()
            )
        document = None if document_id is None else conn.execute(qf.document(document_id)).one()
        return Payment(
            id=str(row.nzs_Id),
            amount=money(row.nzs_Kwota),
            currency=row.nzs_Waluta,
            paid_on=day(row.nzs_Data) or self._today(),
            method=row.nzs_FormaPlatnosci,
            reference=row.nzs_Opis,
            order_id=None if order_id is None else str(order_id),
            document_id=None if document is None else str(document.dok_Id),
            document_number=None if document is None else document.dok_NrPelny,
            open=money(still_open),
        )

    @finds("payments.register")
    def find_payment(self, idempotency_key: str) -> Payment | None:
        with self._read() as conn:
            row = conn.execute(qf.payment_by_key(key_token(idempotency_key, KEY_WIDTH))).first()
            return None if row is None else self._payment_view(conn, int(row.nzs_Id))

    # -- orders.fulfil -------------------------------------------------------------------------

    @handles("orders.fulfil")
    def fulfil_order(self, args: FulfilOrderArgs, ctx: CallContext) -> SalesDocument:
        token = key_token(ctx.idempotency_key, KEY_WIDTH) if ctx.idempotency_key else None
        doc_type = _KINDS[args.kind]
        today = self._today()
        with self._write() as conn:
            header = self._find_order(conn, args.order)
            order_id = int(header.dok_Id)
            if header.dok_Status != STATUS_ORDER_OPEN:
                raise InvalidState(
                    "only an open order can be fulfilled",
                    details={
                        "status": _status_name(header.dok_Status),
                        "documents": [
                            row.dok_NrPelny for row in self._linked_documents(conn, order_id)
                        ],
                    },
                )
            order = conn.execute(qf.document(order_id)).one()
            payer = int(order.dok_PlatnikId)
            customer = conn.execute(q.customer_by_id(payer)).one()
            self._check_customer(customer, "sales documents")
            lines = conn.execute(qf.order_lines(order_id)).all()
            self._check_stock(conn, lines)
            prepaid = conn.execute(qf.prepaid(order_id)).scalar_one()
            amount_due = max(order.dok_WartBrutto - prepaid, _ZERO)
            terms = conn.execute(qf.payment_terms(payer)).one()
            if doc_type == DocType.FS and terms.kh_PlatOdroczone:
                self._check_credit(conn, customer, amount_due)
            claimed = conn.execute(
                qf.change_status(order_id, STATUS_ORDER_COMPLETED, (STATUS_ORDER_OPEN,))
            )
            if claimed.rowcount != 1:  # another call got there first (a server database)
                status = conn.execute(q.order_by_id(order_id)).one().dok_Status
                raise InvalidState(
                    "only an open order can be fulfilled", details={"status": _status_name(status)}
                )
            due = (
                today + timedelta(days=int(terms.kh_MaxDniSp or 0))
                if doc_type == DocType.FS
                else today
            )
            nip = (customer.adr_NIP or None) if doc_type == DocType.FS else None
            dok_id = self._allocate(conn, "dok__Dokument", 1)
            self._insert_document(
                conn,
                order,
                dok_id=dok_id,
                doc_type=doc_type,
                token=token,
                values={
                    "dok_PlatTermin": _midnight(due),
                    "dok_KwDoZaplaty": amount_due,
                    "dok_NrIdentNabywcy": nip,
                    "dok_WartNetto": order.dok_WartNetto,
                    "dok_WartVat": order.dok_WartVat,
                    "dok_WartBrutto": order.dok_WartBrutto,
                },
            )
            self._link_to_order(conn, dok_id, order_id)
            first = self._allocate(conn, "dok_Pozycja", len(lines))
            rows = _line_rows(dok_id, first, [(line, line.ob_Ilosc) for line in lines])
            conn.execute(q.insert_line(), rows)
            for line in lines:
                if not conn.execute(
                    qf.issue_stock(line.ob_TowId, line.ob_MagId, line.ob_Ilosc)
                ).rowcount:  # taken by another call since the check (a server database)
                    raise InsufficientStock(
                        "the goods of the order are no longer in stock",
                        details={
                            "lines": [{"sku": line.tw_Symbol, "requested": dec_str(line.ob_Ilosc)}]
                        },
                    )
            number = conn.execute(qf.document(dok_id)).one().dok_NrPelny
            nzf_id = self._allocate(conn, "nz__Finanse", 1)
            conn.execute(
                qf.insert_settlement(
                    {
                        "nzf_Id": nzf_id,
                        "nzf_Data": _midnight(today),
                        "nzf_TerminPlatnosci": _midnight(due),
                        "nzf_Typ": RECEIVABLE,
                        "nzf_WartoscPierwotna": order.dok_WartBrutto,
                        "nzf_Wartosc": amount_due,
                        "nzf_Splata": order.dok_WartBrutto - amount_due,
                        "nzf_IdWaluty": order.dok_Waluta or "PLN",
                        "nzf_IdDokumentAuto": dok_id,
                        "nzf_IdObiektu": payer,
                        "nzf_TypObiektu": OBJECT_CUSTOMER,
                        "nzf_Status": 1,
                        "nzf_NumerPelny": number,
                    }
                )
            )
            conn.execute(qf.apply_prepayments(order_id, nzf_id))
            return self._sales_view(conn, dok_id)

    def _check_stock(self, conn: Connection, lines: Sequence[Row[Any]]) -> None:
        """Every line's goods must still be in its warehouse (an ERP user may have moved them)."""
        need: dict[tuple[int, int], Decimal] = {}
        skus: dict[tuple[int, int], str] = {}
        for line in lines:
            pair = (int(line.ob_TowId), int(line.ob_MagId))
            need[pair] = need.get(pair, _ZERO) + line.ob_Ilosc
            skus[pair] = line.tw_Symbol
        have = {
            (int(row.st_TowId), int(row.st_MagId)): row.st_Stan
            for row in conn.execute(qf.stock_rows(list(need))).all()
        }
        short = [
            {
                "sku": skus[pair],
                "requested": dec_str(quantity),
                "available": dec_str(max(have.get(pair, _ZERO), _ZERO)),
            }
            for pair, quantity in need.items()
            if have.get(pair, _ZERO) < quantity
        ]
        if short:
            raise InsufficientStock(
                "the goods of the order are no longer in stock", details={"lines": short}
            )

    def _insert_document(
        self,
        conn: Connection,
        source: Row[Any],
        *,
        dok_id: int,
        doc_type: int,
        token: str | None,
        values: dict[str, Any],
    ) -> None:
        """Insert sales document or correction ``dok_id`` made from ``source``, numbered next
        in its type and month, carrying the write's key token and the source's channel."""
        self._insert_header(
            conn,
            dok_id=dok_id,
            doc_type=doc_type,
            status=STATUS_EXECUTED,
            dok_MagId=source.dok_MagId,
            dok_PlatnikId=source.dok_PlatnikId,
            dok_OdbiorcaId=source.dok_OdbiorcaId,
            dok_CenyPoziom=source.dok_CenyPoziom,
            dok_Waluta=source.dok_Waluta or "PLN",
            dok_KatId=source.dok_KatId,
            dok_TransakcjaSymbol=token,
            **values,
        )

    def _sales_view(self, conn: Connection, dok_id: int) -> SalesDocument:
        row = conn.execute(qf.document(dok_id)).one()
        gross = money(row.dok_WartBrutto)
        due_amount = money(row.dok_KwDoZaplaty or _ZERO)
        return SalesDocument(
            id=str(row.dok_Id),
            number=row.dok_NrPelny,
            kind="FS" if row.dok_Typ == DocType.FS else "PA",
            issued=day(row.dok_DataWyst) or self._today(),
            due=day(row.dok_PlatTermin),
            customer_id=str(row.dok_PlatnikId),
            nip=row.dok_NrIdentNabywcy or None,
            currency=row.dok_Waluta or "PLN",
            net=money(row.dok_WartNetto),
            vat=money(row.dok_WartVat),
            gross=gross,
            prepaid=gross - due_amount,
            amount_due=due_amount,
            order_id=str(row.dok_DoDokId),
            order_number=row.dok_DoDokNrPelny,
        )

    @finds("orders.fulfil")
    def find_fulfilment(self, idempotency_key: str) -> SalesDocument | None:
        token = key_token(idempotency_key, KEY_WIDTH)
        with self._read() as conn:
            dok_id = conn.execute(qf.document_by_key(token, qf.SALES_TYPES)).scalar()
            return None if dok_id is None else self._sales_view(conn, int(dok_id))

    def _find_sales_document(self, conn: Connection, ref: DocumentRef | None) -> Row[Any]:
        assert ref is not None
        if ref.id is not None:
            stmt = qf.sales_document_by_id(int_id(ref.id)) if ref.id.isdigit() else None
        else:
            assert ref.number is not None
            stmt = qf.sales_document_by_number(ref.number)
        row = conn.execute(stmt).first() if stmt is not None else None
        if row is None:
            raise NotFound("no such invoice or receipt")
        return row

    # -- returns.create ------------------------------------------------------------------------

    @handles("returns.create")
    def create_return(self, args: CreateReturnArgs, ctx: CallContext) -> Return:
        token = key_token(ctx.idempotency_key, KEY_WIDTH) if ctx.idempotency_key else None
        today = self._today()
        with self._write() as conn:
            sold = self._find_sales_document(conn, args.document)
            sold_id = int(sold.dok_Id)
            conn.execute(qf.lock_document(sold_id))
            taken = self._take_back(conn, sold_id, args)
            dok_id = self._allocate(conn, "dok__Dokument", 1)
            first = self._allocate(conn, "dok_Pozycja", len(taken))
            rows = _line_rows(dok_id, first, [(line, -qty) for line, qty in taken])
            net = sum((row["ob_WartNetto"] for row in rows), _ZERO)
            vat = sum((row["ob_WartVat"] for row in rows), _ZERO)
            gross = net + vat
            receivable = conn.execute(qf.receivable_of(sold_id)).first()
            still_open = _ZERO if receivable is None else receivable.nzf_Wartosc
            reduced = min(still_open, -gross)
            refund = -gross - reduced
            self._insert_document(
                conn,
                sold,
                dok_id=dok_id,
                doc_type=DocType.KFS,
                token=token,
                values={
                    "dok_PlatTermin": _midnight(today),
                    "dok_KwDoZaplaty": -refund,
                    "dok_WartNetto": net,
                    "dok_WartVat": vat,
                    "dok_WartBrutto": gross,
                    "dok_NrIdentNabywcy": sold.dok_NrIdentNabywcy,
                    "dok_DoDokId": sold_id,
                    "dok_DoDokNrPelny": sold.dok_NrPelny,
                    "dok_Uwagi": args.reason,
                },
            )
            conn.execute(q.insert_line(), rows)
            for line, qty in taken:
                if not conn.execute(qf.restock(line.ob_TowId, line.ob_MagId, qty)).rowcount:
                    conn.execute(qf.insert_stock(line.ob_TowId, line.ob_MagId, qty))
            if receivable is not None and reduced > 0:
                conn.execute(qf.reduce_receivable(int(receivable.nzf_Id), reduced))
            if refund > 0:
                self._book_refund(conn, dok_id, sold, refund, today)
            return self._return_view(conn, dok_id)

    def _take_back(
        self, conn: Connection, sold_id: int, args: CreateReturnArgs
    ) -> list[tuple[Row[Any], Decimal]]:
        """Which sold lines the returned quantities come from (first lines first), after the
        earlier corrections; `Conflict` when a SKU is asked back more than it can be."""
        lines = conn.execute(qf.order_lines(sold_id)).all()
        returned: dict[tuple[int, int], Decimal] = {}
        for row in conn.execute(qf.corrections_of(sold_id)).all():
            pair = (int(row.ob_TowId), int(row.ob_MagId))
            returned[pair] = returned.get(pair, _ZERO) - row.ob_Ilosc
        left: list[tuple[Row[Any], Decimal]] = []
        for line in lines:
            pair = (int(line.ob_TowId), int(line.ob_MagId))
            used = min(returned.get(pair, _ZERO), line.ob_Ilosc)
            returned[pair] = returned.get(pair, _ZERO) - used
            left.append((line, line.ob_Ilosc - used))
        requested: dict[str, Decimal] = {}
        names: dict[str, str] = {}
        for item in args.lines:
            key = item.sku.casefold()
            requested[key] = requested.get(key, _ZERO) + item.quantity
            names.setdefault(key, item.sku)
        allowed: dict[str, Decimal] = {}
        for line, remaining in left:
            key = line.tw_Symbol.casefold()
            allowed[key] = allowed.get(key, _ZERO) + remaining
            names[key] = line.tw_Symbol
        over = _over(requested, allowed, names)
        if over:
            raise Conflict(
                "more is returned than was sold on the document, less earlier returns",
                details={"lines": over},
            )
        taken: list[tuple[Row[Any], Decimal]] = []
        for line, remaining in left:
            key = line.tw_Symbol.casefold()
            qty = min(requested.get(key, _ZERO), remaining)
            if qty > 0:
                taken.append((line, qty))
                requested[key] -= qty
        return taken

    def _book_refund(
        self, conn: Connection, dok_id: int, sold: Row[Any], refund: Decimal, today: date
    ) -> None:
        """What the customer had paid for the returned goods: a payable (``nzf_Typ = 40``)."""
        number = conn.execute(qf.document(dok_id)).one().dok_NrPelny
        conn.execute(
            qf.insert_settlement(
                {
                    "nzf_Id": self._allocate(conn, "nz__Finanse", 1),
                    "nzf_Data": _midnight(today),
                    "nzf_TerminPlatnosci": _midnight(today),
                    "nzf_Typ": PAYABLE,
                    "nzf_WartoscPierwotna": refund,
                    "nzf_Wartosc": refund,
                    "nzf_Splata": _ZERO,
                    "nzf_IdWaluty": sold.dok_Waluta or "PLN",
                    "nzf_IdDokumentAuto": dok_id,
                    "nzf_IdObiektu": sold.dok_PlatnikId,
                    "nzf_TypObiektu": OBJECT_CUSTOMER,
                    "nzf_Status": 1,
                    "nzf_NumerPelny": number,
                }
            )
        )

    def _return_view(self, conn: Connection, dok_id: int) -> Return:
        row = conn.execute(qf.document(dok_id)).one()
        refund = conn.execute(qf.payable_of(dok_id, PAYABLE)).scalar() or _ZERO
        gross = money(row.dok_WartBrutto)
        lines = [
            ReturnLine(
                sku=line.tw_Symbol,
                quantity=trim(-line.ob_Ilosc),
                warehouse=line.mag_Symbol or "",
                net=money(line.ob_WartNetto),
                vat=money(line.ob_WartVat),
                gross=money(line.ob_WartBrutto),
            )
            for line in conn.execute(qf.order_lines(dok_id)).all()
        ]
        return Return(
            id=str(row.dok_Id),
            number=row.dok_NrPelny,
            kind="KFS",
            issued=day(row.dok_DataWyst) or self._today(),
            corrects_id=str(row.dok_DoDokId),
            corrects_number=row.dok_DoDokNrPelny,
            net=money(row.dok_WartNetto),
            vat=money(row.dok_WartVat),
            gross=gross,
            receivable_reduced=money(-gross - refund),
            refund_due=money(refund),
            lines=lines,
        )

    @finds("returns.create")
    def find_return(self, idempotency_key: str) -> Return | None:
        token = key_token(idempotency_key, KEY_WIDTH)
        with self._read() as conn:
            dok_id = conn.execute(qf.document_by_key(token, (DocType.KFS,))).scalar()
            return None if dok_id is None else self._return_view(conn, int(dok_id))

    # -- complaints.create ---------------------------------------------------------------------

    @handles("complaints.create")
    def create_complaint(self, args: CreateComplaintArgs, ctx: CallContext) -> Complaint:
        token = key_token(ctx.idempotency_key, KEY_WIDTH) if ctx.idempotency_key else None
        today = self._today()
        with self._write() as conn:
            sold = self._find_sales_document(conn, args.document)
            lines = conn.execute(qf.order_lines(int(sold.dok_Id))).all()
            on_document: dict[str, Decimal] = {}
            products: dict[str, int] = {}
            names: dict[str, str] = {}
            for line in lines:
                key = line.tw_Symbol.casefold()
                on_document[key] = on_document.get(key, _ZERO) + line.ob_Ilosc
                products[key] = int(line.ob_TowId)
                names[key] = line.tw_Symbol
            requested: dict[str, Decimal] = {}
            for item in args.lines:
                key = item.sku.casefold()
                requested[key] = requested.get(key, _ZERO) + item.quantity
                names.setdefault(key, item.sku)
            over = _over(requested, on_document, names)
            if over:
                raise Conflict(
                    "the complaint names goods the document does not have", details={"lines": over}
                )
            rk_id = self._allocate(conn, "rk_Reklamacja", 1)
            last = conn.execute(qf.last_complaint_number(*_month(today))).scalar()
            nr = int(last or 0) + 1
            conn.execute(
                qf.insert_complaint(
                    {
                        "rk_Id": rk_id,
                        "rk_Nr": nr,
                        "rk_NrPelny": f"REK {nr}/{today.month:02d}/{today.year}",
                        "rk_DokId": sold.dok_Id,
                        "rk_KhId": sold.dok_PlatnikId,
                        "rk_Data": _midnight(today),
                        "rk_Opis": args.description,
                        "rk_Status": 1,
                        "rk_TransakcjaSymbol": token,
                    }
                )
            )
            first = self._allocate(conn, "rk_Pozycja", len(args.lines))
            conn.execute(
                qf.insert_complaint_line(),
                [
                    {
                        "rkp_Id": first + n,
                        "rkp_RkId": rk_id,
                        "rkp_Lp": n + 1,
                        "rkp_TowId": products[item.sku.casefold()],
                        "rkp_Ilosc": item.quantity,
                    }
                    for n, item in enumerate(args.lines)
                ],
            )
            return self._complaint_view(conn, rk_id)

    def _complaint_view(self, conn: Connection, rk_id: int) -> Complaint:
        row = conn.execute(qf.complaint_by_id(rk_id)).one()
        return Complaint(
            id=str(row.rk_Id),
            number=row.rk_NrPelny,
            issued=day(row.rk_Data) or self._today(),
            document_id=str(row.rk_DokId),
            document_number=row.dok_NrPelny,
            customer_id=None if row.rk_KhId is None else str(row.rk_KhId),
            status="open",
            description=row.rk_Opis,
            lines=[
                ComplaintLineIn(sku=line.tw_Symbol, quantity=trim(line.rkp_Ilosc))
                for line in conn.execute(qf.complaint_lines(rk_id)).all()
            ],
        )

    @finds("complaints.create")
    def find_complaint(self, idempotency_key: str) -> Complaint | None:
        token = key_token(idempotency_key, KEY_WIDTH)
        with self._read() as conn:
            rk_id = conn.execute(qf.complaint_by_key(token)).scalar()
            return None if rk_id is None else self._complaint_view(conn, int(rk_id))
