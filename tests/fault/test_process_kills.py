"""Nothing lost, nothing twice when processes die: SIGKILL the agent at named points of the
write path, SIGKILL the relay with calls and jobs in flight, and an unwritable journal.

Every scenario runs 20 rounds and ends by counting ZK documents per shop order number in the
demo ERP: one for every order the CRM was told succeeded, or told "unknown" and then retried
with the same key; none for orders that were refused.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.connectors.demo import DemoConnector
from tests.conftest import zk_count
from tests.e2e.conftest import Credentials, agent_died, start_agent
from tests.fault.test_exactly_once import demo_agent
from tests.support.agent_process import AgentProcess
from tests.support.orders import order, plentiful_sku, write
from tests.support.relay_process import RelayProcess
from tests.support.servers import RelayHandle, free_port, run_agent, wait_for

ROUNDS = 20
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("crash_at", ["before_erp_call", "after_erp_commit"])
async def test_agent_killed_in_the_write_path(
    crash_at: str,
    relay: RelayHandle,
    client: httpx.AsyncClient,
    agent_process: AgentProcess,
    erp: sqlite3.Connection,
) -> None:
    sku = plentiful_sku(erp)
    for n in range(ROUNDS):
        external, key = f"KILL-{crash_at}-{n}", f"kill-{crash_at}-{n}"
        await start_agent(relay, agent_process, crash_at=crash_at)
        first = await write(client, order(external, sku), key)
        assert first.status_code in (502, 503, 504), first.text
        assert first.json()["outcome"] == "unknown"
        await agent_died(relay, agent_process)
        assert agent_process.returncode in (-9, 137), agent_process.log()
        expected_before = 1 if crash_at == "after_erp_commit" else 0
        assert zk_count(erp, external) == expected_before, f"round {n}"

        await start_agent(relay, agent_process)
        retry = await write(client, order(external, sku), key)
        assert retry.status_code == 200, retry.text
        assert zk_count(erp, external) == 1, f"round {n}"
        agent_process.terminate()
        await wait_for(lambda: not agent_process.alive, timeout=15, what="the agent to stop")
        agent_process.stop()


@pytest.mark.timeout(300)  # 20 relay restarts, ~3-5 s each on this 2-core machine
async def test_relay_killed_with_calls_and_jobs_in_flight(
    creds: Credentials, erp: sqlite3.Connection, erp_path: Path, tmp_path: Path
) -> None:
    sku = plentiful_sku(erp)
    relay = RelayProcess(
        creds.database_url.replace("+aiosqlite", ""), free_port(), tmp_path / "relay.log"
    )
    relay.start()
    accepted: list[tuple[str, str]] = []  # (job id, external number)
    unknown: list[tuple[str, dict[str, Any]]] = []  # calls to retry: (key, body)
    answered: list[str] = []
    headers = {"Authorization": f"Bearer {creds.api_key}"}
    try:
        async with (
            demo_agent(
                relay.ws_url,
                creds,
                erp_path,
                tmp_path,
                base_s=0.05,
                cap_s=0.2,
            ) as agent,
            httpx.AsyncClient(base_url=relay.base_url, headers=headers) as http,
        ):
            for n in range(ROUNDS):
                for j in range(3):
                    external = f"JOB-{n}-{j}"
                    job = await http.post(
                        "/v1/agents/acme/jobs/orders.create", json=order(external, sku)
                    )
                    assert job.status_code == 202, job.text
                    accepted.append((job.json()["id"], external))
                calls = [
                    asyncio.create_task(write(http, order(f"CALL-{n}-{c}", sku), f"call-{n}-{c}"))
                    for c in range(3)
                ]
                await asyncio.sleep(0.005 * (n % 4))  # kill at a different moment each round
                relay.kill()
                for c, task in enumerate(calls):
                    key, body = f"call-{n}-{c}", order(f"CALL-{n}-{c}", sku)
                    try:
                        answer = await task
                    except httpx.HTTPError:
                        unknown.append((key, body))
                        continue
                    if answer.status_code == 200:
                        answered.append(body["external_number"])
                    else:
                        unknown.append((key, body))
                relay.start()
                await wait_for(lambda: agent.status.connected, timeout=15, what="reconnect")

            for key, body in unknown:
                retry = await write(http, body, key)
                assert retry.status_code == 200, retry.text
                answered.append(body["external_number"])

            async def all_jobs_done() -> list[str]:
                states = []
                for job_id, _ in accepted:
                    states.append((await http.get(f"/v1/jobs/{job_id}")).json()["state"])
                return states

            for _ in range(600):
                states = await all_jobs_done()
                if all(state == "succeeded" for state in states):
                    break
                await asyncio.sleep(0.1)
            assert all(state == "succeeded" for state in states), states
    finally:
        relay.stop()
    for _, external in accepted:
        assert zk_count(erp, external) == 1, external
    for external in answered:
        assert zk_count(erp, external) == 1, external


async def test_unwritable_journal_refuses_writes_and_leaves_the_erp_alone(
    relay: RelayHandle,
    client: httpx.AsyncClient,
    creds: Credentials,
    erp: sqlite3.Connection,
    erp_path: Path,
    tmp_path: Path,
) -> None:
    sku = plentiful_sku(erp)
    blocked = tmp_path / "journal-is-a-directory"
    blocked.mkdir()
    async with run_agent(
        relay.ws_url,
        creds.agent_token,
        DemoConnector(str(erp_path), seed=False),
        journal_path=str(blocked),
    ):
        for n in range(ROUNDS):
            answer = await write(client, order(f"NOJOURNAL-{n}", sku), f"nojournal-{n}")
            assert answer.status_code == 503, answer.text
            assert answer.json()["code"] == "journal_unavailable"
        reads = await client.post("/v1/agents/acme/calls/products.get", json={"sku": sku})
        assert reads.status_code == 200
    assert sum(zk_count(erp, f"NOJOURNAL-{n}") for n in range(ROUNDS)) == 0
