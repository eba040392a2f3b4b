"""Throwaway MariaDB databases reached through a real ODBC stack: unixODBC, MariaDB Connector/ODBC
and pyodbc, the same layers the agent uses towards SQL Server.

The server is ``ERP_RELAY_TEST_MARIADB`` (``host:port``, default ``127.0.0.1:3306``, user root
without a password) and the driver the one registered as ``MariaDB Unicode`` in odbcinst.ini.
Without either the test is skipped, except under ``CI=true`` (`tests.support.required`).

MariaDB cannot create a database from a template, and seeding the demo ERP through ODBC takes a
few seconds, so `seeded_template` seeds once per test session and `clone_database` copies it on
the server (``CREATE TABLE … LIKE`` plus ``INSERT … SELECT``), a fraction of a second per test.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

import pyodbc

from agent.connectors.demo import create_demo_database
from tests.support.required import unavailable

MARIADB_ENV = "ERP_RELAY_TEST_MARIADB"
DRIVER = "MariaDB Unicode"
_PREFIX = "erp_relay_test_"


def _address() -> tuple[str, int]:
    host, _, port = os.environ.get(MARIADB_ENV, "127.0.0.1:3306").rpartition(":")
    return host, int(port)


def odbc_string(database: str = "") -> str:
    host, port = _address()
    return (
        f"DRIVER={{{DRIVER}}};SERVER={host};PORT={port};UID=root;PWD=;"
        f"DATABASE={database};CHARSET=utf8mb4"
    )


def sqlalchemy_url(database: str) -> str:
    """The demo connector's ``url`` for ``database``: SQLAlchemy's ``mysql+pyodbc`` dialect."""
    host, port = _address()
    driver = DRIVER.replace(" ", "+")
    return f"mysql+pyodbc://root:@{host}:{port}/{database}?driver={driver}&charset=utf8mb4"


def connect(database: str = "", *, autocommit: bool = True) -> pyodbc.Connection:
    """A plain pyodbc connection (qmark parameters, like sqlite3), for checks and sabotage."""
    try:
        return pyodbc.connect(odbc_string(database), autocommit=autocommit, timeout=5)
    except pyodbc.Error as exc:
        unavailable(f"MariaDB through ODBC driver {DRIVER!r} is not available: {exc}")


def connection_id(conn: pyodbc.Connection) -> int:
    return int(conn.execute("SELECT CONNECTION_ID()").fetchone()[0])


def kill(connection: int) -> None:
    """End a server connection the way a restart does: the client learns it at its next use."""
    admin = connect()
    try:
        admin.execute(f"KILL CONNECTION {int(connection)}")
    finally:
        admin.close()


def running_statements(database: str) -> list[tuple[int, str]]:
    """(connection id, statement) of every statement the server is running in ``database``."""
    admin = connect()
    try:
        rows = admin.execute(
            "SELECT ID, INFO FROM information_schema.PROCESSLIST"
            " WHERE DB = ? AND COMMAND IN ('Query', 'Execute') AND ID <> CONNECTION_ID()",
            database,
        ).fetchall()
    finally:
        admin.close()
    return [(int(row[0]), str(row[1])) for row in rows]


def create_database() -> str:
    """A new empty database with Polish collation, as close to ``Polish_CI_AS`` as MariaDB gets."""
    name = _PREFIX + secrets.token_hex(6)
    admin = connect()
    try:
        admin.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_polish_ci")
    finally:
        admin.close()
    return name


def drop_database(name: str) -> None:
    admin = connect()
    try:
        admin.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        admin.close()


@contextmanager
def database() -> Iterator[str]:
    name = create_database()
    try:
        yield name
    finally:
        drop_database(name)


def clone_database(template: str) -> str:
    """A new database holding a copy of every table (rows, keys, indexes) of ``template``."""
    name = create_database()
    admin = connect()
    try:
        tables = [
            row[0]
            for row in admin.execute(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?",
                template,
            ).fetchall()
        ]
        for table in tables:
            admin.execute(f"CREATE TABLE `{name}`.`{table}` LIKE `{template}`.`{table}`")
            admin.execute(f"INSERT INTO `{name}`.`{table}` SELECT * FROM `{template}`.`{table}`")
    finally:
        admin.close()
    return name


_TEMPLATES: dict[tuple[int, date], str] = {}


def seeded_template(seed: int, today: date) -> str:
    """A demo ERP seeded through the connector's own ODBC path, once per test session (see
    `drop_templates`)."""
    key = (seed, today)
    if key not in _TEMPLATES:
        name = create_database()
        _TEMPLATES[key] = name
        create_demo_database(sqlalchemy_url(name), seed, today=today)
    return _TEMPLATES[key]


def drop_templates() -> None:
    while _TEMPLATES:
        drop_database(_TEMPLATES.popitem()[1])


def connection_ids(database: str) -> set[int]:
    """Every server connection whose current database is ``database``, idle ones included."""
    admin = connect()
    try:
        rows = admin.execute(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = ?", database
        ).fetchall()
    finally:
        admin.close()
    return {int(row[0]) for row in rows}
