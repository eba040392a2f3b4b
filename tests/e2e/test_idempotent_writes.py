"""Idempotent writes at the relay, through real sockets: CRM → relay → agent → ERP.

Only what the relay guarantees on its own is checked here (no agent journal is configured):
the Idempotency-Key is required, a finished write is replayed, a changed body is refused,
concurrent retries reach the ERP once, and an unknown outcome is forwarded again, not replayed.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from agent.connectors.base import CallContext, ConnectorInfo, ConnectorSession, ErpFailure, handles
from agent.connectors.demo import DemoConnector
from protocol.operations.customers import Customer, NewCustomer
from tests.e2e.conftest import Credentials
from tests.support.connectors import ScriptedConnector, ScriptedSession
from tests.support.servers import RelayHandle, run_agent, wait_for

ZK = 16
PROBLEM = "application/problem+json"
ORDERS = "/v1/agents/acme/calls/orders.create"
CUSTOMERS = "/v1/agents/acme/calls/customers.create"


# A connector whose customers.create can be made slow, and which counts the writes it makes.


class WritingConnector(ScriptedConnector):
    def __init__(self) -> None:
        super().__init__()
        self.write_delays: list[float] = []
        """Seconds each next customers.create blocks (or until interrupted); then 0."""
        self.writes = 0
        self.written: dict[str, Customer] = {}
        self.lock = threading.Lock()

    def info(self) -> ConnectorInfo:
        return ConnectorInfo(self.name, "Scripted ERP", WritingSession.operations())

    def open_session(self) -> ConnectorSession:
        return WritingSession(self)


class WritingSession(ScriptedSession):
    connector: WritingConnector

    @handles("customers.create")
    def create_customer(self, args: NewCustomer, ctx: CallContext) -> BaseModel:
        connector = self.connector
        with connector.lock:
            connector.calls.append(f"customers.create {ctx.idempotency_key}")
            delay = connector.write_delays.pop(0) if connector.write_delays else 0.0
        if delay and self._stop.wait(delay):
            self._stop.clear()
            connector.interrupted.set()
            raise ErpFailure("interrupted")
        with connector.lock:
            connector.writes += 1
            number = connector.writes
            customer = Customer(id=str(number), symbol=f"K{number}", name=args.name)
            if ctx.idempotency_key is not None:
                connector.written[ctx.idempotency_key] = customer
        return customer

    def find_write(self, operation: str, idempotency_key: str) -> BaseModel | None:
        """What a write with this key made, as an ERP connector would look it up."""
        with self.connector.lock:
            return self.connector.written.get(idempotency_key)


# The demo ERP comes from tests/conftest.py (seeded_erp, erp_path, erp).


@pytest.fixture
async def demo_agent(relay: RelayHandle, creds: Credentials, erp_path: Path) -> AsyncIterator[None]:
    connector = DemoConnector(str(erp_path), seed=False)
    async with run_agent(relay.ws_url, creds.agent_token, connector, max_concurrency=4):
        yield


def _order(erp: sqlite3.Connection, external_number: str, quantity: str = "1") -> dict[str, Any]:
    sku = erp.execute(
        "SELECT tw_Symbol FROM tw__Towar JOIN tw_Stan ON st_TowId = tw_Id WHERE st_MagId = 1 "
        "AND st_Stan - st_StanRez >= 100000 AND tw_Zablokowany = 0 LIMIT 1"
    ).fetchone()[0]
    return {
        "external_number": external_number,
        "customer": {"id": "1"},
        "warehouse": "MAG",
        "lines": [{"sku": sku, "quantity": quantity}],
    }


def _documents(erp: sqlite3.Connection, external_number: str) -> int:
    count: int = erp.execute(
        "SELECT COUNT(*) FROM dok__Dokument WHERE dok_Typ = ? AND dok_NrPelnyOryg = ?",
        (ZK, external_number),
    ).fetchone()[0]
    return count


async def test_a_write_without_idempotency_key_is_400_and_never_forwarded(
    client: httpx.AsyncClient, demo_agent: None, erp: sqlite3.Connection
) -> None:
    response = await client.post(ORDERS, json=_order(erp, "SHOP-NOKEY"))
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["code"] == "idempotency_key_required"
    assert _documents(erp, "SHOP-NOKEY") == 0


async def test_reads_need_no_idempotency_key(client: httpx.AsyncClient, demo_agent: None) -> None:
    response = await client.post("/v1/agents/acme/calls/ping", json={})
    assert response.status_code == 200
    assert "idempotent-replayed" not in response.headers


async def test_same_key_and_body_replays_the_stored_answer(
    client: httpx.AsyncClient, demo_agent: None, erp: sqlite3.Connection
) -> None:
    body = _order(erp, "SHOP-2001")
    headers = {"Idempotency-Key": "order-2001"}
    first = await client.post(ORDERS, json=body, headers=headers)
    assert first.status_code == 200, first.text
    assert "idempotent-replayed" not in first.headers
    # The same request, serialised differently (key order, whitespace), is the same request.
    reordered = httpx.Request("POST", "/", json=dict(reversed(list(body.items())))).content
    again = await client.post(
        ORDERS,
        content=b"  " + reordered + b"\n",
        headers={**headers, "content-type": "application/json"},
    )
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["content-type"] == "application/json"
    assert again.content == first.content
    assert "server-timing" not in again.headers
    assert again.headers["x-request-id"] != first.headers["x-request-id"]
    assert _documents(erp, "SHOP-2001") == 1


async def test_a_definite_failure_is_replayed_too(
    client: httpx.AsyncClient, demo_agent: None, erp: sqlite3.Connection
) -> None:
    body = _order(erp, "SHOP-2002", quantity="99999999")
    headers = {"Idempotency-Key": "order-2002"}
    first = await client.post(ORDERS, json=body, headers=headers)
    assert first.status_code == 409
    assert first.json()["code"] == "insufficient_stock"
    again = await client.post(ORDERS, json=body, headers=headers)
    assert again.status_code == 409
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["content-type"] == PROBLEM
    assert again.content == first.content


async def test_same_key_with_another_body_is_422(
    client: httpx.AsyncClient, demo_agent: None, erp: sqlite3.Connection
) -> None:
    headers = {"Idempotency-Key": "order-2003"}
    first = await client.post(ORDERS, json=_order(erp, "SHOP-2003"), headers=headers)
    assert first.status_code == 200, first.text
    other = await client.post(ORDERS, json=_order(erp, "SHOP-2003", "2"), headers=headers)
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_mismatch"
    elsewhere = await client.post(
        CUSTOMERS, json={"name": "Inna Firma"}, headers=headers
    )  # same key, another operation
    assert elsewhere.json()["code"] == "idempotency_key_mismatch"
    assert _documents(erp, "SHOP-2003") == 1


async def test_twenty_concurrent_identical_requests_write_one_document(
    client: httpx.AsyncClient, demo_agent: None, erp: sqlite3.Connection
) -> None:
    body = _order(erp, "SHOP-3001")
    headers = {"Idempotency-Key": "order-3001"}
    responses = await asyncio.gather(
        *(client.post(ORDERS, json=body, headers=headers) for _ in range(20))
    )
    statuses = [response.status_code for response in responses]
    assert set(statuses) <= {200, 409}, statuses
    assert statuses.count(200) >= 1
    for response in responses:
        if response.status_code == 409:
            # Never the ERP's own duplicate refusal: the relay forwarded the call once.
            assert response.json()["code"] == "idempotency_in_progress"
            assert response.headers["retry-after"]
    answers = {response.content for response in responses if response.status_code == 200}
    assert len(answers) == 1
    assert _documents(erp, "SHOP-3001") == 1
    final = await client.post(ORDERS, json=body, headers=headers)
    assert final.status_code == 200
    assert final.headers["idempotent-replayed"] == "true"
    assert final.content in answers


async def test_an_unknown_outcome_is_resolved_by_a_retry_with_the_same_key(
    relay: RelayHandle, creds: Credentials, client: httpx.AsyncClient
) -> None:
    connector = WritingConnector()
    connector.write_delays = [30.0]
    headers = {"Idempotency-Key": "customer-1"}
    async with run_agent(relay.ws_url, creds.agent_token, connector):
        timed_out = await client.post(
            f"{CUSTOMERS}?timeout=0.5", json={"name": "Nowa Firma"}, headers=headers
        )
        assert timed_out.status_code == 504
        assert timed_out.json()["code"] == "timeout"
        assert timed_out.json()["outcome"] == "unknown"
        await wait_for(connector.interrupted.is_set, what="the first attempt to be interrupted")

        retried = await client.post(CUSTOMERS, json={"name": "Nowa Firma"}, headers=headers)
        assert retried.status_code == 200, retried.text
        assert "idempotent-replayed" not in retried.headers, "forwarded again, not replayed"
        assert retried.json()["name"] == "Nowa Firma"

        replayed = await client.post(CUSTOMERS, json={"name": "Nowa Firma"}, headers=headers)
        assert replayed.headers["idempotent-replayed"] == "true"
        assert replayed.content == retried.content

    public_id = creds.api_key.split("_")[1]
    # Both attempts reached the agent with the same key, scoped by the API key's public id.
    assert connector.calls == [f"customers.create {public_id}:customer-1"] * 2
    assert connector.writes == 1


async def test_an_offline_agent_leaves_the_key_free(
    relay: RelayHandle, creds: Credentials, client: httpx.AsyncClient
) -> None:
    headers = {"Idempotency-Key": "customer-2"}
    offline = await client.post(CUSTOMERS, json={"name": "Firma"}, headers=headers)
    assert offline.status_code == 503
    assert offline.json()["code"] == "agent_offline"
    assert "outcome" not in offline.json()
    connector = WritingConnector()
    async with run_agent(relay.ws_url, creds.agent_token, connector):
        # Not refused as in progress and not replayed as 503: the call runs now.
        retried = await client.post(CUSTOMERS, json={"name": "Firma"}, headers=headers)
    assert retried.status_code == 200, retried.text
    assert "idempotent-replayed" not in retried.headers
    assert connector.writes == 1


async def test_keys_of_different_api_keys_do_not_collide(
    relay: RelayHandle, creds: Credentials, client: httpx.AsyncClient
) -> None:
    connector = WritingConnector()
    headers = {"Idempotency-Key": "same"}
    async with (
        run_agent(relay.ws_url, creds.agent_token, connector),
        httpx.AsyncClient(
            base_url=relay.base_url, headers={"Authorization": f"Bearer {creds.narrow_key}"}
        ) as narrow,
    ):
        first = await client.post(CUSTOMERS, json={"name": "A"}, headers=headers)
        second = await narrow.post(CUSTOMERS, json={"name": "B"}, headers=headers)
    assert first.status_code == second.status_code == 200
    assert first.json()["name"] == "A" and second.json()["name"] == "B"
    assert connector.writes == 2
    assert len(set(connector.calls)) == 2, "the agent sees two different keys"
