"""The agent in an office whose firewall lets only the proxy out: tinyproxy (HTTP CONNECT, with
and without Basic authentication) and microsocks (SOCKS5 with a password), real processes.

The agent runs in `office`, which cannot reach the relay; every connection that works here
went through the proxy, and every failure must say which machine to look at.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Credentials
from tests.egress.conftest import (
    PROXY_USER,
    agent_check,
    agent_config,
    no_proxy_environment,
    reach,
    wait_for_log,
)
from tests.support.agent_process import AgentProcess
from tests.support.netns import Office
from tests.support.proxies import free_port_on, microsocks, tinyproxy
from tests.support.servers import RelayHandle, wait_for

pytestmark = pytest.mark.slow


async def test_the_office_cannot_reach_the_relay_directly(
    office: Office, relay: RelayHandle, creds: Credentials, erp_path: Path, tmp_path: Path
) -> None:
    assert reach(office, "127.0.0.1", relay.port).returncode != 0
    assert reach(office, office.gateway, relay.port).returncode != 0
    config = agent_config(tmp_path, relay.ws_url, erp_path, ['proxy = "none"'])
    report = await agent_check(config, creds.agent_token, office)
    ok, detail = report.item("relay")
    assert not ok, report
    assert f"connection to {relay.ws_url} refused" in detail


async def test_calls_reach_the_erp_through_an_http_proxy_with_basic_auth(
    office: Office,
    relay: RelayHandle,
    creds: Credentials,
    client: httpx.AsyncClient,
    erp_path: Path,
    password_file: Path,
    tmp_path: Path,
) -> None:
    with tinyproxy(tmp_path, office.gateway, auth=PROXY_USER) as proxy:
        config = agent_config(
            tmp_path,
            relay.ws_url,
            erp_path,
            [
                f'proxy = "{proxy.url_for(PROXY_USER.user)}"',
                f"proxy_password_file = {str(password_file)!r}",
            ],
        )
        agent = AgentProcess(config, creds.agent_token, tmp_path / "agent.log", office.prefix)
        agent.start(**no_proxy_environment())
        try:
            await wait_for(
                lambda: relay.state.hub.is_online("acme") or not agent.alive,
                timeout=30,
                what="the agent to connect through the proxy",
            )
            assert agent.alive, agent.log()
            found = await client.post("/v1/agents/acme/calls/customers.search", json={"limit": 2})
            assert found.status_code == 200, found.text
            assert len(found.json()["items"]) == 2
            assert f"CONNECT 127.0.0.1:{relay.port}" in proxy.log()
            report = await agent_check(config, creds.agent_token, office)
        finally:
            agent.stop()
    ok, detail = report.item("relay")
    assert ok, report
    assert f"through proxy http://{PROXY_USER.user}:***@{office.gateway}:{proxy.port}" in detail
    assert PROXY_USER.password not in agent.log() + str(report)


async def test_an_http_proxy_without_auth(
    office: Office, relay: RelayHandle, creds: Credentials, erp_path: Path, tmp_path: Path
) -> None:
    with tinyproxy(tmp_path, office.gateway) as proxy:
        config = agent_config(tmp_path, relay.ws_url, erp_path, [f'proxy = "{proxy.url}"'])
        report = await agent_check(config, creds.agent_token, office)
    ok, detail = report.item("relay")
    assert ok, report
    assert f"through proxy {proxy.url}" in detail


async def test_a_wrong_proxy_password_is_named_and_retried_never_bypassed(
    office: Office, relay: RelayHandle, creds: Credentials, erp_path: Path, tmp_path: Path
) -> None:
    wrong = "not-the-password"
    with tinyproxy(tmp_path, office.gateway, auth=PROXY_USER) as proxy:
        config = agent_config(
            tmp_path, relay.ws_url, erp_path, [f'proxy = "{proxy.url_for(PROXY_USER.user)}"']
        )
        agent = AgentProcess(config, creds.agent_token, tmp_path / "agent.log", office.prefix)
        agent.start(**no_proxy_environment(ERP_AGENT_PROXY_PASSWORD=wrong))
        try:
            log = await wait_for_log(agent.log, "rejected the user name or password", times=3)
            assert agent.alive, log
            assert not relay.state.hub.is_online("acme")
        finally:
            agent.stop()
        report = await agent_check(
            config, creds.agent_token, office, ERP_AGENT_PROXY_PASSWORD=wrong
        )
    ok, detail = report.item("relay")
    assert not ok, report
    assert detail.startswith(
        f"proxy http://{PROXY_USER.user}:***@{office.gateway}:{proxy.port} rejected the user "
        "name or password"
    ), detail
    assert "ERP_AGENT_PROXY_PASSWORD" in detail
    assert wrong not in agent.log() + str(report)


async def test_a_proxy_that_needs_credentials_says_so(
    office: Office, relay: RelayHandle, creds: Credentials, erp_path: Path, tmp_path: Path
) -> None:
    with tinyproxy(tmp_path, office.gateway, auth=PROXY_USER) as proxy:
        config = agent_config(tmp_path, relay.ws_url, erp_path, [f'proxy = "{proxy.url}"'])
        report = await agent_check(config, creds.agent_token, office)
    ok, detail = report.item("relay")
    assert not ok, report
    assert f"proxy {proxy.url} requires a user name and password (407)" in detail


async def test_a_proxy_that_refuses_the_connection(
    office: Office, relay: RelayHandle, creds: Credentials, erp_path: Path, tmp_path: Path
) -> None:
    nobody = f"http://{office.gateway}:{free_port_on(office.gateway)}"
    config = agent_config(tmp_path, relay.ws_url, erp_path, [f'proxy = "{nobody}"'])
    report = await agent_check(config, creds.agent_token, office)
    ok, detail = report.item("relay")
    assert not ok, report
    assert detail.startswith(f"proxy {nobody} refused the connection"), detail


async def test_a_proxy_whose_policy_forbids_the_relay(
    office: Office, relay: RelayHandle, creds: Credentials, erp_path: Path, tmp_path: Path
) -> None:
    with tinyproxy(tmp_path, office.gateway, connect_ports=[443]) as proxy:
        config = agent_config(tmp_path, relay.ws_url, erp_path, [f'proxy = "{proxy.url}"'])
        report = await agent_check(config, creds.agent_token, office)
    ok, detail = report.item("relay")
    assert not ok, report
    assert f"does not allow connections to 127.0.0.1:{relay.port} (403)" in detail


async def test_a_relay_name_the_proxy_cannot_resolve(
    office: Office, relay: RelayHandle, creds: Credentials, erp_path: Path, tmp_path: Path
) -> None:
    url = f"ws://relay.invalid:{relay.port}/v1/agent/connect"
    with tinyproxy(tmp_path, office.gateway) as proxy:
        config = agent_config(tmp_path, url, erp_path, [f'proxy = "{proxy.url}"'])
        report = await agent_check(config, creds.agent_token, office)
    ok, detail = report.item("relay")
    assert not ok, report
    assert f"could not reach relay.invalid:{relay.port} (HTTP 500)" in detail


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "https_proxy", "ALL_PROXY"])
async def test_the_proxy_from_the_environment(
    office: Office,
    relay: RelayHandle,
    creds: Credentials,
    erp_path: Path,
    tmp_path: Path,
    variable: str,
) -> None:
    with tinyproxy(tmp_path, office.gateway) as proxy:
        config = agent_config(tmp_path, relay.ws_url, erp_path)
        # a bare host:port, as office admins write it, is an HTTP proxy
        address = f"{office.gateway}:{proxy.port}"
        env = {variable: address, "NO_PROXY": "example.com,.corp.local"}
        through = await agent_check(config, creds.agent_token, office, **env)
        bypassed = await agent_check(
            config, creds.agent_token, office, **{**env, "NO_PROXY": "example.com,127.0.0.0/8"}
        )
        disabled = agent_config(tmp_path, relay.ws_url, erp_path, ['proxy = "none"'])
        ignored = await agent_check(disabled, creds.agent_token, office, **env)
    ok, detail = through.item("relay")
    assert ok, through
    assert f"through proxy http://{address}" in detail
    for direct in (bypassed, ignored):
        ok, detail = direct.item("relay")
        assert not ok, direct
        assert f"connection to {relay.ws_url} refused" in detail


async def test_calls_through_a_socks5_proxy_with_a_password(
    office: Office,
    relay: RelayHandle,
    creds: Credentials,
    client: httpx.AsyncClient,
    erp_path: Path,
    password_file: Path,
    tmp_path: Path,
) -> None:
    with microsocks(tmp_path, office.gateway, PROXY_USER) as proxy:
        user_url = proxy.url_for(PROXY_USER.user).replace("socks5://", "socks5h://")
        config = agent_config(
            tmp_path,
            relay.ws_url,
            erp_path,
            [f'proxy = "{user_url}"', f"proxy_password_file = {str(password_file)!r}"],
        )
        agent = AgentProcess(config, creds.agent_token, tmp_path / "agent.log", office.prefix)
        agent.start(**no_proxy_environment())
        try:
            await wait_for(
                lambda: relay.state.hub.is_online("acme") or not agent.alive,
                timeout=30,
                what="the agent to connect through the SOCKS proxy",
            )
            assert agent.alive, agent.log()
            found = await client.post("/v1/agents/acme/calls/customers.search", json={"limit": 1})
            assert found.status_code == 200, found.text
        finally:
            agent.stop()
        wrong = await agent_check(
            config, creds.agent_token, office, ERP_AGENT_PROXY_PASSWORD="wrong-password"
        )
        anonymous = agent_config(tmp_path, relay.ws_url, erp_path, [f'proxy = "{proxy.url}"'])
        missing = await agent_check(anonymous, creds.agent_token, office)
    ok, detail = wrong.item("relay")
    assert not ok, wrong
    assert "rejected the user name or password" in detail
    assert "wrong-password" not in str(wrong)
    ok, detail = missing.item("relay")
    assert not ok, missing
    assert f"SOCKS proxy {proxy.url} requires a user name and password" in detail
    assert PROXY_USER.password not in agent.log()
