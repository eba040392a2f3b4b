"""The change feed's agent side: the demo detector runs on every backend the contract suite
proves the demo on, so its fixtures (a fresh seeded copy per test, SQLite and MariaDB) are the
contract suite's own."""

from __future__ import annotations

from tests.contract.conftest import (  # noqa: F401 - fixtures, registered by being imported
    backend,
    connector,
    db,
    erp_db,
    session,
    template,
)
