"""The change feed end to end: a real agent watching the demo ERP, a relay process on
PostgreSQL, a subscriber long-polling it. Stock changed directly in the ERP's database reaches
the subscriber once, also when the relay is killed and started again in between."""

from __future__ import annotations

import asyncio
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from relay.store import Store
from relay.store.db import upgrade
from tests.support.agent_process import AgentProcess, write_agent_config
from tests.support.postgres import postgres_url  # noqa: F401 - fixture
from tests.support.relay_process import RelayProcess
from tests.support.servers import free_port

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

PRODUCT_ID = 14
SKU = "BIU-0001"
WAREHOUSES = {"MAG": 1, "SKL": 2, "WEB": 3}
BOUND_S = 60.0
"""Generous: nothing here measures speed (bench/change_feed.py does)."""


class Subscriber:
    """Long-polls the agent's feed from cursor 0 and keeps every event it is given."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.after = 0
        self.events: list[dict[str, Any]] = []

    async def poll(self) -> None:
        try:
            response = await self.http.get(
                "/v1/agents/acme/events", params={"after": self.after, "wait": 2}
            )
        except httpx.TransportError:  # the relay is restarting
            await asyncio.sleep(0.2)
            return
        if response.status_code != 200:
            await asyncio.sleep(0.2)
            return
        page = response.json()
        self.events.extend(page["items"])
        self.after = page["next_after"]

    async def until_stock(self, warehouse: str, quantity: int, timeout: float = BOUND_S) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not any(_is_stock(e, warehouse, quantity) for e in self.events):
            if loop.time() > deadline:
                raise AssertionError(f"no stock.changed for {SKU} {warehouse} = {quantity}")
            await self.poll()


def _is_stock(event: dict[str, Any], warehouse: str, quantity: int) -> bool:
    data = event["data"]
    return (
        event["type"] == "stock.changed"
        and data["sku"] == SKU
        and data["warehouse"] == warehouse
        and Decimal(data["quantity"]) == quantity
    )


def _set_stock(erp_path: Path, warehouse: str, quantity: int) -> None:
    """What someone at the office does in Subiekt GT, straight into the table (Money4: x10^4)."""
    with sqlite3.connect(erp_path) as erp:
        erp.execute(
            "UPDATE tw_Stan SET st_Stan = ? WHERE st_TowId = ? AND st_MagId = ?",
            (quantity * 10_000, PRODUCT_ID, WAREHOUSES[warehouse]),
        )
    erp.close()


def _reserved(erp_path: Path, warehouse: str) -> Decimal:
    with sqlite3.connect(erp_path) as erp:
        (value,) = erp.execute(
            "SELECT st_StanRez FROM tw_Stan WHERE st_TowId = ? AND st_MagId = ?",
            (PRODUCT_ID, WAREHOUSES[warehouse]),
        ).fetchone()
    erp.close()
    return Decimal(value) / 10_000


async def _baseline_taken(erp_path: Path, subscriber: Subscriber) -> None:
    """The agent reports changes from its second poll on: change WEB stock until one shows."""
    for attempt in range(1, 30):
        _set_stock(erp_path, "WEB", 1000 + attempt)
        try:
            await subscriber.until_stock("WEB", 1000 + attempt, timeout=3)
        except AssertionError:
            continue
        return
    raise AssertionError("the agent never reported a stock change")


async def test_stock_changed_in_the_erp_reaches_the_subscriber_once_across_a_relay_restart(
    postgres_url: str,  # noqa: F811 - the fixture
    erp_path: Path,
    tmp_path: Path,
) -> None:
    await upgrade(postgres_url)
    store = await Store.open(postgres_url)
    try:
        agent_token = (await store.create_agent("acme")).plaintext
        api_key = (await store.create_api_key("shop", ["acme"], ["products.*"])).plaintext
    finally:
        await store.close()
    relay = RelayProcess(
        postgres_url, free_port(), tmp_path / "relay.log", change_poll_interval_s="0.2"
    )
    await asyncio.to_thread(relay.start)
    config = write_agent_config(
        tmp_path / "agent.toml",
        relay_url=relay.ws_url,
        erp_path=erp_path,
        journal_path=tmp_path / "state" / "journal.sqlite",
        tables="\n[changes]\ninterval_s = 0.5\n",
    )
    agent = AgentProcess(config, agent_token, tmp_path / "agent.log")
    agent.start()
    try:
        async with httpx.AsyncClient(
            base_url=relay.base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30
        ) as http:
            subscriber = Subscriber(http)
            await _baseline_taken(erp_path, subscriber)
            warm_up = len(subscriber.events)

            _set_stock(erp_path, "MAG", 123)
            await subscriber.until_stock("MAG", 123)
            (mag,) = [e["data"] for e in subscriber.events if _is_stock(e, "MAG", 123)]
            assert mag["product_id"] == str(PRODUCT_ID)
            assert Decimal(mag["reserved"]) == _reserved(erp_path, "MAG")
            assert Decimal(mag["available"]) == 123 - _reserved(erp_path, "MAG")

            # A change that may be on its way when the relay dies, one while it is down.
            _set_stock(erp_path, "WEB", 5)
            await asyncio.sleep(0.6)
            await asyncio.to_thread(relay.kill)
            _set_stock(erp_path, "SKL", 77)
            await asyncio.to_thread(relay.start)
            await subscriber.until_stock("WEB", 5)
            await subscriber.until_stock("SKL", 77)
            skl = next(e["data"] for e in subscriber.events if _is_stock(e, "SKL", 77))
            assert Decimal(skl["available"]) == 77 - _reserved(erp_path, "SKL")

            # Read the whole feed again: every event once, in cursor order.
            await subscriber.poll()
            everything = (await http.get("/v1/agents/acme/events", params={"limit": 1000})).json()
    finally:
        agent.stop()
        relay.stop()
    cursors = [e["cursor"] for e in everything["items"]]
    assert cursors == sorted(set(cursors))
    assert everything["items"] == subscriber.events
    after_warm_up = [
        (e["data"]["warehouse"], Decimal(e["data"]["quantity"]))
        for e in subscriber.events[warm_up:]
        if e["type"] == "stock.changed" and e["data"]["sku"] == SKU
    ]
    assert after_warm_up == [("MAG", 123), ("WEB", 5), ("SKL", 77)], agent.log()[-3000:]
