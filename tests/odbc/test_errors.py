"""The SQLSTATE table (`agent.connectors.sql.errors`): as written, and against the real errors a
MariaDB server sends through MariaDB Connector/ODBC and pyodbc."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pyodbc
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy import exc as sa_exc

from agent.connectors.base import Conflict, ErpFailure, ErpUnavailable
from agent.connectors.sql import Fault, classify, connector_error, translate
from agent.connectors.sql.errors import diagnostics
from tests.odbc.support import in_thread, wait_until
from tests.support import mariadb


def odbc_error(state: str, native: int, kind: type[pyodbc.Error] = pyodbc.Error) -> pyodbc.Error:
    """A pyodbc error shaped exactly as pyodbc builds them from a driver's diagnostics."""
    return kind(
        state, f"[{state}] [driver][server]private text with Kowalski ({native}) (SQLExecDirectW)"
    )


@pytest.mark.parametrize(
    ("state", "native", "dialect", "fault"),
    [
        ("08S01", 2013, "mysql", Fault.LOST),
        ("08003", 0, "mysql", Fault.LOST),
        ("08001", 2003, "mysql", Fault.LOST),
        ("HY000", 2006, "mysql", Fault.LOST),
        ("70100", 1927, "mysql", Fault.LOST),
        ("HY018", 1969, "mysql", Fault.TIMEOUT),
        ("HY000", 1205, "mysql", Fault.BUSY),
        ("40001", 1213, "mysql", Fault.BUSY),
        ("70100", 1317, "mysql", Fault.CANCELLED),
        ("23000", 1062, "mysql", Fault.CONSTRAINT),
        ("42000", 1064, "mysql", Fault.REFUSED),
        ("42S02", 1146, "mysql", Fault.REFUSED),
        ("HY000", 9999, "mysql", Fault.OTHER),
        ("HYT00", 0, "mssql", Fault.TIMEOUT),
        ("08S01", 10054, "mssql", Fault.LOST),
        ("40001", 1205, "mssql", Fault.BUSY),
        ("HY000", 1222, "mssql", Fault.BUSY),
        ("42000", 4060, "mssql", Fault.LOST),
        ("23000", 2627, "mssql", Fault.CONSTRAINT),
        ("42S22", 207, "mssql", Fault.REFUSED),
        ("28000", 18456, "mssql", Fault.REFUSED),
        ("HY008", 0, "mssql", Fault.CANCELLED),
        ("40P01", 0, "postgresql", Fault.BUSY),
        ("57P01", 0, "postgresql", Fault.LOST),
        ("IM002", 0, "mssql", Fault.REFUSED),
    ],
)
def test_sqlstate_and_native_code_decide(
    state: str, native: int, dialect: str, fault: Fault
) -> None:
    error = odbc_error(state, native)
    assert diagnostics(error) == (state, native)
    assert classify(error, dialect) is fault
    wrapped = sa_exc.DBAPIError.instance("SELECT 1", None, error, pyodbc.Error)
    assert classify(wrapped, dialect) is fault, "SQLAlchemy's wrapper reads the same"


def test_native_codes_are_read_only_in_their_own_family() -> None:
    """1205 is a lock wait timeout on MariaDB and a deadlock on SQL Server; on a server family
    without a table it means nothing and the SQLSTATE decides."""
    assert classify(odbc_error("HY000", 1205), "mysql") is Fault.BUSY
    assert classify(odbc_error("HY000", 1205), "postgresql") is Fault.OTHER
    assert classify(odbc_error("42000", 4060), "mysql") is Fault.REFUSED


def test_every_fault_maps_to_a_connector_error_without_the_database_text() -> None:
    expected = {
        Fault.LOST: ErpUnavailable,
        Fault.TIMEOUT: ErpUnavailable,
        Fault.CANCELLED: ErpUnavailable,
        Fault.BUSY: ErpUnavailable,
        Fault.CONSTRAINT: Conflict,
        Fault.REFUSED: ErpFailure,
        Fault.OTHER: ErpFailure,
    }
    for fault, kind in expected.items():
        error = connector_error(fault)
        assert type(error) is kind
        assert error.retryable is fault.retryable
    assert "Kowalski" not in translate(odbc_error("23000", 1062), "mysql").message


def test_sqlite_result_codes_share_the_table() -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    db.execute("INSERT INTO t VALUES (1)")
    caught: dict[str, BaseException] = {}
    for name, sql in (("duplicate", "INSERT INTO t VALUES (1)"), ("syntax", "SELEC 1")):
        with pytest.raises(sqlite3.Error) as raised:
            db.execute(sql)
        caught[name] = raised.value
    assert classify(caught["duplicate"], "sqlite") is Fault.CONSTRAINT
    assert classify(caught["syntax"], "sqlite") is Fault.REFUSED
    busy = sqlite3.OperationalError("database is locked")
    busy.sqlite_errorcode = sqlite3.SQLITE_BUSY
    assert classify(busy, "sqlite") is Fault.BUSY


def test_drivers_without_diagnostics_fall_back_on_sqlalchemy_classes() -> None:
    plain = Exception("no SQLSTATE here")
    assert classify(sa_exc.IntegrityError("x", None, plain), "other") is Fault.CONSTRAINT
    assert classify(sa_exc.OperationalError("x", None, plain), "other") is Fault.LOST
    assert classify(sa_exc.ProgrammingError("x", None, plain), "other") is Fault.REFUSED
    lost = sa_exc.DBAPIError("x", None, plain, connection_invalidated=True)
    assert classify(lost, "other") is Fault.LOST


# -- real errors from the real server, through the real driver ------------------------------


@pytest.fixture
def scratch() -> Iterator[str]:
    with mariadb.database() as name:
        conn = mariadb.connect(name)
        conn.execute("CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB")
        conn.execute("INSERT INTO t VALUES (1, 0), (2, 0)")
        conn.close()
        yield name


def fault_of(conn: pyodbc.Connection, sql: str) -> tuple[Fault, pyodbc.Error]:
    with pytest.raises(pyodbc.Error) as raised:
        conn.execute(sql).fetchall()
    return classify(raised.value, "mysql"), raised.value


def test_constraint_syntax_and_missing_table_from_mariadb(scratch: str) -> None:
    conn = mariadb.connect(scratch)
    try:
        assert fault_of(conn, "INSERT INTO t VALUES (1, 5)")[0] is Fault.CONSTRAINT
        assert fault_of(conn, "SELEC 1")[0] is Fault.REFUSED
        assert fault_of(conn, "SELECT * FROM no_such_table")[0] is Fault.REFUSED
    finally:
        conn.close()
    engine = create_engine(mariadb.sqlalchemy_url(scratch))
    try:
        with pytest.raises(sa_exc.IntegrityError) as raised, engine.begin() as sa_conn:
            sa_conn.execute(text("INSERT INTO t VALUES (2, 5)"))
        assert isinstance(translate(raised.value, engine.dialect.name), Conflict)
    finally:
        engine.dispose()


def test_lock_wait_timeout_and_deadlock_from_mariadb(scratch: str) -> None:
    holder = mariadb.connect(scratch, autocommit=False)
    waiter = mariadb.connect(scratch, autocommit=False)
    try:
        holder.execute("UPDATE t SET v = 1 WHERE id = 1")
        waiter.execute("SET SESSION innodb_lock_wait_timeout = 1")
        fault, error = fault_of(waiter, "UPDATE t SET v = 2 WHERE id = 1")
        assert (fault, diagnostics(error)) == (Fault.BUSY, ("HY000", 1205))
        waiter.rollback()

        # the classic deadlock: each holds one row and asks for the other's
        waiter.execute("SET SESSION innodb_lock_wait_timeout = 20")
        waiter.execute("UPDATE t SET v = 2 WHERE id = 2")
        thread, errors = in_thread(lambda: holder.execute("UPDATE t SET v = 1 WHERE id = 2"))
        waiting = "SELECT count(*) FROM information_schema.INNODB_TRX WHERE trx_state = 'LOCK WAIT'"
        admin = mariadb.connect()
        try:
            wait_until(lambda: admin.execute(waiting).fetchone()[0] == 1, "the first lock wait")
        finally:
            admin.close()
        try:
            waiter.execute("UPDATE t SET v = 2 WHERE id = 1")
        except pyodbc.Error as exc:
            errors.append(exc)
        thread.join(timeout=30)
        assert not thread.is_alive()
        (victim,) = errors
        assert isinstance(victim, pyodbc.Error)
        assert (classify(victim, "mysql"), diagnostics(victim)) == (Fault.BUSY, ("40001", 1213))
    finally:
        holder.close()
        waiter.close()


def test_killed_connection_from_mariadb(scratch: str) -> None:
    conn = mariadb.connect(scratch)
    try:
        mariadb.kill(mariadb.connection_id(conn))
        fault, error = fault_of(conn, "SELECT 1")
        assert (fault, diagnostics(error)) == (Fault.LOST, ("08S01", 2013))
        assert fault_of(conn, "SELECT 1")[0] is Fault.LOST  # 08003: no longer open
    finally:
        conn.close()
