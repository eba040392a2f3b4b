"""The agent's own SQLite files (the write journal, the change outbox): durable and private.

Both hold what the agent must not lose in a crash or a power cut, and what other users of the
office machine must not read (ERP results, customer ids, amounts), so both open the same way:
WAL with ``synchronous = FULL`` (a commit is on disk before it returns), autocommit with
explicit transactions, and owner-only file modes.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

BUSY_TIMEOUT_S = 5.0
"""How long a writer waits for another connection's write lock."""


def open_durable(path: Path, schema: str) -> sqlite3.Connection:
    """Open ``path`` (creating its folder and the file) and apply ``schema``.

    Raises `OSError` or `sqlite3.Error`; a connection that fails half-way is closed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        path,
        timeout=BUSY_TIMEOUT_S,
        check_same_thread=False,
        isolation_level=None,  # autocommit; the callers' transactions are explicit
    )
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        if mode is None or str(mode[0]).lower() != "wal":
            raise sqlite3.OperationalError(f"journal_mode is {mode!r}, not wal")
        conn.execute("PRAGMA synchronous = FULL")
        conn.executescript(schema)
    except sqlite3.Error:
        conn.close()
        raise
    make_private(path)
    return conn


def make_private(path: Path) -> None:
    """Owner-only modes on the database and its WAL files, like the token file."""
    if os.name != "posix":
        return
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(OSError):
            os.chmod(f"{path}{suffix}", 0o600)
