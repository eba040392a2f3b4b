"""The agent sends what its detector finds as ``change`` events, and forgets each only once the
relay acknowledged it: through real sockets, a real agent (in process, or a process killed with
SIGKILL) and the demo ERP changed directly with SQL."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.changefeed.outbox import Outbox
from agent.connectors.demo import DemoConnector
from agent.settings import ChangesOptions
from agent.supervisor import Supervisor
from protocol.changes import CHANGE_ADAPTER, StockChanged
from protocol.frames import Ack
from tests.changefeed.change_relay import ChangeRelay
from tests.support.agent_process import AgentProcess, write_agent_config
from tests.support.servers import agent_settings, wait_for

INTERVAL_S = 0.2


@pytest.fixture
async def relay() -> AsyncIterator[ChangeRelay]:
    async with ChangeRelay().running() as running:
        yield running


def _change_stock(erp_path: Path, quantity: int) -> None:
    db = sqlite3.connect(erp_path)
    db.execute(
        "UPDATE tw_Stan SET st_Stan = ? WHERE st_TowId = 1 AND st_MagId = 1", (quantity * 10_000,)
    )
    db.commit()
    db.close()


def _baseline_taken(outbox_path: Path) -> bool:
    if not outbox_path.exists():
        return False
    db = sqlite3.connect(outbox_path)
    try:
        return db.execute("SELECT 1 FROM outbox_meta WHERE name = 'state'").fetchone() is not None
    except sqlite3.OperationalError:
        return False
    finally:
        db.close()


@pytest.fixture
async def agent(relay: ChangeRelay, erp_path: Path, tmp_path: Path) -> AsyncIterator[Supervisor]:
    settings = agent_settings(relay.ws_url, "token", journal_path=tmp_path / "journal.sqlite")
    settings = settings.model_copy(update={"changes": ChangesOptions(interval_s=INTERVAL_S)})
    connector = DemoConnector(str(erp_path), seed=False)
    supervisor = Supervisor(settings, connector)
    task = asyncio.create_task(supervisor.run())
    try:
        await wait_for(lambda: supervisor.status.connected, what="the agent to connect")
        await wait_for(lambda: _baseline_taken(tmp_path / "changes.sqlite"), what="a baseline")
        yield supervisor
    finally:
        supervisor.stop()
        async with asyncio.timeout(30):
            await task


async def test_a_stock_change_is_sent_and_forgotten_once_acknowledged(
    relay: ChangeRelay, agent: Supervisor, erp_path: Path
) -> None:
    assert agent.changes is not None
    _change_stock(erp_path, 77)
    await wait_for(lambda: relay.events, what="the change event")
    event = relay.events[0]
    assert (event.stream, event.seq) == (agent.changes.outbox.stream, 1)
    change = CHANGE_ADAPTER.validate_python(event.data)
    assert isinstance(change, StockChanged)
    assert (change.product_id, change.warehouse, change.quantity) == ("1", "MAG", 77)
    await wait_for(lambda: agent.changes is not None and agent.changes.outbox.depth == 0)
    assert agent.snapshot()["changes"]["outbox"] == 0
    # an ack for an event never sent, or of another stream, changes nothing
    agent.changes.acked(Ack(agent.changes.outbox.stream, 999))
    agent.changes.acked(Ack("another", 1))
    assert len(relay.events) == 1


async def test_an_unacknowledged_event_is_sent_again_after_a_reconnect(
    relay: ChangeRelay, agent: Supervisor, erp_path: Path
) -> None:
    assert agent.changes is not None
    relay.acking = False
    _change_stock(erp_path, 5)
    await wait_for(lambda: relay.events, what="the change event")
    assert agent.changes.outbox.depth == 1
    relay.acking = True
    await relay.drop()
    await wait_for(lambda: len(relay.events) >= 2, what="the event again")
    first, again = relay.events[0], relay.events[1]
    assert (again.stream, again.seq, again.data) == (first.stream, first.seq, first.data)
    await wait_for(lambda: agent.changes is not None and agent.changes.outbox.depth == 0)
    assert relay.connections == 2


async def test_an_agent_killed_before_the_ack_sends_the_event_again(
    relay: ChangeRelay, erp_path: Path, tmp_path: Path
) -> None:
    outbox_path = tmp_path / "state" / "changes.sqlite"
    config = write_agent_config(
        tmp_path / "agent.toml",
        relay_url=relay.ws_url,
        erp_path=erp_path,
        journal_path=tmp_path / "state" / "journal.sqlite",
        tables=f"\n[changes]\ninterval_s = {INTERVAL_S}\n",
    )
    process = AgentProcess(config, "token", tmp_path / "agent.log")
    try:
        process.start()
        await wait_for(lambda: _baseline_taken(outbox_path), timeout=30, what="a baseline")
        relay.acking = False
        _change_stock(erp_path, 9)
        await wait_for(lambda: relay.events, timeout=30, what="the change event")
        process.kill()
        relay.acking = True
        process.start()
        await wait_for(lambda: len(relay.events) >= 2, timeout=30, what="the event again")
        first, again = relay.events[0], relay.events[1]
        assert (again.stream, again.seq, again.data) == (first.stream, first.seq, first.data)
        # the agent deletes an acknowledged event right after the ack: wait for that, not longer
        await wait_for(lambda: _depth(outbox_path) == 0, timeout=15, what="the ack to be applied")
        process.terminate()
        await wait_for(lambda: not process.alive, timeout=15, what="the agent to stop")
    finally:
        process.stop()
    outbox = Outbox(outbox_path)
    outbox.open()
    try:
        assert outbox.depth == 0
    finally:
        outbox.close()


def _depth(outbox_path: Path) -> int:
    """Events in the agent's outbox, read beside the running agent (WAL allows it)."""
    conn = sqlite3.connect(outbox_path)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM outbox_event").fetchone()[0])
    finally:
        conn.close()
