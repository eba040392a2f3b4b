"""The connector contract runs on every backend the demo ERP is proven on.

``sqlite``: the demo's own file store. ``mariadb-odbc``: a MariaDB server reached through
unixODBC, MariaDB Connector/ODBC and pyodbc (SQLAlchemy ``mysql+pyodbc``), the same stack the
agent uses towards SQL Server, so the pyodbc path is exercised against a real server and a real
driver. Each test gets its own copy of one seeded database (a file copy, or a server-side copy
of a template database, see `tests.support.mariadb`), so writes never leak between tests.

Expected values are read through a plain DB-API connection (`ErpDb`: ``sqlite3`` or pyodbc,
both with ``?`` parameters), never through the connector's SQL, so the two agree independently.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from agent.connectors.demo import DemoConnector, DemoSession, create_demo_database
from tests.support import mariadb

TODAY = date(2026, 11, 22)
SEED = 42
BACKENDS = ("sqlite", "mariadb-odbc")
_SCALE = Decimal(10_000)


@dataclass
class ErpDb:
    """A DB-API connection to one test's demo ERP, with the backend's representations undone.

    Money is an integer of 1/10,000ths on SQLite and ``DECIMAL(19,4)`` elsewhere; dates are
    ISO text on SQLite and ``datetime`` through ODBC.
    """

    backend: str
    conn: Any
    where: str
    """The SQLite file, or the MariaDB database name."""

    def all(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        cursor = self.conn.cursor()
        try:
            return [tuple(row) for row in cursor.execute(sql, params).fetchall()]
        finally:
            cursor.close()

    def one(self, sql: str, *params: object) -> Any:
        rows = self.all(sql, *params)
        return rows[0] if rows else None

    def money(self, raw: Any) -> Decimal:
        return Decimal(raw) / _SCALE if self.backend == "sqlite" else Decimal(raw)

    def stored_money(self, value: Decimal | int) -> Any:
        """``value`` as the money column stores it, to compare with in SQL."""
        return int(value * _SCALE) if self.backend == "sqlite" else Decimal(value)

    def day(self, raw: Any) -> date:
        return raw.date() if isinstance(raw, datetime) else date.fromisoformat(str(raw)[:10])

    @contextmanager
    def write_lock(self) -> Iterator[None]:
        """Hold what a writer needs (SQLite's write lock, the ``ins_ident`` rows on a server)
        from another connection until the block ends."""
        if self.backend == "sqlite":
            blocker = sqlite3.connect(self.where, isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")
        else:
            blocker = mariadb.connect(self.where, autocommit=False)
            blocker.execute("SELECT ido_wartosc FROM ins_ident FOR UPDATE").fetchall()
        try:
            yield
        finally:
            blocker.rollback()
            blocker.close()


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def template(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The seeded demo ERP every test copies: a file, or a database on the MariaDB server."""
    if backend == "sqlite":
        path = tmp_path_factory.mktemp("demo") / "template.sqlite"
        create_demo_database(str(path), seed=SEED, today=TODAY)
        yield str(path)
        return
    mariadb.connect().close()  # skip (or fail under CI) before seeding without a server
    try:
        yield mariadb.seeded_template(SEED, TODAY)
    finally:
        mariadb.drop_templates()


@pytest.fixture
def erp_db(backend: str, template: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """This test's own copy: (the connector's path or URL, the file or database name)."""
    if backend == "sqlite":
        path = tmp_path / "demo.sqlite"
        shutil.copy(template, path)
        yield str(path), str(path)
        return
    name = mariadb.clone_database(template)
    try:
        yield mariadb.sqlalchemy_url(name), name
    finally:
        mariadb.drop_database(name)


@pytest.fixture
def erp_url(erp_db: tuple[str, str]) -> str:
    """The copy as an SQLAlchemy URL (the connector's ``url`` option)."""
    target = erp_db[0]
    return target if "://" in target else f"sqlite:///{target}"


@pytest.fixture
def connector(erp_db: tuple[str, str]) -> Iterator[DemoConnector]:
    conn = DemoConnector(erp_db[0], seed=False, today=lambda: TODAY)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def session(connector: DemoConnector) -> Iterator[DemoSession]:
    sess = connector.open_session()
    try:
        yield sess
    finally:
        sess.close()


@pytest.fixture
def db(backend: str, erp_db: tuple[str, str]) -> Iterator[ErpDb]:
    where = erp_db[1]
    if backend == "sqlite":
        conn: Any = sqlite3.connect(where, isolation_level=None)
    else:
        conn = mariadb.connect(where)
    try:
        yield ErpDb(backend, conn, where)
    finally:
        conn.close()


@pytest.fixture
def sqlite_only(backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("SQLite-specific; tests/odbc covers the server's side of this")
