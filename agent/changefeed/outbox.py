"""The change feed's durable outbox: SQLite, WAL, synchronous commits, like the write journal.

One file holds the stream id (random, made when the file is created, so a reinstalled agent
starting again at seq 1 is a new stream to the relay), the connector's detection state, and the
events not yet acknowledged, numbered from 1. `Outbox.record` stores the new detection state
*and* the events a poll found in one transaction: after a crash the next poll starts from the
state stored with the last events, so no change is lost and none is found twice. An event row
is deleted only when the relay acknowledges it (`Outbox.forget`); until then it is sent again on
every new connection.

One connection (``check_same_thread=False``) guarded by one `threading.Lock`; the agent calls
it from worker threads (`asyncio.to_thread`), never on the event loop, since a synchronous
commit waits for the disk.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.durable import open_durable

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox_meta (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox_event (
    seq  INTEGER PRIMARY KEY,
    data TEXT NOT NULL
);
"""
_STREAM = "stream"
_STATE = "state"
_NEXT_SEQ = "next_seq"


class OutboxUnavailable(Exception):
    """The outbox file cannot be opened or written; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Pending:
    """One event waiting for its ack: its number and its change as JSON text."""

    seq: int
    data: str


class Outbox:
    """The change feed's outbox in one SQLite file; safe to share between threads."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self.stream = ""
        """Set by `open`."""
        self.depth = 0
        """Events waiting for their ack (counted at `open`, then kept up to date)."""

    def open(self) -> None:
        """Open (creating the file, its folder and the stream id); raises `OutboxUnavailable`."""
        with self._lock:
            if self._conn is not None:
                return
            try:
                conn = open_durable(self.path, _SCHEMA)
            except (OSError, sqlite3.Error) as exc:
                raise self._unavailable("cannot open", exc) from exc
            try:
                with _transaction(conn):
                    conn.execute(
                        "INSERT INTO outbox_meta (name, value) VALUES (?, ?), (?, ?)"
                        " ON CONFLICT (name) DO NOTHING",
                        (_STREAM, uuid.uuid4().hex, _NEXT_SEQ, 1),
                    )
                stream = conn.execute(
                    "SELECT value FROM outbox_meta WHERE name = ?", (_STREAM,)
                ).fetchone()[0]
                depth = conn.execute("SELECT COUNT(*) FROM outbox_event").fetchone()[0]
            except sqlite3.Error as exc:
                conn.close()
                raise self._unavailable("cannot prepare", exc) from exc
            self.stream = str(stream)
            self.depth = int(depth)
            self._conn = conn

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()

    def _unavailable(self, what: str, exc: BaseException) -> OutboxUnavailable:
        return OutboxUnavailable(f"{what} the change outbox {self.path}: {exc}")

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise OutboxUnavailable(f"the change outbox {self.path} is not open")
        return self._conn

    # -- the detector's state and new events -----------------------------------------------------

    def state(self) -> bytes | None:
        """The detection state stored with the last events (None: no poll recorded yet)."""
        with self._lock:
            rows = self._read("SELECT value FROM outbox_meta WHERE name = ?", (_STATE,))
        return bytes(rows[0][0]) if rows else None

    def record(self, state: bytes, events: Sequence[str]) -> list[Pending]:
        """Store the new detection state and the events (JSON texts) in one transaction;
        returns the events with the numbers they got."""
        with self._lock:
            conn = self._connection()
            try:
                with _transaction(conn):
                    first = int(
                        conn.execute(
                            "SELECT value FROM outbox_meta WHERE name = ?", (_NEXT_SEQ,)
                        ).fetchone()[0]
                    )
                    pending = [Pending(first + i, data) for i, data in enumerate(events)]
                    conn.executemany(
                        "INSERT INTO outbox_event (seq, data) VALUES (?, ?)",
                        [(p.seq, p.data) for p in pending],
                    )
                    conn.executemany(
                        "INSERT INTO outbox_meta (name, value) VALUES (?, ?)"
                        " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                        [(_STATE, state), (_NEXT_SEQ, first + len(pending))],
                    )
            except sqlite3.Error as exc:
                raise self._unavailable("cannot write", exc) from exc
            self.depth += len(pending)
        return pending

    # -- sending -------------------------------------------------------------------------------

    def pending(self, after: int = 0, limit: int = 100) -> list[Pending]:
        """Events not acknowledged yet with ``seq`` above ``after``, oldest first."""
        with self._lock:
            rows = self._read(
                "SELECT seq, data FROM outbox_event WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit),
            )
        return [Pending(int(seq), str(data)) for seq, data in rows]

    def forget(self, seqs: Iterable[int]) -> int:
        """Delete acknowledged events; returns how many there were (unknown seqs are ignored)."""
        numbers = [(seq,) for seq in seqs]
        if not numbers:
            return 0
        with self._lock:
            conn = self._connection()
            try:
                with _transaction(conn):
                    before = conn.total_changes
                    conn.executemany("DELETE FROM outbox_event WHERE seq = ?", numbers)
                    deleted = conn.total_changes - before
            except sqlite3.Error as exc:
                raise self._unavailable("cannot write", exc) from exc
            self.depth -= deleted
            return deleted

    def _read(self, sql: str, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
        try:
            return self._connection().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._unavailable("cannot read", exc) from exc


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
