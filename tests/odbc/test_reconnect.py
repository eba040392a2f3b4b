"""The demo session outlives its database connection: killed by the server (``KILL``, as a
restart does), the next call works without anyone restarting the agent; a write whose connection
died is reported as retryable and never run again behind the caller's back."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from agent.connectors.base import ErpUnavailable
from agent.connectors.demo import DemoSession
from agent.connectors.sql import Fault
from tests.e2e.conftest import Credentials, start_agent
from tests.odbc.support import call, cause, in_thread, wait_until
from tests.support import mariadb
from tests.support.agent_process import AgentProcess, write_agent_config
from tests.support.servers import RelayHandle, wait_for


def kill_all(database: str) -> set[int]:
    """Kill every server connection to ``database``; returns their ids."""
    ids = mariadb.connection_ids(database)
    for connection in ids:
        mariadb.kill(connection)
    return ids


def test_a_read_after_the_connection_was_killed_reconnects(
    session: DemoSession, erp_name: str
) -> None:
    assert call(session, "customers.get", id="1").id == "1"
    killed = kill_all(erp_name)
    assert len(killed) == 1, "the session holds one connection"
    assert call(session, "customers.get", id="1").id == "1", "read again on a new connection"
    assert call(session, "customers.get", id="1", deadline_s=5).id == "1"
    assert mariadb.connection_ids(erp_name).isdisjoint(killed)


def test_a_call_with_a_deadline_reconnects_before_it_starts(
    session: DemoSession, erp_name: str
) -> None:
    """Setting the statement limit is the first thing sent: a dead connection is found there,
    before any of the call ran, so even a write goes on over the new connection."""
    call(session, "customers.get", id="1")
    kill_all(erp_name)
    created = call(session, "customers.create", deadline_s=10, name="Po Restarcie Bazy")
    assert created.name == "Po Restarcie Bazy"


def test_a_write_whose_connection_died_is_not_run_again(
    session: DemoSession, erp_name: str
) -> None:
    blocker = mariadb.connect(erp_name, autocommit=False)
    try:
        blocker.execute("SELECT ido_wartosc FROM ins_ident FOR UPDATE").fetchall()
        mine = mariadb.connection_id(blocker)
        thread, errors = in_thread(
            lambda: call(session, "customers.create", name="Zapis Przerwany")
        )

        def waiting_writer() -> list[int]:
            running = mariadb.running_statements(erp_name)
            return [cid for cid, sql in running if cid != mine and "ins_ident" in sql]

        wait_until(lambda: bool(waiting_writer()), "the write to wait for the ins_ident lock")
        (writer,) = waiting_writer()
        mariadb.kill(writer)
        thread.join(timeout=30)
        assert not thread.is_alive()
    finally:
        blocker.rollback()
        blocker.close()
    (error,) = errors
    assert isinstance(error, ErpUnavailable)
    assert cause(error)[0] is Fault.LOST
    probe = mariadb.connect(erp_name)
    try:
        count = "SELECT count(*) FROM adr__Ewid WHERE adr_Nazwa = ?"
        assert probe.execute(count, "Zapis Przerwany").fetchone()[0] == 0, "not run again"
        assert call(session, "customers.create", name="Zapis Nowy").name == "Zapis Nowy"
        assert probe.execute(count, "Zapis Nowy").fetchone()[0] == 1
    finally:
        probe.close()


def test_find_write_reconnects_too(session: DemoSession, erp_name: str) -> None:
    call(session, "customers.get", id="1")
    kill_all(erp_name)
    assert session.find_write("orders.create", "erpkid_x:never-written") is None


async def test_agent_answers_after_the_database_killed_its_connections(
    relay: RelayHandle,
    client: httpx.AsyncClient,
    creds: Credentials,
    erp_name: str,
    tmp_path: Path,
) -> None:
    """A real agent process, the demo ERP on MariaDB through ODBC, every connection killed on
    the server: the next calls through the relay answer 200, reads and a keyed write."""
    config = write_agent_config(
        tmp_path / "agent.toml",
        relay_url=relay.ws_url,
        erp_path=tmp_path / "unused.sqlite",
        journal_path=tmp_path / "state" / "journal.sqlite",
    )
    url = mariadb.sqlalchemy_url(erp_name)
    toml = re.sub(r"(?m)^path = .*$", f"url = {url!r}\nwrites = true", config.read_text())
    config.write_text(toml, encoding="utf-8")
    agent = AgentProcess(config, creds.agent_token, tmp_path / "agent.log")
    try:
        await start_agent(relay, agent)
        first = await client.post("/v1/agents/acme/calls/customers.get", json={"id": "1"})
        assert first.status_code == 200, first.text
        await wait_for(lambda: bool(mariadb.connection_ids(erp_name)), what="an ERP connection")
        assert kill_all(erp_name)
        again = await client.post("/v1/agents/acme/calls/customers.get", json={"id": "1"})
        assert again.status_code == 200, again.text + agent.log()
        assert again.json() == first.json()
        kill_all(erp_name)
        created = await client.post(
            "/v1/agents/acme/calls/customers.create",
            json={"name": "Klient Po Restarcie"},
            headers={"Idempotency-Key": "after-restart-1"},
        )
        assert created.status_code == 200, created.text + agent.log()
    finally:
        agent.terminate()
        await wait_for(lambda: not agent.alive, timeout=15, what="the agent to stop")
        agent.stop()
