"""The console's read side through a real relay: agents report their health, the overview and
the agent page show state, connections and statistics, calls, errors, latency and jobs."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from pydantic import BaseModel

from agent.connectors.base import (
    CallContext,
    Connector,
    ConnectorInfo,
    ConnectorSession,
    ErpUnavailable,
    handles,
)
from protocol.operations.system import PingArgs, PingResult
from tests.e2e.conftest import Credentials
from tests.support.agent_process import AgentProcess, write_agent_config
from tests.support.fleet import (
    agent_page,
    client_of,
    create_admin_key,
    eventually,
    get_json,
    status_of,
    wait_state,
)
from tests.support.orders import order, plentiful_sku, write
from tests.support.servers import RelayHandle, run_agent, serve_relay


class SwitchableErp(Connector):
    """An ERP that can be unplugged: while `down` is set every ping fails as unreachable."""

    name: ClassVar[str] = "switchable"

    def __init__(self) -> None:
        self.down = threading.Event()

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> SwitchableErp:
        return cls()

    def info(self) -> ConnectorInfo:
        return ConnectorInfo(self.name, "Switchable ERP 1.0", SwitchableSession.operations())

    def open_session(self) -> ConnectorSession:
        return SwitchableSession(self)


class SwitchableSession(ConnectorSession):
    def __init__(self, erp: SwitchableErp) -> None:
        self.erp = erp

    @handles("ping")
    def ping(self, args: PingArgs, ctx: CallContext) -> BaseModel:
        if self.erp.down.is_set():
            raise ErpUnavailable("the ERP database cannot be reached")
        return PingResult(connector=self.erp.name, erp="Switchable ERP 1.0", agent_version="t")

    def close(self) -> None:
        pass


@pytest.fixture
async def admin_key(creds: Credentials) -> str:
    return await create_admin_key(creds.database_url)


@pytest.fixture
async def admin(relay: RelayHandle, admin_key: str) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(relay.base_url, admin_key) as http:
        yield http


async def test_health_round_trip_degraded_and_recovered(
    relay: RelayHandle, creds: Credentials, admin: httpx.AsyncClient
) -> None:
    erp = SwitchableErp()
    async with run_agent(relay.ws_url, creds.agent_token, erp, health_interval_s=0.2):
        online = await wait_state(admin, "online", "the agent online")
        assert online["degraded_reason"] is None
        assert online["connections"] == 1
        assert online["connector"] == "switchable"
        detail = await eventually(
            lambda: agent_page(admin),
            lambda page: page["links"][0]["rtt_ms"] is not None,
            "a measured round trip",
        )
        (link,) = detail["links"]
        assert link["erp"] == "ok"
        assert link["rtt_ms"] >= 0
        assert link["replica"] == relay.state.replica_id
        assert detail["rtt_ms"] == link["rtt_ms"]
        assert [t["revoked_at"] for t in detail["tokens"]] == [None]

        erp.down.set()
        degraded = await wait_state(admin, "degraded", "the ERP to be reported unreachable")
        assert degraded["degraded_reason"] == "erp_unreachable"
        assert (await agent_page(admin))["links"][0]["erp"] == "unreachable"

        erp.down.clear()
        await wait_state(admin, "online", "the ERP to be reported reachable again")

    events = relay.state.events
    assert events is not None

    async def kinds() -> list[str]:
        history = await events.history("acme", limit=50, before=None)
        return [
            e.kind for e in reversed(history) if e.kind in ("agent.degraded", "agent.recovered")
        ]

    seen = await eventually(kinds, lambda k: len(k) >= 2, "the events to be stored")
    assert seen == ["agent.degraded", "agent.recovered"]


async def test_overview_and_agent_page_with_a_real_agent_process(
    creds: Credentials, admin_key: str, erp_path: Path, erp: sqlite3.Connection, tmp_path: Path
) -> None:
    async with (
        serve_relay(creds.database_url, ws_ping_interval_s=0.5, ws_ping_timeout_s=0.5) as relay,
        client_of(relay.base_url, creds.api_key) as crm,
        client_of(relay.base_url, admin_key) as ops,
    ):
        before = await status_of(ops)
        assert before["state"] == "offline"
        assert before["calls_per_min"] == 0 and before["p50_ms"] is None
        # a CRM key is no operator
        assert (await crm.get("/v1/admin/overview")).status_code == 403

        config = write_agent_config(
            tmp_path / "agent.toml",
            relay_url=relay.ws_url,
            erp_path=erp_path,
            journal_path=tmp_path / "state" / "journal.sqlite",
        )
        agent = AgentProcess(config, creds.agent_token, tmp_path / "agent.log")
        agent.start(ERP_AGENT_AGENT__HEALTH_INTERVAL_S="0.5")
        try:
            online = await wait_state(ops, "online", "the agent process to show up")
            assert online["agent_version"] and online["erp"]
            assert online["remote_address"].startswith("127.0.0.1:")
            assert online["connected_since"] and online["last_seen_at"]

            for _ in range(5):
                assert (await crm.post("/v1/agents/acme/calls/ping", json={})).status_code == 200
            missing = await crm.post("/v1/agents/acme/calls/customers.get", json={"id": "999999"})
            assert missing.json()["code"] == "not_found"
            created = await write(crm, order("SHOP-FLEET-1", plentiful_sku(erp)), "fleet-1")
            assert created.status_code == 200, created.text
            number = created.json()["number"]
            job = await crm.post("/v1/agents/acme/jobs/ping", json={})
            assert job.status_code == 202

            status = await status_of(ops)
            assert status["calls_per_min"] > 0
            assert status["error_rate"] == 0  # not_found is the ERP's answer, no failure
            assert status["p50_ms"] > 0 and status["p99_ms"] >= status["p50_ms"]

            points = (await get_json(ops, "/v1/admin/agents/acme/latency?minutes=5"))["points"]
            assert sum(p["calls"] for p in points) == 7
            assert all(p["p50_ms"] is not None for p in points)

            # the call log is written in batches: wait for the one holding the last call
            logged = await eventually(
                lambda: get_json(ops, "/v1/admin/agents/acme/calls?limit=3"),
                lambda body: [c["operation"] for c in body["calls"][:1]] == ["orders.create"],
                "the calls logged",
            )
            calls: list[dict[str, Any]] = logged["calls"]
            assert [c["operation"] for c in calls] == ["orders.create", "customers.get", "ping"]
            assert calls[0]["document"] == number
            assert calls[0]["api_key_name"] == "crm"
            assert calls[1]["code"] == "not_found" and calls[1]["document"] is None
            older = await get_json(ops, f"/v1/admin/agents/acme/calls?before={calls[-1]['id']}")
            assert len(older["calls"]) == 4

            groups = (await get_json(ops, "/v1/admin/agents/acme/errors"))["errors"]
            assert [(g["code"], g["count"]) for g in groups] == [("not_found", 1)]

            jobs = (await get_json(ops, "/v1/admin/agents/acme/jobs"))["jobs"]
            assert [j["operation"] for j in jobs] == ["ping"]
            assert (await ops.get("/v1/admin/agents/acme/jobs?state=nope")).status_code == 400
            assert (await ops.get("/v1/admin/agents/nobody/calls")).status_code == 404

            agent.kill()
            offline = await wait_state(ops, "offline", "the killed agent to turn offline")
            assert offline["connections"] == 0
            assert offline["last_seen_at"] and offline["rtt_ms"] is None
        finally:
            agent.stop()
