"""Agent connection life: keepalive, boot-time retry, goaway, listing, health, OpenAPI."""

from __future__ import annotations

import asyncio

import httpx

from protocol.operations import CATALOGUE
from relay.server import drain
from tests.e2e.conftest import Credentials
from tests.support.connectors import ScriptedConnector
from tests.support.faults import FaultProxy
from tests.support.servers import RelayHandle, free_port, run_agent, serve_relay, wait_for


async def test_half_open_link_is_detected_by_keepalive(creds: Credentials) -> None:
    async with serve_relay(
        creds.database_url, ws_ping_interval_s=0.2, ws_ping_timeout_s=0.3
    ) as relay:
        proxy = await FaultProxy(relay.port).start()
        try:
            url = f"ws://127.0.0.1:{proxy.port}/v1/agent/connect"
            async with run_agent(
                url,
                creds.agent_token,
                ScriptedConnector(),
                ping_interval_s=0.2,
                ping_timeout_s=0.3,
            ) as agent:
                assert relay.state.hub.is_online("acme")
                proxy.blackholed = True
                await wait_for(
                    lambda: not relay.state.hub.is_online("acme"),
                    timeout=5,
                    what="the relay to drop the silent agent",
                )
                await wait_for(
                    lambda: not agent.status.connected,
                    timeout=5,
                    what="the agent to notice the dead relay",
                )
                proxy.blackholed = False
                await wait_for(
                    lambda: relay.state.hub.is_online("acme"),
                    timeout=10,
                    what="the agent to reconnect after the network heals",
                )
        finally:
            await proxy.stop()


async def test_agent_started_before_the_relay_connects_when_it_comes_up(
    creds: Credentials,
) -> None:
    port = free_port()
    url = f"ws://127.0.0.1:{port}/v1/agent/connect"
    async with run_agent(url, creds.agent_token, ScriptedConnector(), wait=False) as agent:
        await wait_for(lambda: agent.status.last_error != "", what="a first failed connect")
        assert "refused" in agent.status.last_error
        async with serve_relay(creds.database_url, port=port) as relay:
            await wait_for(
                lambda: relay.state.hub.is_online("acme"), timeout=10, what="the agent to connect"
            )


async def test_goaway_makes_the_agent_reconnect_at_once(
    relay: RelayHandle, creds: Credentials
) -> None:
    async with run_agent(
        relay.ws_url, creds.agent_token, ScriptedConnector(), base_s=30.0, cap_s=30.0
    ) as agent:
        (link,) = relay.state.hub.links("acme")
        await link.send(link.session.goaway("test"))
        # with a 30 s backoff, only the goaway rule can bring it back this fast
        await wait_for(
            lambda: (
                agent.connections == 1
                and agent.status.connected
                # the relay may see the new connection before it has dropped the old one
                and [other.session_id for other in relay.state.hub.links("acme")]
                == [agent.status.links[0].session_id]
            ),
            timeout=5,
            what="an immediate reconnect",
        )
        assert agent.status.links[0].session_id != link.session_id


async def test_drain_sends_goaway_and_waits_for_calls(
    relay: RelayHandle, creds: Credentials, client: httpx.AsyncClient
) -> None:
    connector = ScriptedConnector(delay_s=0.5)
    async with run_agent(relay.ws_url, creds.agent_token, connector):
        call = asyncio.create_task(client.post("/v1/agents/acme/calls/ping", json={}))
        await wait_for(connector.started.is_set, what="the call to start")
        await drain(relay.state)
        response = await call
        assert response.status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        relay.state.draining = False


async def test_agent_listing_shows_connections(
    relay: RelayHandle, creds: Credentials, client: httpx.AsyncClient
) -> None:
    async with run_agent(relay.ws_url, creds.agent_token, ScriptedConnector(label="ERP X")):
        listing = (await client.get("/v1/agents")).json()["items"]
        one = (await client.get("/v1/agents/acme")).json()
    by_name = {agent["name"]: agent for agent in listing}
    assert by_name["acme"]["online"] is True
    assert by_name["other"]["online"] is False
    assert one["erp"] == "Scripted ERP ERP X"
    assert one["connections"][0]["remote_address"].startswith("127.0.0.1:")
    assert "ping" in one["operations"]
    after = (await client.get("/v1/agents/acme")).json()
    assert after["online"] is False
    assert after["last_seen"] is not None
    assert after["agent_version"]


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["store"] == "ok"


async def test_openapi_documents_every_operation(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    for name, operation in CATALOGUE.items():
        path = spec["paths"][f"/v1/agents/{{agent}}/calls/{name}"]["post"]
        request = path["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        response = path["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        assert request.rsplit("/", 1)[1] in schemas
        assert response.rsplit("/", 1)[1] in schemas
        assert "application/problem+json" in path["responses"]["422"]["content"]
        assert operation.summary == path["summary"]
    docs = await client.get("/docs")
    assert docs.status_code == 200


async def test_unknown_route_is_a_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "route_not_found"


async def test_calls_are_spread_over_the_connections_of_one_agent(
    relay: RelayHandle, creds: Credentials
) -> None:
    """Two agent processes serve one site: concurrent calls go to the connection with the
    fewest in flight, so both take a share instead of one queueing everything."""
    first, second = ScriptedConnector(delay_s=0.3), ScriptedConnector(delay_s=0.3)
    async with (
        run_agent(relay.ws_url, creds.agent_token, first),
        run_agent(relay.ws_url, creds.agent_token, second),
        httpx.AsyncClient(
            base_url=relay.base_url, headers={"Authorization": f"Bearer {creds.api_key}"}
        ) as http,
    ):
        await wait_for(lambda: len(relay.state.hub.links("acme")) == 2, what="two connections")
        answers = await asyncio.gather(
            *(http.post("/v1/agents/acme/calls/ping", json={}) for _ in range(8))
        )
        assert [a.status_code for a in answers] == [200] * 8
        assert len(first.calls) == len(second.calls) == 4
