"""One agent, several links (``[relay] connections``): each on its own relay replica, so that
losing a replica never leaves the site unreachable, even for a moment."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from click.testing import CliRunner

from agent.cli import main
from agent.supervisor import SPREAD_TRIES, Supervisor
from tests.e2e.conftest import Credentials
from tests.support.connectors import ScriptedConnector
from tests.support.faults import FaultProxy
from tests.support.servers import RelayHandle, run_agent, serve_relay, wait_for

PING = "/v1/agents/acme/calls/ping"


@contextlib.asynccontextmanager
async def crm(relay: RelayHandle, creds: Credentials) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=relay.base_url, headers={"Authorization": f"Bearer {creds.api_key}"}, timeout=30
    ) as http:
        yield http


def all_linked(agent: Supervisor) -> bool:
    return all(link.connected for link in agent.links)


def holds_one_link_each(agent: Supervisor, *relays: RelayHandle) -> bool:
    return all_linked(agent) and all(len(relay.state.hub.links("acme")) == 1 for relay in relays)


async def keep_calling(http: httpx.AsyncClient, until: asyncio.Event) -> list[int]:
    statuses = []
    while not until.is_set():
        statuses.append((await http.post(PING, json={})).status_code)
    return statuses


async def test_each_relay_holds_one_link_and_serves_alone_when_the_other_stops(
    creds: Credentials,
) -> None:
    async with (
        serve_relay(creds.database_url, replica_id="replica-a") as one,
        contextlib.AsyncExitStack() as two_running,
    ):
        two = await two_running.enter_async_context(
            serve_relay(creds.database_url, replica_id="replica-b")
        )
        async with (
            run_agent(
                [one.ws_url, two.ws_url], creds.agent_token, ScriptedConnector(), connections=2
            ) as agent,
            crm(one, creds) as http_one,
            crm(two, creds) as http_two,
        ):
            await wait_for(lambda: holds_one_link_each(agent, one, two), what="both links")
            (on_one,) = one.state.hub.links("acme")
            (on_two,) = two.state.hub.links("acme")
            assert (on_one.hello.slot, on_two.hello.slot) == (0, 1)
            assert on_one.hello.instance_id == on_two.hello.instance_id == agent.hello.instance_id
            assert [link.replica for link in agent.links] == ["replica-a", "replica-b"]
            for http in (http_one, http_two):
                assert len((await http.get("/v1/agents/acme")).json()["connections"]) == 1
                assert (await http.post(PING, json={})).status_code == 200

            stop_calling = asyncio.Event()
            calls = asyncio.create_task(keep_calling(http_one, stop_calling))
            await two_running.aclose()
            await wait_for(
                lambda: "refused" in agent.links[1].last_error,
                what="link 1 to fail to come back to the stopped relay",
            )
            stop_calling.set()
            statuses = await calls
            assert statuses and set(statuses) == {200}
            assert agent.links[0].connected and agent.links[0].connections == 0
            assert (await http_one.post(PING, json={})).status_code == 200
        await wait_for(lambda: not one.state.hub.is_online("acme"), what="the agent to leave")


async def test_a_link_placed_on_the_replica_of_another_moves(creds: Credentials) -> None:
    async with (
        serve_relay(creds.database_url, replica_id="replica-a") as one,
        serve_relay(creds.database_url, replica_id="replica-b") as two,
    ):
        # the load balancer sends the first two connections to relay one
        proxy = await FaultProxy.round_robin(one.port, one.port, two.port).start()
        try:
            async with run_agent(
                proxy.url, creds.agent_token, ScriptedConnector(), connections=2
            ) as agent:
                await wait_for(lambda: holds_one_link_each(agent, one, two), what="a move")
                assert proxy.placed == [one.port, one.port, two.port]
                assert {link.replica for link in agent.links} == {"replica-a", "replica-b"}
                assert agent.connections == 1
                assert "replica replica-a already holds link" in agent.status.last_error
        finally:
            await proxy.stop()


async def test_with_one_replica_up_both_links_stay_on_it(creds: Credentials) -> None:
    async with (
        serve_relay(creds.database_url, replica_id="replica-a") as one,
        crm(one, creds) as http,
        run_agent(one.ws_url, creds.agent_token, ScriptedConnector(), connections=2) as agent,
    ):
        await wait_for(
            lambda: agent.connections == SPREAD_TRIES and all_linked(agent),
            what="the moving link to give up and stay",
        )
        links = one.state.hub.links("acme")
        assert sorted(link.hello.slot for link in links) == [0, 1]
        assert (await http.post(PING, json={})).status_code == 200
        assert agent.connections == SPREAD_TRIES


async def test_check_reports_every_link(creds: Credentials, erp_path: Path, tmp_path: Path) -> None:
    async with (
        serve_relay(creds.database_url, replica_id="replica-a") as one,
        serve_relay(creds.database_url, replica_id="replica-b") as two,
    ):
        config = tmp_path / "agent.toml"
        config.write_text(
            f'[relay]\nurls = ["{one.ws_url}", "{two.ws_url}"]\nconnections = 2\n'
            f'allow_insecure = true\n[connector]\ntype = "demo"\npath = "{erp_path}"\n'
        )
        # in a thread: the command runs its own event loop, the relays need this one
        report = await asyncio.to_thread(
            CliRunner().invoke,
            main,
            ["check", "--config", str(config)],
            env={"ERP_AGENT_TOKEN": creds.agent_token},
        )
    assert report.exit_code == 0, report.output
    lines = [line.split(None, 4) for line in report.output.splitlines()]
    links = {line[3]: line[4] for line in lines if line[1:3] == ["relay", "link"]}
    assert links.keys() == {"0", "1"}, report.output
    assert links["0"].startswith(f"connected to {one.ws_url}, replica replica-a, session ")
    assert links["1"].startswith(f"connected to {two.ws_url}, replica replica-b, session ")
