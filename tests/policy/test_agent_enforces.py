"""The agent refuses what its site does not allow, whatever the relay sends.

A real agent process on the demo ERP, connected to `FakeRelay`, which sends calls the real relay
would answer 403 itself: forbidden writes and reads. The agent answers them
``operation_not_allowed_by_site`` before validating them, so neither the ERP nor the write
journal is touched, and it logs each at WARNING with the operation and request id.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from protocol.frames import Error, Result
from protocol.operations import CATALOGUE, WRITE_OPERATIONS
from tests.policy.conftest import StartAgent, row_counts
from tests.support.agent_process import AgentProcess
from tests.support.fake_relay import FakeRelay
from tests.support.orders import order

NEW_CUSTOMER = {"name": "Nowak Handel", "nip": "7740001454"}


@pytest.fixture
async def fake_relay() -> AsyncIterator[FakeRelay]:
    async with FakeRelay().running() as relay:
        yield relay


async def _connected(relay: FakeRelay, agent: AgentProcess) -> None:
    try:
        await relay.welcomed()
    except TimeoutError:
        raise AssertionError(f"the agent did not connect:\n{agent.log()}") from None


async def _refused(relay: FakeRelay, operation: str, args: Any, request_id: str) -> Error:
    answer = await relay.call(
        operation, args, idempotency_key=f"k-{request_id}", request_id=request_id
    )
    assert isinstance(answer, Error), answer
    assert answer.code == "operation_not_allowed_by_site", answer
    assert answer.retryable is False
    assert operation in answer.message
    return answer


def _warnings(agent: AgentProcess) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in agent.log().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("msg") == "refused a call the site does not allow"]


async def test_read_only_refuses_writes_and_serves_reads(
    fake_relay: FakeRelay, policy_agent: StartAgent, erp_path: Path, tmp_path: Path
) -> None:
    agent = policy_agent(fake_relay.ws_url, ["read_only = true"])
    await _connected(fake_relay, agent)
    hello = fake_relay.hello
    assert hello is not None
    assert hello.not_allowed == tuple(sorted(WRITE_OPERATIONS))
    assert not set(hello.operations) & {"customers.create", "orders.create"}
    assert {"ping", "operations.status", "customers.get", "orders.get"} <= set(hello.operations)

    before = row_counts(erp_path)
    await _refused(fake_relay, "orders.create", order("SHOP-1", "ANY"), "req-order")
    await _refused(fake_relay, "customers.create", NEW_CUSTOMER, "req-customer")
    # refused before validation: arguments that would be invalid change nothing in the answer
    await _refused(fake_relay, "orders.create", {"not": "an order"}, "req-garbage")
    assert row_counts(erp_path) == before, "a refused write reached the ERP"
    assert row_counts(tmp_path / "journal.sqlite").get("write_journal", 0) == 0, (
        "a refused write was journalled"
    )

    customer = await fake_relay.call("customers.get", {"id": "1"})
    assert isinstance(customer, Result), customer
    ping = await fake_relay.call("ping", {})
    assert isinstance(ping, Result), ping
    status = await fake_relay.call("operations.status", {"idempotency_key": "k-req-order"})
    assert isinstance(status, Result), status

    warnings = _warnings(agent)
    assert [(w["level"], w["operation"], w["request_id"]) for w in warnings] == [
        ("warning", "orders.create", "req-order"),
        ("warning", "customers.create", "req-customer"),
        ("warning", "orders.create", "req-garbage"),
    ], agent.log()


async def test_an_allowlist_refuses_everything_else(
    fake_relay: FakeRelay, policy_agent: StartAgent, erp_path: Path
) -> None:
    agent = policy_agent(fake_relay.ws_url, ['allow = ["customers.*", "products.*", "orders.get"]'])
    await _connected(fake_relay, agent)
    assert fake_relay.hello is not None
    allowed = {"orders.get", "ping", "operations.status"} | {
        name for name in CATALOGUE if name.split(".")[0] in ("customers", "products")
    }
    assert fake_relay.hello.not_allowed == tuple(sorted(set(CATALOGUE) - allowed))

    before = row_counts(erp_path)
    await _refused(fake_relay, "orders.create", order("SHOP-2", "ANY"), "req-write")
    await _refused(
        fake_relay,
        "invoices.list",
        {"customer": {"id": "1"}, "date_from": "2020-01-01", "date_to": "2030-12-31"},
        "req-read",
    )
    assert row_counts(erp_path) == before

    for operation, args in [
        ("customers.get", {"id": "1"}),
        ("products.search", {"query": "a"}),
        ("orders.get", {"external_number": "no-such-order"}),
    ]:
        answer = await fake_relay.call(operation, args)
        assert not (isinstance(answer, Error) and answer.code == "operation_not_allowed_by_site")
        assert isinstance(answer, Result) or answer.code == "not_found", answer
    # a wildcard covers the group's writes: customers.create runs and writes
    created = await fake_relay.call("customers.create", NEW_CUSTOMER, idempotency_key="new-1")
    assert isinstance(created, Result), created
    assert sum(row_counts(erp_path).values()) > sum(before.values())


async def test_an_unknown_name_stops_the_agent_with_a_clear_message(
    fake_relay: FakeRelay, policy_agent: StartAgent
) -> None:
    agent = policy_agent(fake_relay.ws_url, ['allow = ["customers.*", "orders.gte"]'])
    assert agent.wait_dead(30) != 0
    assert "agent.allow: 'orders.gte' matches no operation" in agent.log()
    assert fake_relay.hello is None
