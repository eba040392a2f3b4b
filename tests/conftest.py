"""Fixtures shared by every test folder: a seeded demo ERP, copied fresh for each test."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.connectors.demo import create_demo_database


@pytest.fixture(autouse=True)
def _agent_state_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Agents started by tests keep their journal in the test's folder, never in $HOME."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


@pytest.fixture(scope="session")
def seeded_erp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("erp") / "seed.sqlite"
    create_demo_database(str(path))
    return path


@pytest.fixture
def erp_path(seeded_erp: Path, tmp_path: Path) -> Path:
    path = tmp_path / "erp.sqlite"
    shutil.copy(seeded_erp, path)
    return path


@pytest.fixture
def erp(erp_path: Path) -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(erp_path)
    yield db
    db.close()


def zk_count(erp: sqlite3.Connection, external_number: str) -> int:
    """Customer orders (ZK, dok_Typ 16) in the ERP for one shop order number."""
    row = erp.execute(
        "SELECT COUNT(*) FROM dok__Dokument WHERE dok_Typ = 16 AND dok_NrPelnyOryg = ?",
        (external_number,),
    ).fetchone()
    return int(row[0])
