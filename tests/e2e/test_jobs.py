"""Durable jobs through real sockets: accepted offline, delivered on connect, in order, once."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Credentials
from tests.support.connectors import ScriptedConnector
from tests.support.hooks import hook_server
from tests.support.servers import RelayHandle, run_agent, serve_relay, wait_for

SIGNING_KEY = "test-relay-webhook-key"


def _client(relay: RelayHandle, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=relay.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


async def _wait_state(
    client: httpx.AsyncClient, location: str, states: set[str], timeout: float = 10.0
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        response = await client.get(location)
        assert response.status_code == 200
        body: dict[str, Any] = response.json()
        if body["state"] in states:
            return body
        if loop.time() > deadline:
            raise AssertionError(f"job stayed {body['state']}, wanted {states}")
        await asyncio.sleep(0.02)


async def test_job_accepted_offline_runs_when_the_agent_connects(
    relay: RelayHandle, creds: Credentials, client: httpx.AsyncClient
) -> None:
    response = await client.post("/v1/agents/acme/jobs/customers.get", json={"id": "7"})
    assert response.status_code == 202
    job = response.json()
    assert job["id"].startswith("job_") and job["state"] == "pending"
    assert response.headers["location"] == f"/v1/jobs/{job['id']}" == job["location"]
    lifetime = dt.datetime.fromisoformat(job["expires_at"]) - dt.datetime.fromisoformat(
        job["created_at"]
    )
    assert lifetime == dt.timedelta(hours=24), "the default time to live is 24 h"
    assert (await client.get(response.headers["location"])).json()["state"] == "pending"

    connector = ScriptedConnector(label="Acme ERP")
    async with run_agent(relay.ws_url, creds.agent_token, connector):
        done = await _wait_state(client, job["location"], {"succeeded", "failed"})
    assert done["state"] == "succeeded"
    assert done["result"] == {"id": "7", "symbol": "S", "name": "Acme ERP"} | {
        k: v for k, v in done["result"].items() if k not in ("id", "symbol", "name")
    }
    assert done["attempts"] == 1 and done["error"] is None
    assert done["started_at"] and done["finished_at"]
    assert connector.calls == ["customers.get"]

    listed = (await client.get("/v1/agents/acme/jobs")).json()["items"]
    assert [item["id"] for item in listed] == [job["id"]]
    assert (await client.get("/v1/agents/acme/jobs?state=pending")).json()["items"] == []


async def test_jobs_run_in_order_of_acceptance(
    relay: RelayHandle, creds: Credentials, client: httpx.AsyncClient
) -> None:
    locations = []
    for n in range(5):
        response = await client.post("/v1/agents/acme/jobs/customers.get", json={"id": str(n)})
        assert response.status_code == 202
        locations.append(response.headers["location"])
    async with run_agent(relay.ws_url, creds.agent_token, ScriptedConnector()):
        jobs = [await _wait_state(client, loc, {"succeeded"}) for loc in locations]
    assert [job["result"]["id"] for job in jobs] == ["0", "1", "2", "3", "4"]
    finished = [job["finished_at"] for job in jobs]
    started = [job["started_at"] for job in jobs]
    assert started == sorted(started)
    for earlier_end, later_start in zip(finished, started[1:], strict=False):
        assert earlier_end <= later_start, "one job at a time per agent"
    listed = (await client.get("/v1/agents/acme/jobs?limit=3")).json()["items"]
    assert [item["location"] for item in listed] == locations[:1:-1]


async def test_an_expired_job_is_never_delivered(
    relay: RelayHandle, creds: Credentials, client: httpx.AsyncClient
) -> None:
    short = await client.post("/v1/agents/acme/jobs/ping?ttl=0.2", json={})
    assert short.status_code == 202
    await asyncio.sleep(0.4)
    later = await client.post("/v1/agents/acme/jobs/customers.get", json={"id": "1"})
    connector = ScriptedConnector()
    async with run_agent(relay.ws_url, creds.agent_token, connector):
        await _wait_state(client, later.headers["location"], {"succeeded"})
    expired = (await client.get(short.headers["location"])).json()
    assert expired["state"] == "expired" and expired["attempts"] == 0
    assert expired["error"]["code"] == "job_expired"
    assert connector.calls == ["customers.get"]


async def test_cancel_pending_and_refuse_to_cancel_finished(
    relay: RelayHandle, creds: Credentials, client: httpx.AsyncClient
) -> None:
    doomed = await client.post("/v1/agents/acme/jobs/ping", json={})
    kept = await client.post("/v1/agents/acme/jobs/customers.get", json={"id": "2"})
    response = await client.delete(doomed.headers["location"])
    assert response.status_code == 200 and response.json()["state"] == "cancelled"
    connector = ScriptedConnector()
    async with run_agent(relay.ws_url, creds.agent_token, connector):
        await _wait_state(client, kept.headers["location"], {"succeeded"})
    assert connector.calls == ["customers.get"]
    refused = await client.delete(kept.headers["location"])
    assert refused.status_code == 409
    assert refused.json()["code"] == "job_not_cancellable"
    again = await client.delete(doomed.headers["location"])
    assert again.status_code == 409
    missing = await client.delete("/v1/jobs/job_nope")
    assert missing.status_code == 404 and missing.json()["code"] == "job_not_found"


async def test_an_erp_error_fails_the_job_with_its_code(
    relay: RelayHandle, creds: Credentials, client: httpx.AsyncClient
) -> None:
    response = await client.post("/v1/agents/acme/jobs/customers.get", json={"id": "broken"})
    async with run_agent(relay.ws_url, creds.agent_token, ScriptedConnector()):
        job = await _wait_state(client, response.headers["location"], {"failed"})
    assert job["error"]["code"] == "erp_error"
    assert "document locked" in job["error"]["message"]
    assert job["result"] is None


async def test_refusals(relay: RelayHandle, creds: Credentials, client: httpx.AsyncClient) -> None:
    unknown_op = await client.post("/v1/agents/acme/jobs/customers.delete_everything", json={})
    assert (unknown_op.status_code, unknown_op.json()["code"]) == (404, "unknown_operation")
    unknown_agent = await client.post("/v1/agents/nobody/jobs/ping", json={})
    assert (unknown_agent.status_code, unknown_agent.json()["code"]) == (404, "agent_not_found")
    invalid = await client.post("/v1/agents/acme/jobs/customers.get", json={"id": 5, "x": 1})
    assert invalid.status_code == 422 and invalid.json()["code"] == "invalid_arguments"
    assert invalid.json()["errors"]
    big = await client.post(
        "/v1/agents/acme/jobs/ping", content=b'{"x":"' + b"a" * (1024 * 1024) + b'"}'
    )
    assert big.status_code == 413
    bad_ttl = await client.post("/v1/agents/acme/jobs/ping?ttl=999999999", json={})
    assert bad_ttl.status_code == 400
    unauthenticated = await client.post(
        "/v1/agents/acme/jobs/ping", json={}, headers={"Authorization": "Bearer nope"}
    )
    assert unauthenticated.status_code == 401
    no_webhooks = await client.post(
        "/v1/agents/acme/jobs/ping", params={"webhook": "https://example.com/h"}, json={}
    )
    assert no_webhooks.status_code == 422
    assert no_webhooks.json()["code"] == "webhook_url_refused"

    async with _client(relay, creds.narrow_key) as narrow:
        forbidden = await narrow.post("/v1/agents/other/jobs/ping", json={})
        assert forbidden.status_code == 403
        forbidden_op = await narrow.post("/v1/agents/acme/jobs/ping", json={})
        assert forbidden_op.status_code == 403
        theirs = await client.post("/v1/agents/acme/jobs/customers.get", json={"id": "1"})
        hidden = await narrow.get(theirs.headers["location"])
        assert (hidden.status_code, hidden.json()["code"]) == (404, "job_not_found")
        assert (await narrow.delete(theirs.headers["location"])).status_code == 404
        assert (await narrow.get("/v1/agents/acme/jobs")).json()["items"] == []


async def test_jobs_survive_a_relay_restart(creds: Credentials) -> None:
    async with serve_relay(creds.database_url) as first, _client(first, creds.api_key) as client:
        response = await client.post("/v1/agents/acme/jobs/customers.get", json={"id": "restart"})
        assert response.status_code == 202
        location = response.headers["location"]
    connector = ScriptedConnector()
    async with serve_relay(creds.database_url) as second, _client(second, creds.api_key) as client:
        assert (await client.get(location)).json()["state"] == "pending"
        async with run_agent(second.ws_url, creds.agent_token, connector):
            job = await _wait_state(client, location, {"succeeded"})
            await asyncio.sleep(0.2)
    assert job["result"]["id"] == "restart"
    assert connector.calls == ["customers.get"], "delivered exactly once"


# Webhooks


async def test_webhook_is_delivered_signed(creds: Credentials) -> None:
    async with (
        hook_server() as hooks,
        serve_relay(
            creds.database_url, webhook_signing_key=SIGNING_KEY, webhook_allow_private=True
        ) as relay,
        _client(relay, creds.api_key) as client,
    ):
        url = f"http://127.0.0.1:{hooks.port}/erp/hook?src=relay"
        response = await client.post(
            "/v1/agents/acme/jobs/customers.get", params={"webhook": url}, json={"id": "9"}
        )
        assert response.status_code == 202
        assert response.json()["webhook"]["url"] == url
        async with run_agent(relay.ws_url, creds.agent_token, ScriptedConnector()):
            await wait_for(lambda: bool(hooks.received), what="the webhook")
        secret = (await client.get("/v1/webhooks/secret")).json()["secret"]
        (hook,) = hooks.received
        assert hook.method == "POST" and hook.path == "/erp/hook?src=relay"
        assert hook.headers["host"] == f"127.0.0.1:{hooks.port}"
        assert hook.headers["content-type"] == "application/json"

        # The receiver's check, as documented in docs/guarantees.md.
        import hashlib
        import hmac
        import json
        import time

        fields = dict(p.split("=", 1) for p in hook.headers["erp-relay-signature"].split(","))
        assert abs(time.time() - int(fields["t"])) < 60
        expected = hmac.new(
            secret.encode(), fields["t"].encode() + b"." + hook.body, hashlib.sha256
        ).hexdigest()
        assert hmac.compare_digest(expected, fields["v1"])
        payload = json.loads(hook.body)
        assert payload["id"] == response.json()["id"]
        assert payload["state"] == "succeeded" and payload["result"]["id"] == "9"

        async def delivered() -> dict[str, Any]:
            return (await client.get(response.headers["location"])).json()  # type: ignore[no-any-return]

        for _ in range(100):
            job = await delivered()
            if job["webhook"]["deliveries"][0]["state"] == "delivered":
                break
            await asyncio.sleep(0.02)
        (delivery,) = job["webhook"]["deliveries"]
        assert delivery["state"] == "delivered" and delivery["last_status"] == 204
        metrics = (await client.get("/metrics")).text
        assert 'erp_relay_webhook_attempts_total{outcome="delivered"} 1.0' in metrics


async def test_failed_webhook_attempts_stay_visible(creds: Credentials) -> None:
    async with (
        hook_server() as hooks,
        serve_relay(
            creds.database_url, webhook_signing_key=SIGNING_KEY, webhook_allow_private=True
        ) as relay,
        _client(relay, creds.api_key) as client,
    ):
        hooks.status = lambda n: 500
        url = f"http://127.0.0.1:{hooks.port}/hook"
        response = await client.post(
            "/v1/agents/acme/jobs/ping", params={"ttl": "0.1", "webhook": url}
        )
        assert response.status_code == 202
        await wait_for(lambda: bool(hooks.received), what="the webhook", timeout=15)
        for _ in range(100):
            job = (await client.get(response.headers["location"])).json()
            if job["webhook"]["deliveries"] and job["webhook"]["deliveries"][0]["attempts"]:
                break
            await asyncio.sleep(0.02)
        assert job["state"] == "expired"
        (delivery,) = job["webhook"]["deliveries"]
        assert delivery["state"] == "pending" and delivery["last_status"] == 500
        assert delivery["next_attempt_at"] and "500" in delivery["last_error"]
        metrics = (await client.get("/metrics")).text
        assert 'erp_relay_webhook_attempts_total{outcome="retry"} 1.0' in metrics


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.1/hook",
        "https://localhost/hook",
        "http://example.com/hook",
    ],
)
async def test_webhook_urls_to_private_addresses_are_refused(creds: Credentials, url: str) -> None:
    async with (
        serve_relay(creds.database_url, webhook_signing_key=SIGNING_KEY) as relay,
        _client(relay, creds.api_key) as client,
    ):
        response = await client.post("/v1/agents/acme/jobs/ping", params={"webhook": url}, json={})
        assert response.status_code == 422
        assert response.json()["code"] == "webhook_url_refused"
        assert (await client.get("/v1/agents/acme/jobs")).json()["items"] == []
