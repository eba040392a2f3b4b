"""The agent's durable journal of write calls: SQLite, WAL, synchronous commits.

Each write call with an idempotency key gets one row, keyed by that key, that moves
``received`` → ``executing`` → ``done`` (with the result the ERP returned) or ``failed`` (with
the error code and message; the ERP did not change). Every state change is committed with
``synchronous = FULL`` before the agent moves on, so after a power cut the row tells what the
agent knew: a ``done`` row is answered from the journal without touching the ERP again; a row
left ``received``/``executing`` by a process that died means "ask the ERP" (the connector's
``find_write``), because the ERP may or may not have committed.

One connection (``check_same_thread=False``) guarded by one `threading.Lock` serves the event
loop and the worker threads alike. The file is opened lazily and reopened after a failure, so a
journal that cannot be written makes *writes* fail with `JournalUnavailable` (the dispatcher
answers ``journal_unavailable``) while reads keep working, and it recovers by itself once the
disk is fixed.

Rows older than ``retention_days`` are purged (at open and then at most hourly); a retry after
that long is a new write. ``args_fingerprint`` is the SHA-256 of the canonical JSON of the
validated arguments, so a key reused with different arguments is recognised.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from agent.durable import open_durable

log = logging.getLogger("agent.journal")

State = Literal["received", "executing", "done", "failed"]

DEFAULT_RETENTION_DAYS = 30.0
_PURGE_EVERY_S = 3600.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS write_journal (
    idempotency_key  TEXT PRIMARY KEY,
    operation        TEXT NOT NULL,
    args_fingerprint TEXT NOT NULL,
    state            TEXT NOT NULL
                     CHECK (state IN ('received', 'executing', 'done', 'failed')),
    result           TEXT,
    error_code       TEXT,
    error_message    TEXT,
    error_details    TEXT,
    owner            TEXT NOT NULL,
    request_id       TEXT,
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_write_journal_updated_at ON write_journal (updated_at);
"""


class JournalUnavailable(Exception):
    """The journal cannot be opened or written; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One journalled write."""

    idempotency_key: str
    operation: str
    args_fingerprint: str
    state: State
    owner: str
    """The journal instance (one agent process) that last moved this row."""
    created_at: float
    updated_at: float
    result: str | None = None
    """The result as the JSON text sent to the relay, for ``done``."""
    error_code: str | None = None
    error_message: str | None = None
    error_details: Any = None


def fingerprint(args: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of ``args`` (a pydantic model or plain JSON data)."""
    dump = getattr(args, "model_dump", None)
    data = dump(mode="json") if callable(dump) else args
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()


class Journal:
    """The write journal in one SQLite file; safe to share between threads."""

    def __init__(self, path: Path, *, retention_days: float = DEFAULT_RETENTION_DAYS) -> None:
        self.path = Path(path)
        self.retention_s = retention_days * 86400
        self.owner = uuid.uuid4().hex
        """Tells rows moved by this process from rows a dead process left behind."""
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._last_purge = 0.0

    # -- connection ---------------------------------------------------------------------------

    def open(self) -> None:
        """Open (creating the file and its folder) now; raises `JournalUnavailable`."""
        with self._lock:
            self._connection()

    def _connection(self) -> sqlite3.Connection:
        """The open connection; the caller holds the lock."""
        if self._conn is not None:
            return self._conn
        try:
            conn = open_durable(self.path, _SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise self._unavailable("cannot open", exc) from exc
        self._conn = conn
        self._purge_locked(time.time())
        return conn

    def _unavailable(self, what: str, exc: BaseException) -> JournalUnavailable:
        return JournalUnavailable(f"{what} the write journal {self.path}: {exc}")

    def _write(self, sql: str, params: tuple[Any, ...]) -> int:
        """Run one statement in its own committed transaction; returns the rows changed."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    changed = conn.execute(sql, params).rowcount
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                self._drop_locked()
                raise self._unavailable("cannot write", exc) from exc
            now = time.time()
            if now - self._last_purge >= _PURGE_EVERY_S:
                self._purge_locked(now)
            return changed

    def _drop_locked(self) -> None:
        """Forget a connection that failed, so the next call reopens the file."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def close(self) -> None:
        with self._lock:
            self._drop_locked()

    def pragmas(self) -> dict[str, str]:
        """``journal_mode`` and ``synchronous`` as the open connection reports them."""
        with self._lock:
            conn = self._connection()
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            sync = conn.execute("PRAGMA synchronous").fetchone()[0]
        names = {0: "off", 1: "normal", 2: "full", 3: "extra"}
        return {"journal_mode": str(mode).lower(), "synchronous": names.get(int(sync), str(sync))}

    # -- reading ------------------------------------------------------------------------------

    def get(self, key: str) -> Entry | None:
        with self._lock:
            conn = self._connection()
            try:
                row = conn.execute(
                    "SELECT idempotency_key, operation, args_fingerprint, state, owner,"
                    " created_at, updated_at, result, error_code, error_message, error_details"
                    " FROM write_journal WHERE idempotency_key = ?",
                    (key,),
                ).fetchone()
            except sqlite3.Error as exc:
                self._drop_locked()
                raise self._unavailable("cannot read", exc) from exc
        if row is None:
            return None
        details = orjson.loads(row[10]) if row[10] is not None else None
        return Entry(
            idempotency_key=row[0],
            operation=row[1],
            args_fingerprint=row[2],
            state=row[3],
            owner=row[4],
            created_at=row[5],
            updated_at=row[6],
            result=row[7],
            error_code=row[8],
            error_message=row[9],
            error_details=details,
        )

    # -- state changes ------------------------------------------------------------------------

    def receive(
        self, key: str, operation: str, args_fingerprint: str, request_id: str | None = None
    ) -> bool:
        """Record a new write as ``received``; False if the key is already journalled."""
        now = time.time()
        changed = self._write(
            "INSERT INTO write_journal (idempotency_key, operation, args_fingerprint, state,"
            " owner, request_id, created_at, updated_at)"
            " VALUES (?, ?, ?, 'received', ?, ?, ?, ?)"
            " ON CONFLICT (idempotency_key) DO NOTHING",
            (key, operation, args_fingerprint, self.owner, request_id, now, now),
        )
        return changed == 1

    def executing(self, key: str) -> None:
        """The ERP is about to be called (this process takes the row over)."""
        self._move(key, "executing", None, None, None, None)

    def done(self, key: str, result: str) -> None:
        """The ERP committed; ``result`` is the JSON text of the typed result."""
        self._move(key, "done", result, None, None, None)

    def failed(self, key: str, code: str, message: str, details: Any = None) -> None:
        """The write failed and the ERP did not change."""
        encoded = orjson.dumps(details).decode() if details is not None else None
        self._move(key, "failed", None, code, message, encoded)

    def forget(self, key: str) -> None:
        """Drop a row, so the key can be tried again as new (the ERP is known untouched)."""
        self._write("DELETE FROM write_journal WHERE idempotency_key = ?", (key,))

    def _move(
        self,
        key: str,
        state: State,
        result: str | None,
        code: str | None,
        message: str | None,
        details: str | None,
    ) -> None:
        changed = self._write(
            "UPDATE write_journal SET state = ?, result = ?, error_code = ?, error_message = ?,"
            " error_details = ?, owner = ?, updated_at = ? WHERE idempotency_key = ?",
            (state, result, code, message, details, self.owner, time.time(), key),
        )
        if changed != 1:
            raise JournalUnavailable(f"the write journal {self.path} has no row for this key")

    # -- retention ----------------------------------------------------------------------------

    def purge(self, now: float | None = None) -> int:
        """Delete rows last changed more than ``retention_days`` ago; returns how many."""
        with self._lock:
            self._connection()
            return self._purge_locked(time.time() if now is None else now)

    def _purge_locked(self, now: float) -> int:
        self._last_purge = now
        conn = self._conn
        if conn is None:
            return 0
        try:
            conn.execute("BEGIN IMMEDIATE")
            deleted = conn.execute(
                "DELETE FROM write_journal WHERE updated_at < ?",
                (now - self.retention_s,),
            ).rowcount
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            log.warning("cannot purge the write journal %s: %s", self.path, exc)
            return 0
        if deleted:
            log.info("purged old write journal rows", extra={"rows": deleted})
        return int(deleted)
