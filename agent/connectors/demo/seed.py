"""Creating and filling the demo ERP: a small Polish wholesaler one year into trading.

Everything comes from one seeded `random.Random`, so the same seed and the same ``today`` give
the same database byte for byte in content: tests can name customer 1 and product ``KAW-0001``.
Rows are built in memory and written with one ``executemany`` per table inside one
transaction, which keeps a full seed (1,000 products, a year of invoices) to a second or two and
makes it all-or-nothing: a database is either empty or fully seeded.
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    case,
    func,
    insert,
    inspect,
    literal,
    select,
    update,
)

from agent.connectors.demo import names
from agent.connectors.demo.engine import IMMEDIATE, build_engine
from agent.connectors.demo.schema import (
    DOC_SYMBOLS,
    ID_TABLES,
    MAIN_ADDRESS,
    OBJECT_CUSTOMER,
    PRICE_LEVELS,
    RECEIVABLE,
    STATUS_EXECUTED,
    STATUS_ORDER_COMPLETED,
    STATUS_ORDER_OPEN,
    DocType,
    adr__Ewid,
    dok__Dokument,
    dok_Pozycja,
    ins_ident,
    kh__Kontrahent,
    metadata,
    nz__Finanse,
    sl_FormaPlatnosci,
    sl_Magazyn,
    sl_Rabat,
    sl_StawkaVAT,
    tw__Towar,
    tw_Cena,
    tw_Parametr,
    tw_Stan,
)
from protocol.operations.identifiers import ean13_check_digit, nip_check_digit

COMPANIES = 240
PERSONS = 60
PRODUCTS = 1000
INVOICE_DAYS = 365
PURCHASE_ORDERS = 12

CENT = Decimal("0.01")
PRICE_LEVEL_NAMES = ("Detaliczna", "Hurtowa", "Specjalna", "Internetowa")
PRICE_LEVEL_FACTORS = (Decimal("1.00"), Decimal("0.85"), Decimal("0.75"), Decimal("0.95"))
VAT_RATES = ((1, 23), (2, 8), (3, 5), (4, 0))
"""(vat_Id, rate in percent)."""
WAREHOUSES = (
    (1, "MAG", "Magazyn główny", True),
    (2, "SKL", "Sklep stacjonarny", False),
    (3, "WEB", "Magazyn sklepu internetowego", False),
)
DISCOUNTS = (
    (1, "Stały klient", Decimal(3)),
    (2, "Partner handlowy", Decimal(5)),
    (3, "Klient kluczowy", Decimal(10)),
)
"""(rt_Id, name, percent): ``sl_Rabat``; some companies get one (``kh_IdRabat``)."""
CASH, TRANSFER = 1, 2
PAYMENT_METHODS = ((CASH, "Gotówka", 0, 0), (TRANSFER, "Przelew", 14, 1), (3, "Karta", 0, 2))
"""(fp_Id, name, days, kind): ``sl_FormaPlatnosci``; deferred payers pay by transfer."""
TAX_OFFICE_PREFIXES = ("526", "951", "677", "779", "894", "584", "725", "813", "954", "521")
EAN_COMPANY = "5901234"
"""GS1 Poland prefix 590 plus a made-up company number; 5 digits are left for the item."""


def money(value: Decimal) -> Decimal:
    """Round to the grosz, half up, as Polish invoices do."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def document_number(doc_type: int, number: int, issued: date) -> str:
    """Subiekt GT's default full number: ``ZK 15/11/2026`` (number in its month and year)."""
    return f"{DOC_SYMBOLS[doc_type]} {number}/{issued.month:02d}/{issued.year}"


def create_demo_database(url_or_path: str, seed: int = 42, *, today: date | None = None) -> None:
    """Create the demo ERP's tables and fill them, unless the database is already seeded.

    ``today`` anchors the year of invoices (and so which ones are overdue); it defaults to the
    current date, and tests pass a fixed one to get identical databases.
    """
    engine = build_engine(url_or_path)
    try:
        metadata.create_all(engine)
        _add_missing_columns(engine)
        with engine.connect() as conn:
            conn.info[IMMEDIATE] = True
            with conn.begin():
                if conn.execute(select(func.count()).select_from(ins_ident)).scalar_one():
                    return
                rng = random.Random(seed)  # noqa: S311 - demo data, reproducible on purpose
                _Seeder(conn, rng, today or date.today()).run()
    finally:
        engine.dispose()


def _add_missing_columns(engine: Engine) -> None:
    """Bring a demo database made by an older version up to the current tables.

    Only added columns are handled (``ALTER TABLE … ADD COLUMN`` with the column's default,
    then its indexes): enough for the idempotency columns (``dok_TransakcjaSymbol``,
    ``kh_Pole1..8``) to appear in an existing demo file.
    """
    found = inspect(engine)
    with engine.begin() as conn:
        for table in metadata.sorted_tables:
            have = {column["name"] for column in found.get_columns(table.name)}
            missing = [column for column in table.columns if column.name not in have]
            for column in missing:
                kind = column.type.compile(dialect=engine.dialect)
                default = column.default
                value = getattr(default, "arg", None) if default is not None else None
                clause = " NOT NULL DEFAULT ''" if value == "" and not column.nullable else ""
                conn.exec_driver_sql(
                    f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind}{clause}'
                )
            if missing:
                for index in table.indexes:
                    index.create(conn, checkfirst=True)
        # A table added since the file was seeded needs its id counter (a seeded file only).
        counters = {row[0] for row in conn.execute(select(ins_ident.c.ido_nazwa))}
        if counters:
            new = [
                {"ido_nazwa": name, "ido_wartosc": 0} for name in ID_TABLES if name not in counters
            ]
            if new:
                conn.execute(insert(ins_ident), new)


@dataclass(frozen=True, slots=True)
class _Customer:
    id: int
    price_level: int
    payment_days: int
    is_person: bool
    blocked: bool


@dataclass(frozen=True, slots=True)
class _Product:
    id: int
    unit: str
    vat_id: int
    vat_rate: int
    prices: tuple[Decimal, ...]
    """Net price per level, level 1 first."""


def _ascii(text: str) -> str:
    """``Łódź`` → ``lodz``: for e-mail addresses and web domains."""
    text = text.replace("ł", "l").replace("Ł", "L")
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if ch.isascii() and (ch.isalnum() or ch in ".-"))


class _Seeder:
    def __init__(self, conn: Connection, rng: random.Random, today: date) -> None:
        self.conn = conn
        self.rng = rng
        self.today = today
        self.customers: list[_Customer] = []
        self.products: list[_Product] = []
        self.last_ids: dict[str, int] = {}

    def run(self) -> None:
        self._dictionaries()
        self._customers()
        self._products()
        self._invoices()
        self._trade_terms()
        self._purchase_orders()
        counters = {name: self.last_ids.get(name, 0) for name in ID_TABLES}
        self.conn.execute(
            insert(ins_ident),
            [{"ido_nazwa": name, "ido_wartosc": value} for name, value in counters.items()],
        )

    def _insert(self, table: Any, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            self.conn.execute(insert(table), list(rows))

    def _dictionaries(self) -> None:
        self._insert(
            sl_StawkaVAT,
            [
                {
                    "vat_Id": vid,
                    "vat_Nazwa": f"{rate}%",
                    "vat_Stawka": Decimal(rate),
                    "vat_Symbol": str(rate),
                }
                for vid, rate in VAT_RATES
            ],
        )
        self._insert(
            sl_Magazyn,
            [
                {
                    "mag_Id": mid,
                    "mag_Symbol": sym,
                    "mag_Nazwa": name,
                    "mag_Glowny": main,
                    "mag_Status": 1,
                }
                for mid, sym, name, main in WAREHOUSES
            ],
        )
        level_names = {f"twp_NazwaCeny{n}": "" for n in range(1, PRICE_LEVELS + 1)}
        for n, name in enumerate(PRICE_LEVEL_NAMES, start=1):
            level_names[f"twp_NazwaCeny{n}"] = name
        self._insert(tw_Parametr, [{"twp_Id": 1, **level_names}])

    # -- customers ---------------------------------------------------------------------------

    def _nip(self, used: set[str]) -> str:
        while True:
            first_nine = self.rng.choice(TAX_OFFICE_PREFIXES) + f"{self.rng.randrange(10**6):06d}"
            check = nip_check_digit(first_nine)
            nip = f"{first_nine}{check}"
            if check is not None and nip not in used:
                used.add(nip)
                return nip

    def _customers(self) -> None:
        rng = self.rng
        kh_rows: list[dict[str, Any]] = []
        adr_rows: list[dict[str, Any]] = []
        used_nips: set[str] = set()
        used_symbols: set[str] = set()
        used_emails: set[str] = set()
        kinds = [False] * COMPANIES + [True] * PERSONS
        rng.shuffle(kinds)
        for kh_id, is_person in enumerate(kinds, start=1):
            city, postal_prefix = rng.choice(names.CITIES)
            if is_person:
                female = rng.random() < 0.5
                first = rng.choice(names.FIRST_NAMES_FEMALE if female else names.FIRST_NAMES_MALE)
                last = rng.choice(names.SURNAMES)[1 if female else 0]
                name = full_name = f"{last} {first}"
                base_symbol = f"{last} {first[0]}".upper()
                local = f"{_ascii(first)}.{_ascii(last)}".lower()
                email = f"{local}@{rng.choice(names.MAIL_DOMAINS)}"
                nip = ""
            else:
                word = rng.choice(names.FIRM_WORDS)
                trade = rng.choice(names.FIRM_TRADES)
                short_kind, long_kind = rng.choice(names.FIRM_KINDS)
                name = f"{word} {trade} {short_kind}"
                full_name = f"{word} {trade} {long_kind}"
                base_symbol = word.upper()
                email = f"biuro@{_ascii(word + trade).lower()}.pl"
                nip = self._nip(used_nips)
            symbol = _unique(base_symbol[:16], used_symbols)
            email = _unique_email(email, used_emails)
            price_level = rng.choice((1, 4)) if is_person else rng.choice((1, 2, 2, 3))
            deferred = not is_person and rng.random() < 0.7
            limit = Decimal(rng.choice((5_000, 10_000, 20_000, 50_000, 100_000))) if deferred else 0
            kh_rows.append(
                {
                    "kh_Id": kh_id,
                    "kh_Symbol": symbol,
                    "kh_Rodzaj": 0,
                    "kh_EMail": email,
                    "kh_Osoba": is_person,
                    "kh_Imie": first if is_person else "",
                    "kh_Nazwisko": last if is_person else "",
                    "kh_Cena": price_level,
                    "kh_PlatOdroczone": deferred,
                    "kh_MaxWartKred": Decimal(limit),
                    "kh_MaxDniSp": rng.choice((7, 14, 14, 21, 30)) if deferred else 0,
                    "kh_Zablokowany": rng.random() < 0.04,
                    "kh_Uwagi": "",
                    "kh_DataDodania": datetime(self.today.year - 2, 1, 1)
                    + timedelta(days=rng.randrange(700)),
                }
            )
            adr_rows.append(
                {
                    "adr_Id": kh_id,
                    "adr_IdObiektu": kh_id,
                    "adr_TypAdresu": MAIN_ADDRESS,
                    "adr_Nazwa": name[:53],
                    "adr_NazwaPelna": full_name,
                    "adr_Telefon": f"+48 {rng.randrange(500, 899)} {rng.randrange(1000):03d} "
                    f"{rng.randrange(1000):03d}",
                    "adr_Ulica": rng.choice(names.STREETS),
                    "adr_NrDomu": str(rng.randrange(1, 180)),
                    "adr_NrLokalu": str(rng.randrange(1, 60)) if rng.random() < 0.4 else "",
                    "adr_Kod": f"{postal_prefix}{rng.randrange(100):02d}",
                    "adr_Miejscowosc": city,
                    "adr_NIP": nip,
                    "adr_Symbol": symbol,
                }
            )
            self.customers.append(
                _Customer(
                    id=kh_id,
                    price_level=price_level,
                    payment_days=int(kh_rows[-1]["kh_MaxDniSp"]) or 7,
                    is_person=is_person,
                    blocked=bool(kh_rows[-1]["kh_Zablokowany"]),
                )
            )
        self._insert(kh__Kontrahent, kh_rows)
        self._insert(adr__Ewid, adr_rows)
        self.last_ids["kh__Kontrahent"] = len(kh_rows)
        self.last_ids["adr__Ewid"] = len(adr_rows)

    # -- products, prices, stock ---------------------------------------------------------------

    def _products(self) -> None:
        rng = self.rng
        vat_ids = {rate: vid for vid, rate in VAT_RATES}
        tw_rows: list[dict[str, Any]] = []
        price_rows: list[dict[str, Any]] = []
        stock_rows: list[dict[str, Any]] = []
        counters: dict[str, int] = {}
        used_names: set[str] = set()
        for tw_id in range(1, PRODUCTS + 1):
            prefix, unit, vat, (low, high), nouns, qualities = rng.choice(names.PRODUCT_CATEGORIES)
            counters[prefix] = counters.get(prefix, 0) + 1
            sku = f"{prefix}-{counters[prefix]:04d}"
            name = _unique(f"{rng.choice(nouns)} {rng.choice(qualities)}"[:44], used_names, sep=" ")
            first_twelve = f"{EAN_COMPANY}{tw_id:05d}"
            ean = f"{first_twelve}{ean13_check_digit(first_twelve)}"
            tw_rows.append(
                {
                    "tw_Id": tw_id,
                    "tw_Symbol": sku,
                    "tw_Rodzaj": 1,
                    "tw_Nazwa": name,
                    "tw_Opis": "",
                    "tw_PodstKodKresk": ean,
                    "tw_JednMiary": unit,
                    "tw_IdVatSp": vat_ids[vat],
                    "tw_Zablokowany": rng.random() < 0.01,
                    "tw_Usuniety": False,
                }
            )
            base = money(Decimal(rng.randrange(low * 100, high * 100)) / 100)
            nets = tuple(money(base * factor) for factor in PRICE_LEVEL_FACTORS)
            price_row: dict[str, Any] = {"tc_Id": tw_id, "tc_IdTowar": tw_id}
            for level in range(PRICE_LEVELS + 1):
                net = nets[level - 1] if 1 <= level <= len(nets) else None
                price_row[f"tc_CenaNetto{level}"] = net
                price_row[f"tc_CenaBrutto{level}"] = (
                    None if net is None else money(net * (100 + vat) / 100)
                )
            price_rows.append(price_row)
            fractional = unit in ("kg", "m", "l")
            for mag_id, _symbol, _name, _main in WAREHOUSES:
                top = {1: 500, 2: 40, 3: 120}[mag_id]
                if rng.random() < 0.06:
                    qty = Decimal(0)
                elif fractional:
                    qty = Decimal(rng.randrange(top * 100)) / 100
                else:
                    qty = Decimal(rng.randrange(top))
                reserved = Decimal(0)
                if qty > 0 and rng.random() < 0.3:
                    reserved = (qty * Decimal(rng.randrange(0, 101)) / 100).quantize(
                        Decimal(1) if not fractional else CENT, rounding="ROUND_DOWN"
                    )
                stock_rows.append(
                    {
                        "st_TowId": tw_id,
                        "st_MagId": mag_id,
                        "st_Stan": qty,
                        "st_StanRez": reserved,
                        "st_StanMin": Decimal(5) if mag_id == 1 else Decimal(0),
                        "st_StanMax": Decimal(0),
                    }
                )
            self.products.append(_Product(tw_id, unit, vat_ids[vat], vat, nets))
        self._insert(tw__Towar, tw_rows)
        self._insert(tw_Cena, price_rows)
        self._insert(tw_Stan, stock_rows)
        self.last_ids["tw__Towar"] = PRODUCTS
        self.last_ids["tw_Cena"] = PRODUCTS

    # -- B2B terms and purchase prices (added after the sales, so earlier ids stay put) ---------

    def _trade_terms(self) -> None:
        """Discounts, payment methods, purchase prices, and the cost of every line sold.

        Drawn from no random numbers (from ids alone), so nothing seeded before or after moves.
        The purchase price is ``tw_Cena`` level 0 at 55–80 % of the retail net price; each sales
        line gets it as ``ob_CenaNabycia`` and its value, to the grosz, as ``ob_WartNabycia``.
        """
        self._insert(
            sl_Rabat,
            [
                {"rt_Id": rt_id, "rt_Nazwa": name, "rt_Rodzaj": 0, "rt_Procent": percent}
                for rt_id, name, percent in DISCOUNTS
            ],
        )
        self._insert(
            sl_FormaPlatnosci,
            [
                {"fp_Id": fp_id, "fp_Nazwa": name, "fp_Termin": days, "fp_Typ": kind}
                for fp_id, name, days, kind in PAYMENT_METHODS
            ],
        )
        self.last_ids["sl_Rabat"] = len(DISCOUNTS)
        self.last_ids["sl_FormaPlatnosci"] = len(PAYMENT_METHODS)
        kh = kh__Kontrahent.c
        self.conn.execute(
            update(kh__Kontrahent).values(
                kh_IdFormaP=case((kh.kh_PlatOdroczone == literal(True), TRANSFER), else_=CASH)
            )
        )
        for rt_id, every in ((3, 23), (2, 7), (1, 5)):
            self.conn.execute(
                update(kh__Kontrahent)
                .where(
                    kh.kh_Id % every == 0, kh.kh_Osoba == literal(False), kh.kh_IdRabat.is_(None)
                )
                .values(kh_IdRabat=rt_id)
            )
        cost = {p.id: money(p.prices[0] * (55 + p.id * 37 % 26) / 100) for p in self.products}
        vat = {p.id: p.vat_rate for p in self.products}
        self.conn.execute(
            update(tw_Cena)
            .where(tw_Cena.c.tc_IdTowar == bindparam("tw"))
            .values(tc_CenaNetto0=bindparam("net"), tc_CenaBrutto0=bindparam("gross")),
            [
                {"tw": tw, "net": net, "gross": money(net * (100 + vat[tw]) / 100)}
                for tw, net in cost.items()
            ],
        )
        ob = dok_Pozycja.c
        sold = self.conn.execute(
            select(ob.ob_Id, ob.ob_TowId, ob.ob_Ilosc)
            .select_from(dok_Pozycja.join(dok__Dokument, dok__Dokument.c.dok_Id == ob.ob_DokHanId))
            .where(dok__Dokument.c.dok_Typ.in_([DocType.FS, DocType.PA]))
        ).all()
        self.conn.execute(
            update(dok_Pozycja)
            .where(ob.ob_Id == bindparam("ob"))
            .values(ob_CenaNabycia=bindparam("price"), ob_WartNabycia=bindparam("value")),
            [
                {
                    "ob": line.ob_Id,
                    "price": cost[line.ob_TowId],
                    "value": money(line.ob_Ilosc * cost[line.ob_TowId]),
                }
                for line in sold
            ],
        )

    # -- a year of sales -----------------------------------------------------------------------

    def _invoices(self) -> None:
        rng = self.rng
        companies = [c for c in self.customers if not c.is_person]
        persons = [c for c in self.customers if c.is_person]
        doc_rows: list[dict[str, Any]] = []
        line_rows: list[dict[str, Any]] = []
        nz_rows: list[dict[str, Any]] = []
        numbers: dict[tuple[int, int, int], int] = {}
        start = self.today - timedelta(days=INVOICE_DAYS)
        for day_offset in range(INVOICE_DAYS):
            issued = start + timedelta(days=day_offset)
            if issued.weekday() == 6:  # closed on Sundays
                continue
            plan = [DocType.FS] * rng.randrange(4, 9) + [DocType.PA] * rng.randrange(0, 3)
            for doc_type in plan:
                customer = rng.choice(companies if doc_type == DocType.FS else persons)
                key = (doc_type, issued.year, issued.month)
                numbers[key] = numbers.get(key, 0) + 1
                dok_id = len(doc_rows) + 1
                totals = self._lines(dok_id, customer, line_rows)
                due = (
                    issued + timedelta(days=customer.payment_days)
                    if doc_type == DocType.FS
                    else issued
                )
                number = document_number(doc_type, numbers[key], issued)
                when = datetime(issued.year, issued.month, issued.day)
                doc_rows.append(
                    {
                        "dok_Id": dok_id,
                        "dok_Typ": doc_type,
                        "dok_Podtyp": 0,
                        "dok_MagId": 1,
                        "dok_Nr": numbers[key],
                        "dok_NrRoz": "",
                        "dok_NrPelny": number,
                        "dok_NrPelnyOryg": "",
                        "dok_DataWyst": when,
                        "dok_DataMag": when,
                        "dok_TerminRealizacji": None,
                        "dok_PlatnikId": customer.id,
                        "dok_OdbiorcaId": customer.id,
                        "dok_PlatTermin": datetime(due.year, due.month, due.day),
                        "dok_CenyPoziom": customer.price_level,
                        "dok_WartNetto": totals[0],
                        "dok_WartVat": totals[1],
                        "dok_WartBrutto": totals[2],
                        "dok_KwDoZaplaty": totals[2],
                        "dok_Waluta": "PLN",
                        "dok_Uwagi": "",
                        "dok_Podtytul": "",
                        "dok_Status": STATUS_EXECUTED,
                    }
                )
                if doc_type == DocType.FS:
                    open_amount = self._open_amount(totals[2], due, customer)
                    nz_rows.append(
                        {
                            "nzf_Id": len(nz_rows) + 1,
                            "nzf_Data": when,
                            "nzf_TerminPlatnosci": datetime(due.year, due.month, due.day),
                            "nzf_Typ": RECEIVABLE,
                            "nzf_WartoscPierwotna": totals[2],
                            "nzf_Wartosc": open_amount,
                            "nzf_Splata": totals[2] - open_amount,
                            "nzf_IdWaluty": "PLN",
                            "nzf_IdDokumentAuto": dok_id,
                            "nzf_IdObiektu": customer.id,
                            "nzf_TypObiektu": OBJECT_CUSTOMER,
                            "nzf_Status": 1,
                            "nzf_NumerPelny": number,
                        }
                    )
        self._insert(dok__Dokument, doc_rows)
        self._insert(dok_Pozycja, line_rows)
        self._insert(nz__Finanse, nz_rows)
        self.last_ids["dok__Dokument"] = len(doc_rows)
        self.last_ids["dok_Pozycja"] = len(line_rows)
        self.last_ids["nz__Finanse"] = len(nz_rows)

    def _purchase_orders(self) -> None:
        """Open purchase orders (ZD) to suppliers, expected over the next weeks: the planned
        deliveries of ``products.availability``. One is already completed and one has no date.

        Drawn from no random numbers (from indexes alone), so nothing seeded before moves, and
        written last, so every id seeded before stays the same.
        """
        suppliers = [c for c in self.customers if not c.is_person]
        first_doc = self.last_ids["dok__Dokument"] + 1
        first_line = self.last_ids["dok_Pozycja"] + 1
        doc_rows: list[dict[str, Any]] = []
        line_rows: list[dict[str, Any]] = []
        numbers: dict[tuple[int, int], int] = {}
        for n in range(PURCHASE_ORDERS):
            dok_id = first_doc + n
            mag_id = (1, 3, 1, 2)[n % 4]
            issued = self.today - timedelta(days=n % 5)
            numbers[issued.year, issued.month] = numbers.get((issued.year, issued.month), 0) + 1
            expected = None if n == PURCHASE_ORDERS - 1 else self.today + timedelta(days=3 + 4 * n)
            total_net = total_vat = Decimal(0)
            for k in range(1 + n % 3):
                product = self.products[(n * 83 + k * 17) % len(self.products)]
                quantity = Decimal(10 * (k + 1))
                price = money(product.prices[0] * Decimal("0.6"))
                net = money(quantity * price)
                vat = money(net * product.vat_rate / 100)
                total_net += net
                total_vat += vat
                line_rows.append(
                    {
                        "ob_Id": first_line + len(line_rows),
                        "ob_DokHanId": dok_id,
                        "ob_DokMagId": None,
                        "ob_DokHanLp": k + 1,
                        "ob_TowId": product.id,
                        "ob_Ilosc": quantity,
                        "ob_Jm": product.unit,
                        "ob_CenaNetto": price,
                        "ob_CenaBrutto": money(price * (100 + product.vat_rate) / 100),
                        "ob_Rabat": Decimal(0),
                        "ob_VatId": product.vat_id,
                        "ob_VatProc": Decimal(product.vat_rate),
                        "ob_WartNetto": net,
                        "ob_WartVat": vat,
                        "ob_WartBrutto": net + vat,
                        "ob_MagId": mag_id,
                    }
                )
            supplier = suppliers[n * 7 % len(suppliers)]
            when = datetime(issued.year, issued.month, issued.day)
            doc_rows.append(
                {
                    "dok_Id": dok_id,
                    "dok_Typ": DocType.ZD,
                    "dok_Podtyp": 0,
                    "dok_MagId": mag_id,
                    "dok_Nr": numbers[issued.year, issued.month],
                    "dok_NrRoz": "",
                    "dok_NrPelny": document_number(
                        DocType.ZD, numbers[issued.year, issued.month], issued
                    ),
                    "dok_NrPelnyOryg": "",
                    "dok_DataWyst": when,
                    "dok_DataMag": when,
                    "dok_TerminRealizacji": None
                    if expected is None
                    else datetime(expected.year, expected.month, expected.day),
                    "dok_PlatnikId": supplier.id,
                    "dok_OdbiorcaId": supplier.id,
                    "dok_WartNetto": total_net,
                    "dok_WartVat": total_vat,
                    "dok_WartBrutto": total_net + total_vat,
                    "dok_Waluta": "PLN",
                    "dok_Uwagi": "",
                    "dok_Podtytul": "",
                    "dok_Status": STATUS_ORDER_COMPLETED if n == 0 else STATUS_ORDER_OPEN,
                }
            )
        self._insert(dok__Dokument, doc_rows)
        self._insert(dok_Pozycja, line_rows)
        self.last_ids["dok__Dokument"] += len(doc_rows)
        self.last_ids["dok_Pozycja"] += len(line_rows)

    def _lines(
        self, dok_id: int, customer: _Customer, line_rows: list[dict[str, Any]]
    ) -> tuple[Decimal, Decimal, Decimal]:
        rng = self.rng
        total_net = total_vat = Decimal(0)
        for lp, product in enumerate(rng.sample(self.products, rng.randrange(1, 7)), start=1):
            if product.unit in ("kg", "m", "l"):
                qty = Decimal(rng.randrange(50, 2000, 25)) / 100
            else:
                qty = Decimal(rng.randrange(1, 13))
            price = product.prices[customer.price_level - 1]
            net = money(qty * price)
            vat = money(net * product.vat_rate / 100)
            total_net += net
            total_vat += vat
            line_rows.append(
                {
                    "ob_Id": len(line_rows) + 1,
                    "ob_DokHanId": dok_id,
                    "ob_DokMagId": None,
                    "ob_DokHanLp": lp,
                    "ob_TowId": product.id,
                    "ob_Ilosc": qty,
                    "ob_Jm": product.unit,
                    "ob_CenaNetto": price,
                    "ob_CenaBrutto": money(price * (100 + product.vat_rate) / 100),
                    "ob_Rabat": Decimal(0),
                    "ob_VatId": product.vat_id,
                    "ob_VatProc": Decimal(product.vat_rate),
                    "ob_WartNetto": net,
                    "ob_WartVat": vat,
                    "ob_WartBrutto": net + vat,
                    "ob_MagId": 1,
                }
            )
        return total_net, total_vat, total_net + total_vat

    def _open_amount(self, gross: Decimal, due: date, customer: _Customer) -> Decimal:
        """How much of an invoice is still unpaid today: old ones mostly paid, late payers late."""
        rng = self.rng
        days_overdue = (self.today - due).days
        if days_overdue < 0:
            unpaid_chance = 0.7
        elif days_overdue < 45:
            unpaid_chance = 0.35
        else:
            unpaid_chance = 0.03
        if customer.blocked:
            unpaid_chance = max(unpaid_chance, 0.6)
        if rng.random() >= unpaid_chance:
            return Decimal(0)
        if rng.random() < 0.2:
            return money(gross * Decimal(rng.randrange(10, 90)) / 100)
        return gross


def _unique(base: str, used: set[str], *, sep: str = "") -> str:
    candidate, n = base, 1
    while candidate in used:
        n += 1
        candidate = f"{base}{sep}{n}"
    used.add(candidate)
    return candidate


def _unique_email(email: str, used: set[str]) -> str:
    local, _, domain = email.partition("@")
    candidate, n = email, 1
    while candidate in used:
        n += 1
        candidate = f"{local}{n}@{domain}"
    used.add(candidate)
    return candidate
