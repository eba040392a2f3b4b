"""The real relay answers what the site refuses from the agent's hello, without a round trip.

A real agent process on the demo ERP (read-only) connected to a real relay: the relay learns the
refused operations from ``hello.not_allowed`` and answers a CRM's call, and a job, with 403
``operation_not_allowed_by_site`` while the agent's connection carries no call at all.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from protocol.operations import WRITE_OPERATIONS
from relay.hub import AgentLink
from tests.e2e.conftest import Credentials
from tests.policy.conftest import StartAgent
from tests.support.agent_process import AgentProcess
from tests.support.orders import order
from tests.support.servers import RelayHandle, wait_for

REFUSED = tuple(sorted(WRITE_OPERATIONS))
"""A read-only site refuses every write the demo connector serves, which is every write."""


async def _read_only_agent(
    relay: RelayHandle, creds: Credentials, policy_agent: StartAgent
) -> tuple[AgentProcess, AgentLink]:
    agent = policy_agent(relay.ws_url, ["read_only = true"], creds.agent_token)
    await wait_for(
        lambda: relay.state.hub.is_online("acme") or not agent.alive,
        timeout=30,
        what="the agent process to connect",
    )
    assert agent.alive, agent.log()
    (link,) = relay.state.hub.links("acme")
    return agent, link


def _calls_sent(relay: RelayHandle) -> int:
    """Calls the relay sent on any connection of the agent (it may have reconnected)."""
    return sum(link.calls for link in relay.state.hub.links("acme"))


def _assert_refused(response: httpx.Response, operation: str) -> None:
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "operation_not_allowed_by_site"
    assert problem["retryable"] is False
    assert problem["status"] == 403
    assert operation in problem["detail"]


async def test_hello_reports_the_refused_operations(
    relay: RelayHandle, creds: Credentials, client: httpx.AsyncClient, policy_agent: StartAgent
) -> None:
    _, link = await _read_only_agent(relay, creds, policy_agent)
    assert link.hello.not_allowed == REFUSED
    assert link.describe()["not_allowed"] == list(REFUSED)
    listed = (await client.get("/v1/agents/acme")).json()
    assert not set(listed["operations"]) & set(REFUSED)
    assert {"ping", "operations.status", "customers.get"} <= set(listed["operations"])


async def test_a_refused_call_is_403_and_never_reaches_the_agent(
    relay: RelayHandle, creds: Credentials, client: httpx.AsyncClient, policy_agent: StartAgent
) -> None:
    agent, _ = await _read_only_agent(relay, creds, policy_agent)
    for attempt in range(2):
        response = await client.post(
            "/v1/agents/acme/calls/orders.create",
            json=order("SHOP-403", "ANY"),
            headers={"Idempotency-Key": "refused-1"},
        )
        _assert_refused(response, "orders.create")
        # nothing ran, so the key was released rather than kept with this answer
        assert "idempotency-replayed" not in response.headers, attempt
    customer = await client.post(
        "/v1/agents/acme/calls/customers.create",
        json={"name": "Nowak Handel"},
        headers={"Idempotency-Key": "refused-2"},
    )
    _assert_refused(customer, "customers.create")
    assert _calls_sent(relay) == 0, "the relay sent a refused call to the agent"

    allowed = await client.post("/v1/agents/acme/calls/customers.get", json={"id": "1"})
    assert allowed.status_code == 200, allowed.text
    assert _calls_sent(relay) == 1
    assert "refused a call the site does not allow" not in agent.log()


async def _job_ended(client: httpx.AsyncClient, location: str) -> dict[str, Any]:
    for _ in range(500):
        job: dict[str, Any] = (await client.get(location)).json()
        if job["state"] not in ("pending", "running"):
            return job
        await asyncio.sleep(0.02)
    raise AssertionError(f"the job stayed {job['state']}")


async def test_a_job_for_a_refused_operation_fails_without_a_delivery(
    relay: RelayHandle, creds: Credentials, client: httpx.AsyncClient, policy_agent: StartAgent
) -> None:
    await _read_only_agent(relay, creds, policy_agent)
    accepted = await client.post(
        "/v1/agents/acme/jobs/orders.create", json=order("SHOP-JOB", "ANY")
    )
    assert accepted.status_code == 202, accepted.text
    job = await _job_ended(client, accepted.headers["location"])
    assert job["state"] == "failed"
    assert job["error"]["code"] == "operation_not_allowed_by_site"
    assert "orders.create" in job["error"]["message"]
    assert job["attempts"] == 0
    assert _calls_sent(relay) == 0
