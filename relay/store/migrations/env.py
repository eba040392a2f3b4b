"""Alembic environment for the relay's database, used without an alembic.ini.

`relay.store.db.upgrade` builds the Alembic config in code and hands over an open synchronous
connection (obtained from an async engine with `AsyncConnection.run_sync`) through
`config.attributes["connection"]`, the pattern the Alembic cookbook documents for sharing a
connection with programmatic commands. Without one (for example `alembic_config(url)` passed to
`alembic.command.revision(..., autogenerate=True)` by a developer), this script makes its own
async engine from the ``sqlalchemy.url`` option and runs the same way.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from relay.store.models import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things; batch mode recreates tables there and is a no-op on
        # PostgreSQL, so future migrations work on both.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine(url: str) -> None:
    from relay.store.db import create_engine

    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def _main() -> None:
    if context.is_offline_mode():
        context.configure(
            url=context.config.get_main_option("sqlalchemy.url"),
            target_metadata=metadata,
            literal_binds=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection and no sqlalchemy.url in the Alembic config")
    asyncio.run(_run_with_own_engine(url))


_main()
