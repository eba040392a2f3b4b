"""``erp-agent status`` and the local status page, against a real agent process."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from agent.settings import StatusOptions
from tests.runtime.conftest import Office, Relay, connected, crm
from tests.support.fleet import eventually
from tests.support.servers import free_port, wait_for


async def test_status_command_and_page_follow_the_agent(relay: Relay, office: Office) -> None:
    port = free_port()
    office.write_config(status_options=[f'listen = "127.0.0.1:{port}"'])
    never = await asyncio.to_thread(office.status_command)
    assert never.returncode == 3, never
    assert "not running" in never.stderr

    office.agent.start()
    await connected(relay, office)
    running = await eventually(
        lambda: asyncio.to_thread(office.status_command),
        lambda answer: answer.returncode == 0,
        "erp-agent status to see the connection",
    )
    assert "link 0: connected to ws://127.0.0.1" in running.stdout, running.stdout
    assert f"token {relay.token_id}" in running.stdout

    async with crm(relay) as client:
        search = await client.post(
            "/v1/agents/acme/calls/customers.search", json={"query": "Kowalski-Secret"}
        )
    assert search.status_code == 200, search.text
    after = await eventually(
        lambda: asyncio.to_thread(office.status_command, "--json"),
        lambda answer: json.loads(answer.stdout)["calls"],
        "the call to show in the status",
    )
    data = json.loads(after.stdout)
    assert data["calls"][0]["operation"] == "customers.search"
    assert data["calls"][0]["code"] == "ok"
    assert "Kowalski-Secret" not in after.stdout  # never arguments
    assert relay.token not in after.stdout

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as page:
        served = await page.get("/status.json")
        assert served.status_code == 200
        assert served.json()["links"][0]["connected"] is True
        html = await page.get("/")
        assert html.status_code == 200
        assert html.headers["content-type"].startswith("text/html")
        assert "customers.search" in html.text and "<script" not in html.text
        rebound = await page.get("/status.json", headers={"Host": "evil.example:80"})
        assert rebound.status_code == 421
        assert (await page.post("/status.json")).status_code == 405
        assert (await page.get("/nothing")).status_code == 404

    office.agent.kill()
    dead = await asyncio.to_thread(office.status_command)
    assert dead.returncode == 3, dead
    assert "not running" in dead.stderr
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(timeout=5) as page:
            await page.get(f"http://127.0.0.1:{port}/status.json")


async def test_a_clean_stop_is_written(relay: Relay, office: Office) -> None:
    office.agent.start()
    await connected(relay, office)
    office.agent.terminate()
    await wait_for(lambda: not office.agent.alive, timeout=30, what="the agent to stop")
    assert office.status()["state"] == "stopped"
    stopped = await asyncio.to_thread(office.status_command)
    assert stopped.returncode == 3
    assert "the agent stopped at" in stopped.stderr


def test_the_page_listens_on_loopback_unless_forced() -> None:
    with pytest.raises(ValueError, match="not a loopback address"):
        StatusOptions(listen="0.0.0.0:8765")
    with pytest.raises(ValueError, match="host:port"):
        StatusOptions(listen="8765")
    assert StatusOptions(listen="[::1]:8765").listen == "[::1]:8765"
    assert StatusOptions(listen="0.0.0.0:8765", allow_remote=True).allow_remote
