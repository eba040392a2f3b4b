"""Databases for integration tests: a SQLite file and a throwaway PostgreSQL database.

`database_url` runs each test on both backends (`tests.support.postgres` for PostgreSQL:
skipped without a server, except under ``CI=true`` where that fails the build).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from relay.store import Store, upgrade
from tests.support.postgres import postgres_url  # noqa: F401 - fixture


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'relay.sqlite'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """An empty database on each backend, as an async SQLAlchemy URL."""
    name = "postgres_url" if request.param == "postgres" else "sqlite_url"
    url: str = request.getfixturevalue(name)
    return url


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """A `Store` on a database migrated to head."""
    await upgrade(database_url)
    opened = await Store.open(database_url)
    try:
        yield opened
    finally:
        await opened.close()
