"""The outbox keeps the detection state and the events together, and an event until its ack."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from agent.changefeed.outbox import Outbox, OutboxUnavailable


def test_state_and_events_are_stored_together_and_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state" / "changes.sqlite"
    outbox = Outbox(path)
    outbox.open()
    stream = outbox.stream
    assert stream and outbox.state() is None
    stored = outbox.record(b"s1", ['{"n": 1}', '{"n": 2}'])
    assert [p.seq for p in stored] == [1, 2]
    outbox.close()

    again = Outbox(path)
    again.open()
    assert again.stream == stream  # made once, when the file was created
    assert again.state() == b"s1"
    assert again.depth == 2
    assert [(p.seq, p.data) for p in again.pending()] == [(1, '{"n": 1}'), (2, '{"n": 2}')]
    assert again.forget([1, 99]) == 1  # an unknown seq is ignored
    assert [p.seq for p in again.pending()] == [2]
    assert [p.seq for p in again.pending(after=2)] == []
    again.forget([2])
    # numbers keep growing after everything was acknowledged: never a seq twice in a stream
    assert [p.seq for p in again.record(b"s2", ["{}"])] == [3]
    assert again.depth == 1
    again.close()


def test_a_failed_record_stores_neither_state_nor_events(tmp_path: Path) -> None:
    path = tmp_path / "changes.sqlite"
    outbox = Outbox(path)
    outbox.open()
    outbox.record(b"before", ["{}"])
    saboteur = sqlite3.connect(path)
    saboteur.execute(
        "CREATE TRIGGER no_state BEFORE UPDATE ON outbox_meta WHEN NEW.name = 'state'"
        " BEGIN SELECT RAISE(ABORT, 'disk full'); END"
    )
    saboteur.commit()
    with pytest.raises(OutboxUnavailable):
        outbox.record(b"after", ["{}", "{}"])
    assert outbox.state() == b"before"
    assert [p.seq for p in outbox.pending()] == [1]
    saboteur.execute("DROP TRIGGER no_state")
    saboteur.commit()
    saboteur.close()
    assert [p.seq for p in outbox.record(b"after", ["{}"])] == [2]
    outbox.close()


def test_file_is_wal_with_full_sync(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "changes.sqlite")
    outbox.open()
    conn = sqlite3.connect(tmp_path / "changes.sqlite")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    outbox.close()
