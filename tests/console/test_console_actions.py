"""Admin actions over HTTP: each one works, is audited, and is refused to viewers and CRM keys."""

from __future__ import annotations

import asyncio
import csv
import io
from typing import Any

import httpx
import orjson
import pytest

from tests.console.conftest import Seed, Session, bearer
from tests.support.servers import serve_relay


async def _audit(http: httpx.AsyncClient, seed: Seed) -> list[dict[str, Any]]:
    response = await http.get("/v1/admin/audit", headers=bearer(seed.admin_key))
    assert response.status_code == 200
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


async def _action_routes(http: httpx.AsyncClient) -> list[tuple[str, str]]:
    """Every non-GET route under /v1/admin/ but sign-in/out, from the OpenAPI document (so a
    new action cannot be left out of this test, nor out of the document)."""
    paths = (await http.get("/openapi.json")).json()["paths"]
    names = {"name": "acme", "public_id": "abcdefghijkl", "session_id": "s1", "job_id": "job_x"}
    return sorted(
        (method.upper(), path.format(**names))
        for path, operations in paths.items()
        if path.startswith("/v1/admin/") and path != "/v1/admin/session"
        for method in operations
        if method not in ("get", "head")
    )


async def test_viewers_and_crm_keys_cannot_act(
    http: httpx.AsyncClient, viewer: Session, seed: Seed
) -> None:
    routes = await _action_routes(http)
    assert len(routes) == 9, routes
    for method, path in routes:
        for headers in (viewer.headers(), bearer(seed.crm_key)):
            response = await http.request(method, path, json={"name": "x"}, headers=headers)
            assert response.status_code == 403, (method, path, response.text)
            assert response.json()["code"] == "forbidden"
    assert await _audit(http, seed) == [], "nothing happened, so nothing is audited"


async def test_agent_and_token_actions_are_audited(
    http: httpx.AsyncClient, admin: Session, seed: Seed
) -> None:
    headers = admin.headers() | {"X-Request-ID": "req-create-1"}
    created = await http.post("/v1/admin/agents", json={"name": "shop-9"}, headers=headers)
    assert created.status_code == 201
    assert created.json()["name"] == "shop-9" and created.json()["token"].startswith("erpa_")
    again = await http.post("/v1/admin/agents", json={"name": "shop-9"}, headers=admin.headers())
    assert again.status_code == 409 and again.json()["code"] == "already_exists"
    bad = await http.post("/v1/admin/agents", json={"name": "Bad Name"}, headers=admin.headers())
    assert bad.status_code == 422

    token = await http.post("/v1/admin/agents/shop-9/tokens", json={}, headers=admin.headers())
    assert token.status_code == 201
    new_id = token.json()["public_id"]
    rotated = await http.post(
        "/v1/admin/agents/shop-9/tokens", json={"revoke_others": True}, headers=admin.headers()
    )
    assert rotated.status_code == 201
    revoked = await http.delete(
        f"/v1/admin/agents/shop-9/tokens/{rotated.json()['public_id']}", headers=admin.headers()
    )
    assert revoked.status_code == 204
    unknown = await http.delete(
        "/v1/admin/agents/shop-9/tokens/zzzzzzzzzzzz", headers=admin.headers()
    )
    assert unknown.status_code == 404 and unknown.json()["code"] == "token_not_found"
    link = await http.post("/v1/admin/agents/shop-9/links/abcd/disconnect", headers=admin.headers())
    assert link.status_code == 202
    gone = await http.delete("/v1/admin/agents/shop-9", headers=admin.headers())
    assert gone.status_code == 204
    missing = await http.delete("/v1/admin/agents/nope", headers=admin.headers())
    assert missing.status_code == 404 and missing.json()["code"] == "agent_not_found"

    entries = await _audit(http, seed)
    assert [e["action"] for e in reversed(entries)] == [
        "agent.create",
        "agent_token.create",
        "agent_token.create",
        "agent_token.revoke",
        "connection.disconnect",
        "agent.revoke",
    ]
    first = entries[-1]
    assert first["actor"] == "operator:ala" and first["target"] == "agent:shop-9"
    assert first["request_id"] == "req-create-1" and first["address"] == "127.0.0.1"
    rotation = entries[-3]["details"]
    assert rotation["revoke_others"] is True
    assert new_id in rotation["revoked"], "the rotation revoked the other live tokens"
    text = orjson.dumps(entries).decode()
    assert created.json()["token"] not in text and "erpa_" not in text, "no secret is audited"


async def test_api_key_actions(http: httpx.AsyncClient, seed: Seed) -> None:
    headers = bearer(seed.admin_key)
    body = {"name": "erp-sync", "agents": ["acme"], "operations": ["customers.*"], "admin": False}
    created = await http.post("/v1/admin/api-keys", json=body, headers=headers)
    assert created.status_code == 201
    public_id, key = created.json()["public_id"], created.json()["key"]
    listed = (await http.get("/v1/admin/api-keys", headers=headers)).json()["api_keys"]
    mine = next(k for k in listed if k["public_id"] == public_id)
    assert mine["agents"] == ["acme"] and mine["operations"] == ["customers.*"]
    assert mine["admin"] is False and mine["revoked_at"] is None
    assert "key" not in mine and not any("secret" in field for field in mine)

    assert (await http.get("/v1/agents", headers=bearer(key))).status_code == 200
    revoked = await http.delete(f"/v1/admin/api-keys/{public_id}", headers=headers)
    assert revoked.status_code == 204
    refused = await http.get("/v1/agents", headers=bearer(key))
    assert refused.status_code == 401, "this replica forgets the revoked key at once"
    unknown = await http.delete("/v1/admin/api-keys/zzzzzzzzzzzz", headers=headers)
    assert unknown.status_code == 404 and unknown.json()["code"] == "api_key_not_found"
    invalid = await http.post(
        "/v1/admin/api-keys", json={"name": "x", "operations": ["nope.op"]}, headers=headers
    )
    assert invalid.status_code == 422

    entries = await _audit(http, seed)
    assert [e["action"] for e in entries] == ["api_key.revoke", "api_key.create"]
    create = entries[1]
    assert create["actor"].startswith("api_key:") and create["target"] == f"api_key:{public_id}"
    assert create["details"] == {
        "name": "erp-sync",
        "agents": ["acme"],
        "operations": ["customers.*"],
        "admin": False,
    }


async def test_retry_and_cancel_jobs(seed: Seed) -> None:
    async with (
        serve_relay(seed.database_url, job_poll_interval_s=0.1) as relay,
        httpx.AsyncClient(base_url=relay.base_url) as http,
    ):
        crm, admin = bearer(seed.crm_key), bearer(seed.admin_key)
        url = "/v1/agents/acme/jobs/customers.get"
        pending = await http.post(url, json={"id": "K1"}, headers=crm)
        assert pending.status_code == 202, pending.text
        job_id = pending.json()["id"]
        refused = await http.post(f"/v1/admin/jobs/{job_id}/retry", headers=admin)
        assert refused.status_code == 409 and refused.json()["code"] == "job_not_retryable"
        cancelled = await http.post(f"/v1/admin/jobs/{job_id}/cancel", headers=admin)
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
        again = await http.post(f"/v1/admin/jobs/{job_id}/cancel", headers=admin)
        assert again.status_code == 409 and again.json()["code"] == "job_not_cancellable"

        short = await http.post(f"{url}?ttl=0.3", json={"id": "K1"}, headers=crm)
        short_id = short.json()["id"]

        async def expired() -> bool:
            response = await http.get(f"/v1/jobs/{short_id}", headers=crm)
            return bool(response.json()["state"] == "expired")

        async with asyncio.timeout(10):
            while not await expired():
                await asyncio.sleep(0.05)
        retried = await http.post(f"/v1/admin/jobs/{short_id}/retry", headers=admin)
        assert retried.status_code == 200 and retried.json()["state"] == "pending"
        assert retried.json()["attempts"] == 0
        missing = await http.post("/v1/admin/jobs/job_nope/retry", headers=admin)
        assert missing.status_code == 404

        entries = (await http.get("/v1/admin/audit", headers=admin)).json()["entries"]
        assert [(e["action"], e["target"]) for e in entries] == [
            ("job.retry", f"job:{short_id}"),
            ("job.cancel", f"job:{job_id}"),
        ]
        assert entries[0]["details"] == {"agent": "acme", "operation": "customers.get"}


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
async def test_audit_export(http: httpx.AsyncClient, seed: Seed, admin: Session, fmt: str) -> None:
    for name in ("=cmd|' /C calc'!A0", "plain"):
        await http.post("/v1/admin/api-keys", json={"name": name}, headers=bearer(seed.admin_key))
    response = await http.get(f"/v1/admin/audit/export?format={fmt}", headers=admin.headers(None))
    assert response.status_code == 200
    assert "attachment" in response.headers["content-disposition"]
    if fmt == "csv":
        assert response.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert [row["action"] for row in rows] == ["api_key.create"] * 2, "oldest first"
        assert orjson.loads(rows[0]["details"].lstrip("'"))["name"].startswith("=")
        assert not any(cell.startswith("=") for row in rows for cell in row.values())
    else:
        assert response.headers["content-type"].startswith("application/x-ndjson")
        lines = [orjson.loads(line) for line in response.text.splitlines()]
        assert [line["details"]["name"] for line in lines] == ["=cmd|' /C calc'!A0", "plain"]
    future = await http.get(
        "/v1/admin/audit/export?format=jsonl&since=2999-01-01T00:00:00Z",
        headers=admin.headers(None),
    )
    assert future.text == ""


async def test_openapi_documents_the_console(http: httpx.AsyncClient) -> None:
    document = (await http.get("/openapi.json")).json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["session"] == {
        "type": "apiKey",
        "in": "cookie",
        "name": "erp_relay_session",
        "description": schemes["session"]["description"],
    }
    paths = document["paths"]
    for path, method in (
        ("/v1/admin/agents", "post"),
        ("/v1/admin/api-keys", "get"),
        ("/v1/admin/audit/export", "get"),
        ("/v1/admin/jobs/{job_id}/retry", "post"),
        ("/v1/events", "get"),
    ):
        assert paths[path][method]["security"] == [{"apiKey": []}, {"session": []}], path
    assert "security" not in paths["/v1/admin/session"]["post"], "signing in needs nothing"
