"""A fresh demo ERP on MariaDB, reached through unixODBC and MariaDB Connector/ODBC, per test."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest

from agent.connectors.demo import DemoConnector, DemoSession
from tests.e2e.conftest import client, creds, relay  # noqa: F401 - fixtures
from tests.support import mariadb

TODAY = date(2026, 11, 22)


@pytest.fixture(scope="session")
def odbc_template() -> Iterator[str]:
    mariadb.connect().close()  # skip (or fail under CI) without the server or the driver
    try:
        yield mariadb.seeded_template(42, TODAY)
    finally:
        mariadb.drop_templates()


@pytest.fixture
def erp_name(odbc_template: str) -> Iterator[str]:
    """This test's own copy of the seeded template: a database name on the server."""
    name = mariadb.clone_database(odbc_template)
    try:
        yield name
    finally:
        mariadb.drop_database(name)


@pytest.fixture
def connector(erp_name: str) -> Iterator[DemoConnector]:
    conn = DemoConnector(mariadb.sqlalchemy_url(erp_name), seed=False, today=lambda: TODAY)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def session(connector: DemoConnector) -> Iterator[DemoSession]:
    sess = connector.open_session()
    try:
        yield sess
    finally:
        sess.close()
