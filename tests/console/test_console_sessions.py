"""Operators' sign-in over HTTP: the cookie, CSRF, expiry, sign-out, and who may call what."""

from __future__ import annotations

import asyncio

import httpx

from relay.store.console import ConsoleStore
from tests.console.conftest import PASSWORD, Seed, Session, bearer, sign_in
from tests.support.servers import RelayHandle, serve_relay


async def test_sign_in_sets_a_hardened_cookie(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/admin/session", json={"username": "ala", "password": PASSWORD})
    assert response.status_code == 200
    body = response.json()
    assert body["operator"] == {"username": "ala", "role": "admin"}
    assert body["csrf_token"] and body["expires_at"]
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("erp_relay_session=")
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite=strict", "path=/"} <= flags


async def test_session_round_trip_and_sign_out(http: httpx.AsyncClient, admin: Session) -> None:
    current = await http.get("/v1/admin/session", headers=admin.headers(None))
    assert current.status_code == 200
    assert current.json()["csrf_token"] == admin.csrf
    assert (await http.get("/v1/admin/audit", headers=admin.headers(None))).status_code == 200

    refused = await http.delete("/v1/admin/session", headers=admin.headers(None))
    assert refused.status_code == 403 and refused.json()["code"] == "csrf_failed"
    out = await http.delete("/v1/admin/session", headers=admin.headers())
    assert out.status_code == 204
    assert "erp_relay_session=" in out.headers["set-cookie"]
    assert "max-age=0" in out.headers["set-cookie"].lower()
    gone = await http.get("/v1/admin/session", headers=admin.headers(None))
    assert gone.status_code == 401 and gone.json()["code"] == "unauthorized"


async def test_wrong_password_and_unknown_user_look_the_same(http: httpx.AsyncClient) -> None:
    answers = []
    for username, password in (("ala", "not the password"), ("nobody", PASSWORD)):
        response = await http.post(
            "/v1/admin/session", json={"username": username, "password": password}
        )
        assert response.status_code == 401
        assert "set-cookie" not in response.headers
        body = response.json()
        answers.append((body["code"], body["detail"]))
    assert answers[0] == answers[1] == ("unauthorized", "wrong username or password")


async def test_repeated_failures_are_slowed_down(http: httpx.AsyncClient) -> None:
    for _ in range(5):
        await http.post("/v1/admin/session", json={"username": "ala", "password": "guess guess"})
    response = await http.post("/v1/admin/session", json={"username": "ala", "password": PASSWORD})
    assert response.status_code == 429
    assert response.json()["code"] == "too_many_attempts"
    assert int(response.headers["retry-after"]) > 0


async def test_csrf_is_required_on_cookie_actions(http: httpx.AsyncClient, admin: Session) -> None:
    body = {"name": "acme-2"}
    missing = await http.post("/v1/admin/agents", json=body, headers=admin.headers(None))
    assert missing.status_code == 403 and missing.json()["code"] == "csrf_failed"
    wrong = await http.post("/v1/admin/agents", json=body, headers=admin.headers("x" * 43))
    assert wrong.status_code == 403 and wrong.json()["code"] == "csrf_failed"
    other = await sign_in(http, "ala")  # another session's token is wrong for this one
    mixed = await http.post("/v1/admin/agents", json=body, headers=admin.headers(other.csrf))
    assert mixed.status_code == 403
    ok = await http.post("/v1/admin/agents", json=body, headers=admin.headers())
    assert ok.status_code == 201, ok.text


async def test_bearer_needs_no_csrf_and_crm_keys_are_forbidden(
    http: httpx.AsyncClient, seed: Seed
) -> None:
    created = await http.post(
        "/v1/admin/agents", json={"name": "scripted"}, headers=bearer(seed.admin_key)
    )
    assert created.status_code == 201
    for method, path in (("GET", "/v1/admin/audit"), ("POST", "/v1/admin/agents")):
        response = await http.request(
            method, path, json={"name": "nope"}, headers=bearer(seed.crm_key)
        )
        assert response.status_code == 403, (method, path)
        assert response.json()["code"] == "forbidden"
    anonymous = await http.get("/v1/admin/audit")
    assert anonymous.status_code == 401


async def test_sessions_expire_when_idle(seed: Seed) -> None:
    async with (
        serve_relay(seed.database_url, session_idle_s=0.5) as relay,
        httpx.AsyncClient(base_url=relay.base_url) as http,
    ):
        session = await sign_in(http, "viv")
        await asyncio.sleep(0.8)  # the idle limit itself is what is tested
        expired = await http.get("/v1/admin/audit", headers=session.headers(None))
        assert expired.status_code == 401 and expired.json()["code"] == "session_expired"


async def test_sessions_expire_at_the_absolute_limit(seed: Seed) -> None:
    async with (
        serve_relay(seed.database_url, session_max_s=1.0) as relay,
        httpx.AsyncClient(base_url=relay.base_url) as http,
    ):
        session = await sign_in(http, "viv")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3
        codes = []
        while loop.time() < deadline:  # busy all along: only the absolute limit ends it
            response = await http.get("/v1/admin/audit", headers=session.headers(None))
            codes.append(response.status_code)
            if response.status_code != 200:
                assert response.json()["code"] == "session_expired"
                break
            await asyncio.sleep(0.1)
        assert codes[0] == 200 and codes[-1] == 401


async def test_disabled_operator_loses_the_session(
    http: httpx.AsyncClient, relay: RelayHandle, viewer: Session
) -> None:
    console = relay.state.console
    assert isinstance(console, ConsoleStore)
    await console.disable_operator("viv")
    response = await http.get("/v1/admin/audit", headers=viewer.headers(None))
    assert response.status_code == 401
