"""Building the SQLAlchemy engine for the demo ERP, and making SQLite behave like a server.

SQLite is the demo's default store, and it is shared by several worker threads, each with its
own connection. Three settings make that work:

- WAL journal and a busy timeout: readers never block the writer, and a writer waits for the
  other writer instead of failing at once with "database is locked".
- Transactions begun by us (the driver's own implicit BEGIN is switched off): reads start a
  plain ``BEGIN``, writes a ``BEGIN IMMEDIATE`` that takes the write lock up front, so two orders
  reserving the same stock are serialised rather than failing half-way with a busy snapshot.
- A Unicode ``lower()``: SQLite's own folds ASCII only, and searching ``łódź`` must find
  ``Łódź`` as it does under SQL Server's ``Polish_CI_AS`` collation.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

IMMEDIATE = "erp_relay_begin_immediate"
"""Key in ``Connection.info``: the next transaction on this connection will write."""

DEFAULT_BUSY_TIMEOUT_MS = 5_000


def url_for(url_or_path: str) -> str:
    """An SQLAlchemy URL for a URL or a bare SQLite file path."""
    if "://" in url_or_path:
        return url_or_path
    return f"sqlite:///{url_or_path}"


def build_engine(url_or_path: str, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS) -> Engine:
    """An engine for the demo ERP; SQLite gets the settings described in the module docstring.

    Other databases keep SQLAlchemy's pool with a ping at checkout, so a session opened after
    a database restart never starts on a dead pooled connection. SQLite uses no pool: a session
    holds its connection for its whole life, so pooling buys nothing, and a closed session then
    really releases its file handle.
    """
    url = make_url(url_for(url_or_path))
    if url.get_backend_name() != "sqlite":
        # READ COMMITTED, SQL Server's default, also on MariaDB (whose default is REPEATABLE
        # READ): a writer that waited for the ins_ident lock must then see the rows the other
        # writer committed, or both would number their document alike.
        return create_engine(url, pool_pre_ping=True, isolation_level="READ COMMITTED")
    engine = create_engine(
        url,
        poolclass=NullPool,
        connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
    )
    _configure_sqlite(engine, busy_timeout_ms)
    return engine


def _unicode_lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, see _on_begin
        dbapi_connection.create_function("lower", 1, _unicode_lower, deterministic=True)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        immediate = connection.info.pop(IMMEDIATE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
