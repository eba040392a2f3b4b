"""The call's deadline is enforced by the database server, not only by the agent's own timer:
the statement is ended on the server (error 1969, ``max_statement_time``), comes back as a
retryable timeout, and is no longer running there."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from agent.connectors.base import ErpUnavailable
from agent.connectors.demo import DemoSession, queries
from agent.connectors.sql import Fault
from tests.odbc.support import call, cause
from tests.support import mariadb


def test_a_slow_statement_is_ended_by_the_server_at_the_deadline(
    session: DemoSession, erp_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(queries, "database_time", lambda: select(func.sleep(10)))
        with pytest.raises(ErpUnavailable) as caught:
            call(session, "ping", deadline_s=1)
    assert cause(caught.value) == (Fault.TIMEOUT, "HY018", 1969), "the server stopped it"
    assert mariadb.running_statements(erp_name) == [], "nothing left running on the server"
    with monkeypatch.context() as patch:
        patch.setattr(queries, "database_time", lambda: select(func.sleep(1.5)))
        assert call(session, "ping").database_time is not None, "the limit ends with its call"
    assert call(session, "ping", deadline_s=5).database_time is not None


def test_a_lock_wait_is_ended_by_the_server_at_the_deadline(
    session: DemoSession, erp_name: str
) -> None:
    blocker = mariadb.connect(erp_name, autocommit=False)
    try:
        blocker.execute("SELECT ido_wartosc FROM ins_ident FOR UPDATE").fetchall()
        with pytest.raises(ErpUnavailable) as caught:
            call(session, "customers.create", deadline_s=1, name="Czeka Na Blokadę")
        assert cause(caught.value)[0] is Fault.TIMEOUT
        mine = mariadb.connection_id(blocker)
        assert [c for c, _ in mariadb.running_statements(erp_name) if c != mine] == []
    finally:
        blocker.rollback()
        blocker.close()
    assert call(session, "customers.create", name="Już Bez Blokady").name == "Już Bez Blokady"
