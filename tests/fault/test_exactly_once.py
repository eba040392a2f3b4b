"""Nothing lost, nothing twice: writes under cut, half-open and slow links.

Each scenario runs a bounded loop of rounds and ends by counting the ZK documents in the demo
ERP per shop order number: exactly one for every order the CRM was told succeeded, or was told
"unknown" and then retried with the same key; none for orders that were never started.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.connectors.demo import DemoConnector
from agent.supervisor import Supervisor
from tests.conftest import zk_count
from tests.e2e.conftest import Credentials
from tests.support.faults import FaultProxy
from tests.support.orders import order, plentiful_sku, write
from tests.support.servers import RelayHandle, run_agent, serve_relay, wait_for

ROUNDS = 20
pytestmark = pytest.mark.slow


@pytest.fixture
async def quiet_relay(creds: Credentials) -> AsyncIterator[RelayHandle]:
    """No keepalive traffic during a round, so the proxy's next upstream bytes are the answer."""
    async with serve_relay(creds.database_url, ws_ping_interval_s=60, ws_ping_timeout_s=60) as r:
        yield r


@pytest.fixture
async def proxy(quiet_relay: RelayHandle) -> AsyncIterator[FaultProxy]:
    faults = await FaultProxy(quiet_relay.port).start()
    yield faults
    await faults.stop()


@pytest.fixture
async def http(quiet_relay: RelayHandle, creds: Credentials) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=quiet_relay.base_url,
        headers={"Authorization": f"Bearer {creds.api_key}"},
        timeout=30,
    ) as client:
        yield client


def demo_agent(
    url: str, creds: Credentials, erp_path: Path, tmp_path: Path, **options: Any
) -> AbstractAsyncContextManager[Supervisor]:
    """A real agent on the demo ERP, its write journal in the test's folder.

    Its change feed is off: these tests cut the connection at the agent's next message, which
    must be the answer to the write, not a change event the write's stock movement caused."""
    return run_agent(
        url,
        creds.agent_token,
        DemoConnector(str(erp_path), seed=False),
        journal_path=str(tmp_path / "journal.sqlite"),
        changes=False,
        **options,
    )


async def reconnected(agent: Supervisor, before: int, relay: RelayHandle) -> None:
    """The agent has a new connection and the relay has registered it: the relay sends
    welcome before it adds the link to its hub, so an agent that saw welcome may still be
    unknown to a call made at that very moment (503 agent_offline)."""
    await wait_for(
        lambda: (
            agent.connections > before
            and agent.status.connected
            and relay.state.hub.is_online("acme")
        ),
        timeout=10,
        what="the agent to reconnect",
    )


async def test_connection_cut_after_the_erp_commit(
    quiet_relay: RelayHandle,
    proxy: FaultProxy,
    http: httpx.AsyncClient,
    creds: Credentials,
    erp: sqlite3.Connection,
    erp_path: Path,
    tmp_path: Path,
) -> None:
    sku = plentiful_sku(erp)
    async with demo_agent(
        proxy.url,
        creds,
        erp_path,
        tmp_path,
        ping_interval_s=60,
        ping_timeout_s=60,
        base_s=0.05,
        cap_s=0.2,
    ) as agent:
        for n in range(ROUNDS):
            external, key = f"CUT-{n}", f"cut-{n}"
            before = agent.connections
            proxy.cut_on_next_upstream()
            first = await write(http, order(external, sku), key)
            assert first.status_code == 502, first.text
            assert first.json()["outcome"] == "unknown"
            await reconnected(agent, before, quiet_relay)
            retry = await write(http, order(external, sku), key)
            assert retry.status_code == 200, retry.text
            assert zk_count(erp, external) == 1, f"round {n}"


async def test_twenty_concurrent_requests_with_one_key(
    relay: RelayHandle,
    client: httpx.AsyncClient,
    creds: Credentials,
    erp: sqlite3.Connection,
    erp_path: Path,
    tmp_path: Path,
) -> None:
    sku = plentiful_sku(erp)
    async with demo_agent(
        relay.ws_url,
        creds,
        erp_path,
        tmp_path,
    ):
        for n in range(ROUNDS):
            body, key = order(f"SAME-{n}", sku), f"same-{n}"
            answers = await asyncio.gather(*(write(client, body, key) for _ in range(20)))
            statuses = [a.status_code for a in answers]
            assert set(statuses) <= {200, 409}, statuses
            assert 200 in statuses
            assert len({a.json()["number"] for a in answers if a.status_code == 200}) == 1
            replay = await write(client, body, key)
            assert replay.status_code == 200
            assert replay.headers["idempotent-replayed"] == "true"
            assert zk_count(erp, f"SAME-{n}") == 1, f"round {n}"


async def test_half_open_link_fails_fast_and_heals(
    creds: Credentials, erp: sqlite3.Connection, erp_path: Path, tmp_path: Path
) -> None:
    sku = plentiful_sku(erp)
    async with (
        serve_relay(creds.database_url, ws_ping_interval_s=0.2, ws_ping_timeout_s=0.3) as relay,
        httpx.AsyncClient(
            base_url=relay.base_url,
            headers={"Authorization": f"Bearer {creds.api_key}"},
            timeout=30,
        ) as http,
    ):
        faults = await FaultProxy(relay.port).start()
        try:
            async with demo_agent(
                faults.url,
                creds,
                erp_path,
                tmp_path,
                ping_interval_s=0.2,
                ping_timeout_s=0.3,
                base_s=0.05,
                cap_s=0.2,
            ) as agent:
                for n in range(ROUNDS):
                    external, key = f"HALF-{n}", f"half-{n}"
                    before = agent.connections
                    faults.blackholed = True
                    started = time.monotonic()
                    first = await write(http, order(external, sku), key, timeout=10)
                    assert first.status_code in (502, 503), first.text
                    assert time.monotonic() - started < 3, "the call hung instead of failing"
                    faults.blackholed = False
                    await reconnected(agent, before, relay)
                    retry = await write(http, order(external, sku), key)
                    assert retry.status_code == 200, retry.text
                    assert zk_count(erp, external) == 1, f"round {n}"
        finally:
            await faults.stop()


async def test_call_past_its_deadline_is_never_started(
    proxy: FaultProxy,
    http: httpx.AsyncClient,
    creds: Credentials,
    erp: sqlite3.Connection,
    erp_path: Path,
    tmp_path: Path,
) -> None:
    sku = plentiful_sku(erp)
    async with demo_agent(
        proxy.url,
        creds,
        erp_path,
        tmp_path,
        ping_interval_s=60,
        ping_timeout_s=60,
    ) as agent:
        proxy.delay_s = 0.3
        for n in range(ROUNDS):
            answer = await write(http, order(f"LATE-{n}", sku), f"late-{n}", timeout=0.2)
            assert answer.status_code == 504, answer.text
            assert answer.json()["outcome"] == "unknown"
        # every delayed call reaches the agent, which answers it without starting it
        await wait_for(lambda: agent.status.calls >= ROUNDS, what="the late calls to arrive")
    assert sum(zk_count(erp, f"LATE-{n}") for n in range(ROUNDS)) == 0
