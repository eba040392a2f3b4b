"""Calls entering any replica reach the agent wherever its connection is (Redis routing)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter

import httpx

from agent.supervisor import Supervisor
from relay.server import drain
from tests.cluster.conftest import ClientFor, Cluster
from tests.support.connectors import ScriptedConnector
from tests.support.faults import FaultProxy
from tests.support.servers import agent_settings, run_agent, wait_for


async def test_a_call_entering_another_replica_is_forwarded(
    cluster: Cluster, clients: ClientFor
) -> None:
    async with (
        cluster.replica("a") as a,
        cluster.replica("b") as b,
        run_agent(a.ws_url, cluster.agent_token, ScriptedConnector(label="X")),
    ):
        through_b = clients(b)
        answer = await through_b.post("/v1/agents/acme/calls/ping", json={})
        assert answer.status_code == 200, answer.text
        assert answer.json()["erp"] == "X"
        assert "relay;dur=" in answer.headers["server-timing"]
        # an error frame crosses too, with its code
        refused = await through_b.post("/v1/agents/acme/calls/customers.get", json={"id": "broken"})
        assert refused.json()["code"] == "erp_error", refused.text
        # operations.status answers with the caller's key, not the one scoped for the agent
        status = await through_b.post(
            "/v1/agents/acme/calls/operations.status", json={"idempotency_key": "never-sent"}
        )
        assert status.status_code == 200, status.text
        assert status.json()["idempotency_key"] == "never-sent"
        assert status.json()["state"] == "unknown"
        assert b.state.hub.is_online("acme") is False


async def test_an_agent_held_nowhere_is_503_with_retry_after(
    cluster: Cluster, clients: ClientFor
) -> None:
    async with cluster.replica("a") as a, cluster.replica("b"):
        answer = await clients(a).post("/v1/agents/acme/calls/ping", json={})
        assert answer.status_code == 503
        assert answer.json()["code"] == "agent_offline"
        assert answer.headers["retry-after"]


async def test_the_agent_moving_to_another_replica_is_followed_at_once(
    cluster: Cluster, clients: ClientFor
) -> None:
    async with cluster.replica("a") as a, cluster.replica("b") as b, cluster.replica("c") as c:
        through_c = clients(c)
        async with run_agent(a.ws_url, cluster.agent_token, ScriptedConnector()):
            assert (await through_c.post("/v1/agents/acme/calls/ping", json={})).status_code == 200
        await wait_for(lambda: not a.state.hub.is_online("acme"), what="a to see the agent go")
        async with run_agent(b.ws_url, cluster.agent_token, ScriptedConnector()):
            answer = await through_c.post("/v1/agents/acme/calls/ping", json={})
            assert answer.status_code == 200, answer.text


async def test_a_reconnecting_agent_replaces_its_stale_connection_everywhere(
    cluster: Cluster, clients: ClientFor
) -> None:
    """The agent's old connection went silent (a half-open TCP connection: replica a still
    believes in it). When the same agent process and slot connect to replica b, replica a drops
    the old one at once instead of sending calls into it until keepalive gives up."""
    slow_keepalive = {"ping_interval_s": 60, "ping_timeout_s": 60}
    async with cluster.replica("a", ws_ping_interval_s=60) as a, cluster.replica("b") as b:
        proxy = await FaultProxy(a.port).start()
        old = Supervisor(
            agent_settings(
                f"ws://127.0.0.1:{proxy.port}/v1/agent/connect",
                cluster.agent_token,
                **slow_keepalive,
            ),
            ScriptedConnector(),
        )
        new = Supervisor(agent_settings(b.ws_url, cluster.agent_token), ScriptedConnector())
        new.hello = dataclasses.replace(new.hello, instance_id=old.hello.instance_id)
        old_task = asyncio.create_task(old.run())
        new_task: asyncio.Task[None] | None = None
        try:
            await wait_for(lambda: a.state.hub.is_online("acme"), what="the first connection")
            proxy.blackholed = True
            new_task = asyncio.create_task(new.run())
            await wait_for(lambda: b.state.hub.is_online("acme"), what="the new connection")
            await wait_for(
                lambda: not a.state.hub.is_online("acme"),
                what="replica a to drop the replaced connection",
            )
            answer = await clients(a).post("/v1/agents/acme/calls/ping", json={})
            assert answer.status_code == 200, answer.text
        finally:
            new.stop()
            old.stop()
            await proxy.stop()
            await asyncio.gather(old_task, *([new_task] if new_task else []))


async def test_a_job_accepted_at_one_replica_is_delivered_by_the_holder(
    cluster: Cluster, clients: ClientFor
) -> None:
    # the sweep is slow here: only the broadcast can deliver the job within the wait below
    async with (
        cluster.replica("a", job_poll_interval_s=60) as a,
        cluster.replica("b", job_poll_interval_s=60) as b,
        run_agent(b.ws_url, cluster.agent_token, ScriptedConnector()),
    ):
        through_a = clients(a)
        accepted = await through_a.post("/v1/agents/acme/jobs/customers.get", json={"id": "5"})
        assert accepted.status_code == 202, accepted.text
        location = accepted.headers["location"]
        for _ in range(200):
            job = (await through_a.get(location)).json()
            if job["state"] == "succeeded":
                break
            await asyncio.sleep(0.025)
        assert job["state"] == "succeeded", job
        assert job["result"]["id"] == "5"


async def test_redis_unreachable_is_degraded_and_local_agents_still_served(
    cluster: Cluster, clients: ClientFor
) -> None:
    async with cluster.replica("a", redis_url="redis://127.0.0.1:9/0") as a:
        ready = await clients(a).get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["status"] == "degraded"
        assert ready.json()["checks"]["redis"] == "unreachable"
        async with run_agent(a.ws_url, cluster.agent_token, ScriptedConnector()):
            answer = await clients(a).post("/v1/agents/acme/calls/ping", json={})
            assert answer.status_code == 200, answer.text


async def test_readyz_names_the_replica_and_redis_ok(cluster: Cluster, clients: ClientFor) -> None:
    async with cluster.replica("a") as a:
        ready = (await clients(a).get("/readyz")).json()
        assert ready["status"] == "ready"
        assert ready["replica"] == "a"
        assert ready["checks"]["redis"] == "ok"


async def test_calls_during_a_drain_wait_for_the_agent_to_move_instead_of_failing(
    cluster: Cluster, clients: ClientFor
) -> None:
    """Replica a drains (goaway): its agent reconnects through the load balancer to b. Calls
    entering either replica meanwhile wait for the move and succeed; none answers 503."""
    async with cluster.replica("a") as a, cluster.replica("b") as b:
        balancer = await FaultProxy.round_robin(a.port, b.port).start()
        try:
            url = f"ws://127.0.0.1:{balancer.port}/v1/agent/connect"
            async with run_agent(url, cluster.agent_token, ScriptedConnector()):
                assert a.state.hub.is_online("acme")
                statuses: list[int] = []

                async def load(relay_client: httpx.AsyncClient) -> None:
                    for _ in range(40):
                        answer = await relay_client.post("/v1/agents/acme/calls/ping", json={})
                        statuses.append(answer.status_code)
                        await asyncio.sleep(0.01)

                loads = [asyncio.create_task(load(clients(r))) for r in (a, b, b)]
                await asyncio.sleep(0.1)
                await drain(a.state)
                await asyncio.gather(*loads)
                assert b.state.hub.is_online("acme")
                assert statuses == [200] * len(statuses), Counter(statuses)
        finally:
            await balancer.stop()


async def test_a_forwarded_read_whose_connection_closes_as_it_is_sent_takes_another_one(
    cluster: Cluster, clients: ClientFor
) -> None:
    """Replica a holds two connections of the agent; the one a forwarded call picks is being
    closed by the agent (a link leaving to be placed on another replica) as the frame goes
    out. Replica a runs the read on its other connection instead of answering "not
    delivered", which made the entering replica give up on a for the rest of the call (the
    drain race of issue 4: a 503 after waiting out the move window)."""
    async with (
        cluster.replica("a") as a,
        cluster.replica("b") as b,
        run_agent(a.ws_url, cluster.agent_token, ScriptedConnector(label="first")),
        run_agent(a.ws_url, cluster.agent_token, ScriptedConnector(label="second")),
    ):
        await wait_for(lambda: a.state.hub.count("acme") == 2, what="both connections at a")
        chosen = a.state.hub.pick("acme", "ping")
        assert chosen is not None
        send, close_socket = chosen._send, chosen._close_socket
        assert close_socket is not None

        async def send_on_a_closing_socket(data: bytes) -> None:
            await close_socket(1001, "leaving to be placed elsewhere")
            await send(data)  # refused by the server: the close frame went out first

        chosen._send = send_on_a_closing_socket
        answer = await clients(b).post("/v1/agents/acme/calls/ping", json={})
        assert answer.status_code == 200, answer.text
        assert chosen.closed
        (other,) = [link for link in a.state.hub.links("acme") if link is not chosen]
        assert other.calls == 1
