"""Statement limits enforced by the database, set before each call from its deadline.

The agent's own timer (`agent.dispatch`) stops *waiting* at the deadline, but a statement the
database keeps running still holds its locks and a worker thread. So each call first tells the
server how long the statement may run:

- SQL Server (and any other ODBC driver that honours it): ``SQL_ATTR_QUERY_TIMEOUT`` through
  pyodbc's ``Connection.timeout``, in whole seconds, applied to every cursor opened afterwards.
  Microsoft's ODBC Driver 18 and FreeTDS send the server an attention (cancel) when it expires and
  report ``HYT00``; the open transaction is *not* rolled back by the server, the session does it.
- MariaDB: ``SET SESSION max_statement_time``. MariaDB Connector/ODBC 3.1 accepts
  ``SQL_ATTR_QUERY_TIMEOUT`` but does not enforce it (a ``SELECT SLEEP(5)`` with a 1 s timeout
  runs 5 s), and a ``SET STATEMENT … FOR`` prefix hides the result set from the driver; the
  session variable works, lock waits included, and the server reports error 1969.
- SQLite has no server: the agent's timer calls ``sqlite3.Connection.interrupt`` instead.
"""

from __future__ import annotations

import math
import time
from typing import Any

from sqlalchemy import Dialect


def remaining_seconds(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (a `time.monotonic` instant), never below a millisecond."""
    if deadline is None:
        return None
    return max(deadline - time.monotonic(), 0.001)


def apply_statement_limit(dbapi_connection: Any, dialect: Dialect, seconds: float | None) -> bool:
    """Limit the statements that follow on this DB-API connection to ``seconds`` (None: no
    limit). Returns whether a limit is now in force, so a caller can skip lifting one that was
    never set. Runs on the raw connection, outside SQLAlchemy's transaction bookkeeping."""
    if getattr(dialect, "is_mariadb", False):
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"SET SESSION max_statement_time = {seconds or 0:.3f}")
        finally:
            cursor.close()
        return seconds is not None
    if dialect.driver == "pyodbc":
        dbapi_connection.timeout = 0 if seconds is None else max(math.ceil(seconds), 1)
        return seconds is not None
    return False
