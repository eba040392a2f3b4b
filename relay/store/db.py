"""Database URLs, the async engine, and Alembic migrations run from code.

Two backends: SQLite (one relay, zero setup; the default) and PostgreSQL (several replicas).
Operators write the URLs they know (``sqlite:///relay.sqlite``, ``postgresql://user@host/db``)
and `normalise_url` picks the async driver, so no one has to know about aiosqlite or asyncpg.

The migrations ship inside the package (`relay/store/migrations`) and `alembic_config` builds
the Alembic config in code, so an installed relay needs no alembic.ini and no working directory.
A developer adds a migration with::

    uv run python -c "from alembic import command; from relay.store.db import alembic_config; \
command.revision(alembic_config('sqlite:///dev.sqlite'), 'what changed', autogenerate=True)"
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from relay.store.errors import NotFoundError, SchemaNotCurrent

log = logging.getLogger("relay.store")

DEFAULT_DATABASE_URL = "sqlite:///./erp-relay.sqlite"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 5000

_DRIVERS = {
    "sqlite": ("aiosqlite", {"aiosqlite", "pysqlite"}),
    "postgresql": ("asyncpg", {"asyncpg", "psycopg2", "psycopg"}),
    "postgres": ("asyncpg", {"asyncpg", "psycopg2", "psycopg"}),
}


def normalise_url(url: str | URL) -> URL:
    """The URL with its async driver: ``sqlite://`` → aiosqlite, ``postgresql://`` → asyncpg.

    Raises ValueError for any other database, so a typo fails at startup and not at first use.
    """
    parsed = make_url(url) if isinstance(url, str) else url
    backend, _, driver = parsed.drivername.partition("+")
    if backend not in _DRIVERS:
        raise ValueError(f"unsupported database {backend!r}: use sqlite:// or postgresql://")
    async_driver, known = _DRIVERS[backend]
    if driver and driver not in known:
        raise ValueError(f"unsupported driver {driver!r} for {backend}")
    name = "postgresql" if backend == "postgres" else backend
    return parsed.set(drivername=f"{name}+{async_driver}")


def display_url(url: str | URL) -> str:
    """The URL for messages and logs, with any password masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparseable database URL>"


def is_sqlite_memory(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def sqlite_path(url: str | URL) -> Path | None:
    """The file of a SQLite URL, or None for PostgreSQL and in-memory SQLite."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() != "sqlite" or is_sqlite_memory(parsed):
        return None
    assert parsed.database is not None
    if parsed.database.startswith("file:"):
        return None
    return Path(parsed.database)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers (the dashboard) run while the call log writes; busy_timeout makes a
    # writer wait for the lock instead of failing at once with "database is locked".
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def create_engine(url: str | URL, **kwargs: Any) -> AsyncEngine:
    """An async engine for `url` (normalised), with SQLite pragmas set on every connection.

    Statement parameters are hidden from error messages (`hide_parameters`), so a failed insert
    can be logged without leaking hashes or call details.
    """
    parsed = normalise_url(url)
    options: dict[str, Any] = {"hide_parameters": True, "pool_pre_ping": True}
    if parsed.get_backend_name() == "sqlite":
        options.pop("pool_pre_ping")
        if is_sqlite_memory(parsed):
            # Each new connection to :memory: would be a new empty database.
            options["poolclass"] = StaticPool
    options.update(kwargs)
    engine = create_async_engine(parsed, **options)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def alembic_config(url: str | URL | None = None) -> Config:
    """An Alembic config pointing at the packaged migrations; no alembic.ini involved."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        rendered = normalise_url(url).render_as_string(hide_password=False)
        # ConfigParser treats % as interpolation.
        config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return config


def head_revision() -> str | None:
    """The newest migration shipped with this code."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _upgrade_on(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _downgrade_on(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.downgrade(config, revision)


def _current_on(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def upgrade_engine(engine: AsyncEngine, revision: str = "head") -> None:
    """Migrate the database behind `engine` to `revision`, in one transaction where possible."""
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade_on, revision)


async def upgrade(url: str | URL, revision: str = "head") -> None:
    """Migrate the database at `url` to `revision` (default: the newest)."""
    engine = create_engine(url)
    try:
        await upgrade_engine(engine, revision)
    finally:
        await engine.dispose()


async def downgrade(url: str | URL, revision: str) -> None:
    """Migrate the database at `url` back to `revision` ("base" empties it). For development."""
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_downgrade_on, revision)
    finally:
        await engine.dispose()


def upgrade_sync(url: str | URL, revision: str = "head") -> None:
    """`upgrade` for synchronous callers (the CLI); must not be called from a running loop."""
    asyncio.run(upgrade(url, revision))


async def current_revision(connection: AsyncConnection) -> str | None:
    """The revision the database is at, or None for an empty database."""
    return await connection.run_sync(_current_on)


async def check_schema(engine: AsyncEngine) -> None:
    """Raise `SchemaNotCurrent` unless the database is at the newest migration this code knows,
    or at a newer one.

    The relay checks this at startup instead of migrating by itself: with several replicas,
    migrations are a deliberate deploy step, not a race between processes. A revision this
    code does not know was made by a newer release: migrations only ever add (columns are
    dropped a release after nothing reads them, docs/deployment.md), so an old replica that
    restarts in the middle of a rolling deploy keeps working on the newer schema.
    """
    async with engine.connect() as connection:
        current = await current_revision(connection)
    head = head_revision()
    if current == head:
        return
    if current is not None and not _known_revision(current):
        log.warning(
            "database schema is at %s, newer than this relay's %s: running on it (migrations "
            "are additive); upgrade this replica",
            current,
            head,
        )
        return
    raise SchemaNotCurrent(current, head)


def _known_revision(revision: str) -> bool:
    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except CommandError:
        return False


async def stamp_once(
    connection: AsyncConnection,
    key: sa.Column[Any],
    value: object,
    stamp: sa.Column[Any],
    now: Any,
    what: str,
) -> int:
    """Set `stamp` (revoked_at, disabled_at) on the row whose `key` is `value`, unless it is
    set already, and return the row's id: revoking or disabling twice keeps the first instant
    and is not an error. Raises `NotFoundError` naming `what` when there is no such row."""
    table = key.table
    row_id = await connection.scalar(sa.select(table.c.id).where(key == value))
    if row_id is None:
        raise NotFoundError(f"no {what} {value!r}")
    await connection.execute(
        table.update().where(table.c.id == row_id, stamp.is_(None)).values({stamp.name: now})
    )
    return int(row_id)
