"""Exactly-once writes across agent crashes: a real agent process, killed at named points.

The relay runs in the test's loop; the agent is a separate ``python -m agent run`` process with
its own write journal, started with ``ERP_AGENT_CRASH_AT`` so it dies (SIGKILL) at one point of
the write path, then restarted without it. The CRM retries with the same Idempotency-Key, and the
demo ERP must end up with exactly one ZK for the shop's order, whatever the crash point.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest

from tests.conftest import zk_count
from tests.e2e.conftest import agent_died, agent_online, start_agent
from tests.support.agent_process import AgentProcess
from tests.support.servers import RelayHandle

pytestmark = pytest.mark.slow

ORDER_URL = "/v1/agents/acme/calls/orders.create"
STATUS_URL = "/v1/agents/acme/calls/operations.status"


def _order(erp: sqlite3.Connection, external_number: str) -> dict[str, object]:
    sku = erp.execute(
        "SELECT tw_Symbol FROM tw__Towar JOIN tw_Stan ON st_TowId = tw_Id "
        "JOIN sl_Magazyn ON mag_Id = st_MagId AND mag_Symbol = 'MAG' "
        "WHERE tw_Zablokowany = 0 AND st_Stan - st_StanRez >= 100000 LIMIT 1"
    ).fetchone()[0]
    return {
        "external_number": external_number,
        "customer": {"id": "1"},
        "warehouse": "MAG",
        "lines": [{"sku": sku, "quantity": "2"}],
    }


async def _crash_then_retry(
    crash_at: str,
    relay: RelayHandle,
    agent_process: AgentProcess,
    client: httpx.AsyncClient,
    erp: sqlite3.Connection,
) -> tuple[str, dict[str, object], int]:
    """Create an order with the agent dying at ``crash_at``; restart; retry with the same key.

    Returns the key, the retry's order and the number of ZKs written before the retry.
    """
    external = f"SHOP-{crash_at}"
    key = f"order-{crash_at}-1"
    body = _order(erp, external)
    await start_agent(relay, agent_process, crash_at=crash_at)
    first = await client.post(ORDER_URL, json=body, headers={"Idempotency-Key": key})
    assert first.status_code != 200, f"{first.text}\n{agent_process.log()}"
    try:
        await agent_died(relay, agent_process)
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}: {first.status_code} {first.text}\n{agent_process.log()}"
        ) from None
    assert agent_process.returncode in (-9, 137), agent_process.log()
    assert first.status_code in (502, 503, 504), first.text
    assert first.json().get("outcome") == "unknown", first.text
    before = zk_count(erp, external)

    await start_agent(relay, agent_process)
    retry = await client.post(ORDER_URL, json=body, headers={"Idempotency-Key": key})
    assert retry.status_code == 200, retry.text
    assert zk_count(erp, external) == 1
    order = retry.json()
    assert order["external_number"] == external

    again = await client.post(ORDER_URL, json=body, headers={"Idempotency-Key": key})
    assert again.status_code == 200, again.text
    assert again.json() == order
    assert zk_count(erp, external) == 1
    return key, order, before


async def test_crash_after_erp_commit_returns_the_committed_order(
    relay: RelayHandle,
    agent_process: AgentProcess,
    client: httpx.AsyncClient,
    erp: sqlite3.Connection,
) -> None:
    key, order, before = await _crash_then_retry(
        "after_erp_commit", relay, agent_process, client, erp
    )
    assert before == 1  # the ERP committed; the journal did not know it
    status = await client.post(STATUS_URL, json={"idempotency_key": key})
    assert status.status_code == 200, status.text
    answer = status.json()
    assert answer["state"] == "done"
    assert answer["operation"] == "orders.create"
    assert answer["result"] == order


async def test_crash_before_erp_call_writes_once_on_retry(
    relay: RelayHandle,
    agent_process: AgentProcess,
    client: httpx.AsyncClient,
    erp: sqlite3.Connection,
) -> None:
    key, order, before = await _crash_then_retry(
        "before_erp_call", relay, agent_process, client, erp
    )
    assert before == 0  # died with the journal saying executing, the ERP untouched
    status = (await client.post(STATUS_URL, json={"idempotency_key": key})).json()
    assert status["state"] == "done"
    assert status["result"] == order


async def test_crash_before_result_send_answers_from_the_journal(
    relay: RelayHandle,
    agent_process: AgentProcess,
    client: httpx.AsyncClient,
    erp: sqlite3.Connection,
) -> None:
    key, order, before = await _crash_then_retry(
        "before_result_send", relay, agent_process, client, erp
    )
    assert before == 1
    status = (await client.post(STATUS_URL, json={"idempotency_key": key})).json()
    assert status["state"] == "done"
    assert status["result"] == order


async def test_status_of_an_unknown_key(
    relay: RelayHandle, agent_process: AgentProcess, client: httpx.AsyncClient
) -> None:
    await start_agent(relay, agent_process)
    status = await client.post(STATUS_URL, json={"idempotency_key": "never-sent"})
    assert status.status_code == 200, status.text
    assert status.json()["state"] == "unknown"


async def test_unwritable_journal_refuses_writes_and_leaves_the_erp_alone(
    relay: RelayHandle,
    agent_process: AgentProcess,
    client: httpx.AsyncClient,
    erp: sqlite3.Connection,
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the journal's folder should be")
    agent_process.start(ERP_AGENT_AGENT__JOURNAL_PATH=str(blocker / "journal.sqlite"))
    await agent_online(relay, agent_process)
    ping = await client.post("/v1/agents/acme/calls/ping", json={})
    assert ping.status_code == 200  # reads still work
    documents = erp.execute("SELECT COUNT(*) FROM dok__Dokument").fetchone()[0]
    body = _order(erp, "SHOP-NOJOURNAL")
    refused = await client.post(ORDER_URL, json=body, headers={"Idempotency-Key": "nojournal-1"})
    assert refused.status_code == 503, refused.text
    assert refused.json()["code"] == "journal_unavailable"
    assert "ERP was not touched" in refused.json()["detail"]
    assert erp.execute("SELECT COUNT(*) FROM dok__Dokument").fetchone()[0] == documents
