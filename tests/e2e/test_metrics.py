"""``GET /metrics`` through a real socket: what calls and connections leave in it, and the token."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import Credentials
from tests.support.connectors import ScriptedConnector
from tests.support.servers import run_agent, serve_relay, wait_for

METRICS_TOKEN = "metrics-token-for-tests"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(
    scrape: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return scrape.get((name, frozenset(labels.items())), 0.0)


async def test_calls_connections_and_latency_show_in_metrics(creds: Credentials) -> None:
    async with (
        serve_relay(creds.database_url) as relay,
        httpx.AsyncClient(base_url=relay.base_url, timeout=30) as http,
    ):
        crm = {"Authorization": f"Bearer {creds.api_key}"}
        async with run_agent(relay.ws_url, creds.agent_token, ScriptedConnector()):
            for _ in range(3):
                ok = await http.post(
                    "/v1/agents/acme/calls/customers.get", json={"id": "7"}, headers=crm
                )
                assert ok.status_code == 200
            offline = await http.post("/v1/agents/sleepy/calls/ping", json={}, headers=crm)
            assert offline.status_code == 503
            made_up = await http.post("/v1/agents/acme/calls/no.such.op", json={}, headers=crm)
            assert made_up.status_code == 404
            refused = await http.post("/v1/agents/acme/calls/ping", json={})
            assert refused.status_code == 401
            live = samples((await http.get("/metrics")).text)
        await wait_for(lambda: not relay.state.hub.is_online("acme"), what="the agent to leave")
        after = samples((await http.get("/metrics")).text)

    assert value(live, "erp_relay_agents_connected") == 1
    assert value(live, "erp_relay_agent_connections") == 1
    assert value(live, "erp_relay_agent_connections_opened_total") == 1
    get = {"operation": "customers.get"}
    assert value(live, "erp_relay_calls_total", **get, status="2xx", code="ok") == 3
    assert (
        value(live, "erp_relay_calls_total", operation="ping", status="5xx", code="agent_offline")
        == 1
    )
    assert (
        value(live, "erp_relay_calls_total", operation="ping", status="4xx", code="unauthorized")
        == 1
    )
    # a path's made-up operation name never becomes a label value of its own
    assert (
        value(
            live, "erp_relay_calls_total", operation="other", status="4xx", code="unknown_operation"
        )
        == 1
    )
    assert not any("no.such.op" in dict(labels).get("operation", "") for _, labels in live)
    for histogram in ("duration", "relay", "agent", "erp"):
        name = (
            f"erp_relay_call_{histogram}_seconds"
            if histogram != "duration"
            else "erp_relay_call_duration_seconds"
        )
        assert value(live, f"{name}_count", **get) == 3, name
        assert value(live, f"{name}_bucket", **get, le="+Inf") == 3, name
    assert value(live, "erp_relay_call_duration_seconds_sum", **get) > 0
    assert value(live, "erp_relay_jobs", state="pending") == 0
    assert (
        "erp_relay_info",
        frozenset({("version", relay.state.version), ("replica", relay.state.replica_id)}),
    ) in live

    assert value(after, "erp_relay_agents_connected") == 0
    assert value(after, "erp_relay_agent_connections_closed_total") == 1


async def test_metrics_token_is_required_when_set(creds: Credentials) -> None:
    async with (
        serve_relay(creds.database_url, metrics_token=METRICS_TOKEN) as relay,
        httpx.AsyncClient(base_url=relay.base_url, timeout=30) as http,
    ):
        missing = await http.get("/metrics")
        wrong = await http.get("/metrics", headers={"Authorization": "Bearer nope"})
        api_key = await http.get("/metrics", headers={"Authorization": f"Bearer {creds.api_key}"})
        right = await http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    for refused in (missing, wrong, api_key):
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "unauthorized"
    assert right.status_code == 200
    assert right.headers["content-type"].startswith("text/plain")
    assert "erp_relay_calls_total" in right.text or "# TYPE erp_relay_calls counter" in right.text
