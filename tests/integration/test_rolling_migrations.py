"""Every migration is safe to run while replicas of the previous release still serve.

`erp-relay db upgrade` runs before the new replicas start, so for a while the previous
release reads and writes the migrated schema (docs/deployment.md, "Migrations"). That holds
only if each migration adds and never takes away: no table or column the previous release
uses disappears or narrows, and nothing new is required of the rows it inserts.

For each step from one revision to the next, on SQLite and PostgreSQL: the schema before the
step is reflected (what the previous release knows), the step runs, and then the previous
release's view is checked against the migrated database: its tables and columns are all
there, no column turned NOT NULL, every new column is nullable or has a server default, and
a row written the way the previous release writes it (every column it knows, in every table,
foreign keys included) is accepted and reads back.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from relay.changefeed.store import ChangeStore, IncomingChange
from relay.store import create_engine, upgrade
from relay.store.db import alembic_config

_AT = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)


def _steps() -> Iterator[tuple[str, str]]:
    """(previous revision, next revision), oldest first."""
    script = ScriptDirectory.from_config(alembic_config())
    revisions = list(script.walk_revisions())  # head first
    for revision in reversed(revisions):
        if revision.down_revision is not None:
            assert isinstance(revision.down_revision, str), "no merge revisions expected"
            yield revision.down_revision, revision.revision


STEPS = list(_steps())


def _reflect(connection: Connection) -> sa.MetaData:
    metadata = sa.MetaData()
    metadata.reflect(connection)
    metadata.remove(metadata.tables["alembic_version"])
    return metadata


def _value(column: sa.Column[Any]) -> Any:
    """A value of the column's type, the same in every row: one row per table, so no unique
    constraint is hit, and every integer is 1, so every foreign key points at its row."""
    kind = column.type
    if isinstance(kind, sa.Boolean):
        return False
    if isinstance(kind, sa.Integer):
        return 1
    if isinstance(kind, sa.Float | sa.Numeric):
        return 1.0
    if isinstance(kind, sa.DateTime):
        return _AT
    if isinstance(kind, sa.JSON):
        return ["x"]
    if isinstance(kind, sa.LargeBinary):
        return b"x"
    if isinstance(kind, sa.String):
        return "x"
    raise AssertionError(f"no test value for {column.table.name}.{column.name} ({kind!r})")


@pytest.mark.parametrize(("previous", "following"), STEPS, ids=[f"{p}-{n}" for p, n in STEPS])
async def test_the_previous_release_keeps_working_on_the_migrated_schema(
    database_url: str, previous: str, following: str
) -> None:
    await upgrade(database_url, previous)
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            known = await connection.run_sync(_reflect)
        await upgrade(database_url, following)
        async with engine.connect() as connection:
            migrated = await connection.run_sync(_reflect)

        for table in known.sorted_tables:
            assert table.name in migrated.tables, f"{following} drops table {table.name}"
            now = migrated.tables[table.name]
            for column in table.columns:
                assert column.name in now.columns, f"{following} drops {table.name}.{column.name}"
                if column.nullable:
                    assert now.columns[column.name].nullable, (
                        f"{following} makes {table.name}.{column.name} NOT NULL"
                    )
            for column in now.columns:
                if column.name not in table.columns:
                    assert column.nullable or column.server_default is not None, (
                        f"{following} adds {table.name}.{column.name} NOT NULL without a "
                        "server default: the previous release's inserts would fail"
                    )

        async with engine.begin() as connection:
            for table in known.sorted_tables:  # referenced tables first
                row = {column.name: _value(column) for column in table.columns}
                await connection.execute(sa.insert(migrated.tables[table.name]).values(row))
                stored = (await connection.execute(sa.select(table))).one()._asdict()
                assert set(stored) == set(row)
    finally:
        await engine.dispose()


async def test_the_change_feed_starts_empty_on_a_database_migrated_from_0005(
    database_url: str,
) -> None:
    """0006 adds tables only: agents that existed before get their cursor counter on their
    first event, and their feed starts at cursor 1."""
    await upgrade(database_url, "0005")
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                sa.text("INSERT INTO agents (name, created_at) VALUES ('acme', :at)"), {"at": _AT}
            )
        await upgrade(database_url, "0006")
        store = ChangeStore(engine)
        assert (await store.bounds("acme")).last_cursor == 0
        change = IncomingChange("s", 1, "stock.changed", _AT, {"type": "stock.changed"})
        (stored,) = await store.append("acme", [change])
        assert stored.cursor == 1
    finally:
        await engine.dispose()
