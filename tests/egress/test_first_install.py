"""What ``erp-agent check`` tells an admin on a first install: a name that does not resolve
(the relay's or the proxy's), plain ``ws://`` without permission, a rejected token, a relay
that no longer speaks this agent's protocol version, and a clock far from the relay's."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from protocol.session import RelaySession
from protocol.version import SUBPROTOCOL
from tests.e2e.conftest import Credentials
from tests.egress.conftest import agent_check, agent_config, wait_for_log
from tests.support.agent_process import AgentProcess
from tests.support.servers import RelayHandle

pytestmark = pytest.mark.slow

SKEW_S = 120


async def test_a_relay_name_that_does_not_resolve(
    creds: Credentials, erp_path: Path, tmp_path: Path
) -> None:
    url = "wss://relay.invalid/v1/agent/connect"
    config = agent_config(tmp_path, url, erp_path, ['proxy = "none"'])
    report = await agent_check(config, creds.agent_token)
    ok, detail = report.item("relay")
    assert not ok, report
    assert detail.startswith(f"cannot resolve the relay's host name in {url} (DNS)"), detail


async def test_a_proxy_name_that_does_not_resolve(
    relay: RelayHandle, creds: Credentials, erp_path: Path, tmp_path: Path
) -> None:
    config = agent_config(
        tmp_path, relay.ws_url, erp_path, ['proxy = "http://user:Secr3t@proxy.invalid:3128"']
    )
    report = await agent_check(config, creds.agent_token)
    ok, detail = report.item("relay")
    assert not ok, report
    assert detail.startswith(
        "cannot resolve the proxy's host name in http://user:***@proxy.invalid:3128 (DNS)"
    ), detail
    assert "Secr3t" not in str(report)


async def test_plain_ws_is_refused_without_allow_insecure(
    relay: RelayHandle, creds: Credentials, tmp_path: Path
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(f'[relay]\nurl = "{relay.ws_url}"\n', encoding="utf-8")
    report = await agent_check(config, creds.agent_token)
    assert report.returncode == 1
    ok, detail = report.item("config")
    assert not ok, report
    assert f"relay URL {relay.ws_url} uses ws:// (no TLS)" in detail


async def test_a_rejected_token(relay: RelayHandle, erp_path: Path, tmp_path: Path) -> None:
    config = agent_config(tmp_path, relay.ws_url, erp_path, ['proxy = "none"'])
    report = await agent_check(config, "erp_agent_not-a-real-token")
    ok, detail = report.item("relay")
    assert not ok, report
    assert detail.startswith("the relay rejected the agent token (401)"), detail


async def test_a_bad_proxy_url_is_a_config_error_without_its_password(
    creds: Credentials, erp_path: Path, tmp_path: Path
) -> None:
    url = "wss://relay.example/v1/agent/connect"
    config = agent_config(tmp_path, url, erp_path, ['proxy = "ftp://user:Secr3t@proxy:21"'])
    report = await agent_check(config, creds.agent_token)
    assert not report.item("config")[0], report
    assert "proxy ftp://user:***@proxy:21: use http://host:port" in str(report)
    assert "Secr3t" not in str(report)


@pytest.fixture
async def skewed_relay() -> AsyncIterator[str]:
    """A relay built from the protocol package whose clock is `SKEW_S` ahead: it welcomes
    every agent and says nothing more."""

    async def welcome(ws: ServerConnection) -> None:
        session = RelaySession()
        session.receive(await ws.recv())
        await ws.send(session.welcome("skewed", "test", int((time.time() + SKEW_S) * 1000)))
        await ws.wait_closed()

    async with serve(welcome, "127.0.0.1", 0, subprotocols=[SUBPROTOCOL]) as server:  # type: ignore[list-item]
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/v1/agent/connect"


async def test_clock_skew_is_reported_with_its_fix(
    skewed_relay: str, creds: Credentials, erp_path: Path, tmp_path: Path
) -> None:
    config = agent_config(tmp_path, skewed_relay, erp_path, ['proxy = "none"'])
    report = await agent_check(config, creds.agent_token)
    assert report.returncode == 1
    assert report.item("relay")[0], report
    ok, detail = report.item("clock")
    assert not ok, report
    assert detail.startswith(f"this machine's clock is {SKEW_S} s behind the relay's"), detail
    assert "w32tm /resync" in detail
    agent = AgentProcess(config, creds.agent_token, tmp_path / "agent.log")
    agent.start()
    try:
        log = await wait_for_log(agent.log, "w32tm /resync")
    finally:
        agent.stop()
    warning = next(json.loads(line) for line in log.splitlines() if "w32tm" in line)
    assert warning["level"] == "warning", warning
    assert warning["msg"].startswith(f"this machine's clock is {SKEW_S} s behind"), warning


@pytest.fixture
async def newer_relay() -> AsyncIterator[str]:
    """A relay that has dropped this agent's protocol version: it refuses the upgrade with 426
    and a problem worded as the real relay words it (`protocol.version.refusal_reason`)."""
    problem = {
        "type": "about:blank",
        "title": "Bad request",
        "status": 426,
        "code": "bad_request",
        "detail": f"protocol version {SUBPROTOCOL} is not supported by this relay; "
        "supported: erp-relay.v2. Upgrade the agent.",
    }

    def refuse(connection: ServerConnection, _request: Request) -> Response:
        return connection.respond(426, json.dumps(problem))

    async def never(_ws: ServerConnection) -> None:
        raise AssertionError("the upgrade was refused")

    async with serve(never, "127.0.0.1", 0, process_request=refuse) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/v1/agent/connect"


async def test_a_protocol_version_the_relay_no_longer_speaks(
    newer_relay: str, creds: Credentials, erp_path: Path, tmp_path: Path
) -> None:
    config = agent_config(tmp_path, newer_relay, erp_path, ['proxy = "none"'])
    report = await agent_check(config, creds.agent_token)
    ok, detail = report.item("relay")
    assert not ok, report
    assert detail == (
        f"protocol version refused by the relay: protocol version {SUBPROTOCOL} is not "
        "supported by this relay; supported: erp-relay.v2. Upgrade the agent."
    ), detail
