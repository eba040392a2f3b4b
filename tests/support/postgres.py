"""A throwaway PostgreSQL database per test, for every test folder that needs the real server.

`postgres_url` creates a uniquely named database (``erp_relay_test_<random>``) on the server
given by ``ERP_RELAY_TEST_POSTGRES_URL`` (default: trust auth on 127.0.0.1:5432, database
``test``, user ``postgres`` then ``root``) and drops it afterwards, so parallel runs never share
state. Without a reachable server the test is skipped, except under ``CI=true`` where a missing
database must fail the build instead of silently testing less (`tests.support.required`).
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy.engine import make_url

from tests.support.required import unavailable

T = TypeVar("T")

POSTGRES_URL_ENV = "ERP_RELAY_TEST_POSTGRES_URL"
_DEFAULT_POSTGRES_URLS = (
    "postgresql://postgres@127.0.0.1:5432/test",
    "postgresql://root@127.0.0.1:5432/test",
)


def _candidate_admin_urls() -> tuple[str, ...]:
    configured = os.environ.get(POSTGRES_URL_ENV)
    return (configured,) if configured else _DEFAULT_POSTGRES_URLS


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin_connect() -> tuple[asyncpg.Connection, str]:
    errors: list[str] = []
    for url in _candidate_admin_urls():
        try:
            connection = await asyncpg.connect(_asyncpg_dsn(url), timeout=5)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            errors.append(f"{make_url(url).render_as_string(hide_password=True)}: {exc!r}")
            continue
        return connection, url
    raise ConnectionError("; ".join(errors))


async def _create_database() -> str:
    connection, admin_url = await _admin_connect()
    name = f"erp_relay_test_{secrets.token_hex(6)}"
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return (
        make_url(admin_url)
        .set(drivername="postgresql+asyncpg", database=name)
        .render_as_string(hide_password=False)
    )


async def _drop_database(url: str) -> None:
    name = make_url(url).database
    connection, _ = await _admin_connect()
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


def _run_elsewhere(coroutine: Coroutine[Any, Any, T]) -> T:
    # A thread of its own, so its event loop never touches the one pytest-asyncio runs here.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped after the test."""
    try:
        url = _run_elsewhere(_create_database())
    except (ConnectionError, OSError, asyncpg.PostgresError) as exc:
        unavailable(f"PostgreSQL unavailable ({exc}); set {POSTGRES_URL_ENV} or start the server")
    try:
        yield url
    finally:
        _run_elsewhere(_drop_database(url))
