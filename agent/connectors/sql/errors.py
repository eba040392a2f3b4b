"""Database errors read once, by SQLSTATE, into retryable and permanent connector errors.

Every ODBC driver reports an error as a five-character SQLSTATE plus the server's native
number; pyodbc passes the SQLSTATE as ``args[0]`` and ends the message with ``(<native>)
(SQLExecDirectW)``. The SQLSTATE is the portable part and decides almost everything. Some
drivers put real outcomes under a generic SQLSTATE (MariaDB reports a lock wait timeout as
``HY000`` 1205 and a statement cut off by ``max_statement_time`` as ``HY018`` 1969), so each
server family has a short table of native numbers that win over the SQLSTATE. Native numbers are
only read in their own family's table: 1205 is a lock wait timeout on MariaDB and a deadlock on
SQL Server.

Retryable faults (`Fault.retryable`) become `ErpUnavailable`: the call may succeed later.
Everything else is permanent: a constraint is a `Conflict`, the rest an `ErpFailure`. The
database's own text never leaves this module: it may quote the customer's data.

SQLite (the demo's default store) reports ``sqlite3`` result codes instead; they are read here
too, so there is one table for the whole agent.
"""

from __future__ import annotations

import enum
import re
import sqlite3
from collections.abc import Mapping

from sqlalchemy import exc as sa_exc

from agent.connectors.base import Conflict, ConnectorError, ErpFailure, ErpUnavailable


class Fault(enum.Enum):
    """What went wrong, in the terms that decide retry and reconnect."""

    LOST = "lost"
    """The connection is dead or could not be made: reconnect, then a retry may work."""
    TIMEOUT = "timeout"
    """The database (or its driver) stopped the statement at the limit set from the deadline."""
    CANCELLED = "cancelled"
    """The statement was interrupted: the call was cancelled, or killed by an administrator."""
    BUSY = "busy"
    """Deadlock victim, serialisation failure or lock wait timeout: the same call may pass."""
    CONSTRAINT = "constraint"
    """A key, unique or check constraint refused the change."""
    REFUSED = "refused"
    """Syntax, missing table or column, permission, bad data or driver setup: a retry won't help."""
    OTHER = "other"

    @property
    def retryable(self) -> bool:
        return self in _RETRYABLE


_RETRYABLE = frozenset({Fault.LOST, Fault.TIMEOUT, Fault.CANCELLED, Fault.BUSY})

SQLSTATES: Mapping[str, Fault] = {
    "HYT00": Fault.TIMEOUT,  # SQL_ATTR_QUERY_TIMEOUT expired (SQL Server's drivers)
    "HYT01": Fault.TIMEOUT,  # connection timeout expired
    "HY008": Fault.CANCELLED,  # operation cancelled (SQLCancel)
    "70100": Fault.CANCELLED,  # MySQL/MariaDB: query execution was interrupted (KILL QUERY)
    "40001": Fault.BUSY,  # serialisation failure: deadlock victim on SQL Server and MariaDB
    "40P01": Fault.BUSY,  # PostgreSQL deadlock detected
    "57P01": Fault.LOST,  # PostgreSQL: administrator shutdown
    "57P02": Fault.LOST,  # PostgreSQL: crash shutdown
    "57P03": Fault.LOST,  # PostgreSQL: cannot connect now (starting up)
}
"""Exact SQLSTATEs; checked before the two-character classes below."""

SQLSTATE_CLASSES: Mapping[str, Fault] = {
    "08": Fault.LOST,  # 08S01 link failure, 08003 not open, 08001 cannot connect, 08004...
    "40": Fault.BUSY,  # transaction rollback
    "23": Fault.CONSTRAINT,  # integrity constraint violation
    "42": Fault.REFUSED,  # syntax error or access rule violation (42000, 42S02 no table...)
    "28": Fault.REFUSED,  # invalid authorisation (login failed)
    "3D": Fault.REFUSED,  # invalid catalogue (database) name
    "22": Fault.REFUSED,  # data exception (string too long, out of range)
    "IM": Fault.REFUSED,  # driver manager: data source or driver not found
}

_MARIADB: Mapping[int, Fault] = {
    1040: Fault.LOST,  # too many connections
    1053: Fault.LOST,  # server shutdown in progress
    1205: Fault.BUSY,  # lock wait timeout exceeded (HY000)
    1213: Fault.BUSY,  # deadlock found (40001)
    1317: Fault.CANCELLED,  # query execution was interrupted (70100)
    1927: Fault.LOST,  # connection was killed (70100)
    1969: Fault.TIMEOUT,  # max_statement_time exceeded (HY018 from Connector/ODBC)
    2002: Fault.LOST,  # cannot connect through the socket
    2003: Fault.LOST,  # cannot connect over TCP
    2006: Fault.LOST,  # server has gone away (HY000)
    2013: Fault.LOST,  # lost connection during query (08S01)
    2055: Fault.LOST,  # lost connection at a system error
    4031: Fault.LOST,  # disconnected by the server for inactivity
}
_SQL_SERVER: Mapping[int, Fault] = {
    -2: Fault.TIMEOUT,  # timeout expired, as some drivers number it
    233: Fault.LOST,  # no process on the other end of the pipe
    1205: Fault.BUSY,  # chosen as deadlock victim (40001)
    1222: Fault.BUSY,  # lock request time-out period exceeded
    4060: Fault.LOST,  # cannot open the database: it is starting or being restored
    10053: Fault.LOST,  # TCP: connection aborted
    10054: Fault.LOST,  # TCP: connection reset by peer
    10060: Fault.LOST,  # TCP: connection timed out
    10061: Fault.LOST,  # TCP: connection refused (the server is not up yet)
    40501: Fault.BUSY,  # Azure SQL: service busy
    40613: Fault.LOST,  # Azure SQL: database unavailable
}
NATIVE_CODES: Mapping[str, Mapping[int, Fault]] = {
    "mysql": _MARIADB,
    "mariadb": _MARIADB,
    "mssql": _SQL_SERVER,
}
"""Native error numbers per server family (SQLAlchemy dialect name), winning over SQLSTATE.
The MariaDB ones are seen through MariaDB Connector/ODBC by tests/odbc; the SQL Server ones
come from Microsoft's documentation and cannot be exercised here."""

SQLITE_CODES: Mapping[int, Fault] = {
    sqlite3.SQLITE_BUSY: Fault.BUSY,
    sqlite3.SQLITE_LOCKED: Fault.BUSY,
    sqlite3.SQLITE_INTERRUPT: Fault.CANCELLED,
    sqlite3.SQLITE_IOERR: Fault.LOST,
    sqlite3.SQLITE_CANTOPEN: Fault.LOST,
    sqlite3.SQLITE_READONLY: Fault.LOST,
    sqlite3.SQLITE_FULL: Fault.LOST,
    sqlite3.SQLITE_CONSTRAINT: Fault.CONSTRAINT,
    sqlite3.SQLITE_ERROR: Fault.REFUSED,
}
"""Primary SQLite result codes (the low byte of an extended code)."""

_SQLSTATE = re.compile(r"[0-9A-Z]{5}")
_NATIVE = re.compile(r"\((-?\d+)\) \(SQL\w+\)")
"""pyodbc's tail of each diagnostic record: ``… (1062) (SQLExecDirectW)``."""


def diagnostics(error: BaseException) -> tuple[str | None, int | None]:
    """The SQLSTATE and native error number of a pyodbc-style DB-API error, when it has them."""
    args = error.args
    if len(args) < 2 or not isinstance(args[0], str) or not _SQLSTATE.fullmatch(args[0]):
        return None, None
    found = _NATIVE.search(str(args[1]))
    return args[0], int(found.group(1)) if found else None


def classify(error: BaseException, dialect: str) -> Fault:
    """The fault behind ``error`` (a SQLAlchemy error or the driver's own), on ``dialect``."""
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return Fault.LOST
    original: BaseException = error
    if isinstance(error, sa_exc.DBAPIError) and error.orig is not None:
        original = error.orig
    if isinstance(original, sqlite3.Error):
        code = getattr(original, "sqlite_errorcode", None)
        if code is not None:
            return SQLITE_CODES.get(code & 0xFF, Fault.OTHER)
    state, native = diagnostics(original)
    if native is not None and native in NATIVE_CODES.get(dialect, {}):
        return NATIVE_CODES[dialect][native]
    if state is not None:
        return SQLSTATES.get(state) or SQLSTATE_CLASSES.get(state[:2], Fault.OTHER)
    return _by_sqlalchemy_class(error)


def _by_sqlalchemy_class(error: BaseException) -> Fault:
    """For drivers that give neither SQLSTATE nor result code: SQLAlchemy's own reading."""
    if isinstance(error, sa_exc.IntegrityError):
        return Fault.CONSTRAINT
    if isinstance(
        error, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.DisconnectionError
    ):
        return Fault.LOST
    if isinstance(error, sa_exc.ProgrammingError):
        return Fault.REFUSED
    return Fault.OTHER


_MESSAGES: Mapping[Fault, tuple[type[ConnectorError], str]] = {
    Fault.LOST: (ErpUnavailable, "the connection to the ERP database was lost; try again"),
    Fault.TIMEOUT: (
        ErpUnavailable,
        "the ERP database stopped the statement at the call's deadline (too slow or locked)",
    ),
    Fault.CANCELLED: (
        ErpUnavailable,
        "the ERP statement was interrupted (call cancelled or too slow)",
    ),
    Fault.BUSY: (ErpUnavailable, "the ERP database is busy (a lock or a deadlock); try again"),
    Fault.CONSTRAINT: (Conflict, "the ERP database refused the change (a constraint failed)"),
    Fault.REFUSED: (ErpFailure, "the ERP database refused the statement or the connection"),
    Fault.OTHER: (ErpFailure, "the ERP database reported an error"),
}


def connector_error(fault: Fault) -> ConnectorError:
    """The connector error for ``fault``, with a message free of the database's own text."""
    kind, message = _MESSAGES[fault]
    return kind(message)


def translate(error: BaseException, dialect: str) -> ConnectorError:
    """``error`` as the connector error every SQL connector raises for it."""
    return connector_error(classify(error, dialect))
