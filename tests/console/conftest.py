"""Fixtures for the operations console: a live relay with operators, keys and agents, and a
client that signs in like the dashboard does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from relay.console.passwords import hash_password
from relay.store import Store
from relay.store.console import ConsoleStore
from relay.store.db import upgrade
from tests.support.servers import RelayHandle, serve_relay

PASSWORD = "correct horse battery"


@dataclass
class Seed:
    database_url: str
    agent_token: str
    admin_key: str
    crm_key: str
    """Granted agent ``acme`` only."""
    other_key: str
    """Granted agent ``other`` only."""


@dataclass
class Session:
    cookie: str
    csrf: str

    def headers(self, csrf: str | None = "") -> dict[str, str]:
        """The cookie, and the CSRF token (the right one for "", none for None)."""
        headers = {"Cookie": f"erp_relay_session={self.cookie}"}
        if csrf is not None:
            headers["X-CSRF-Token"] = csrf or self.csrf
        return headers


@pytest.fixture
async def seed(tmp_path: Path) -> Seed:
    url = f"sqlite+aiosqlite:///{tmp_path / 'relay.sqlite'}"
    await upgrade(url)
    store = await Store.open(url)
    try:
        acme = await store.create_agent("acme")
        await store.create_agent("other")
        admin = await store.create_api_key("ops-script", ["*"], ["*"], admin=True)
        crm = await store.create_api_key("crm", ["acme"], ["*"])
        other = await store.create_api_key("other-crm", ["other"], ["*"])
        console = ConsoleStore(store.engine)
        password_hash = hash_password(PASSWORD)
        await console.create_operator("ala", password_hash, "admin")
        await console.create_operator("viv", password_hash, "viewer")
    finally:
        await store.close()
    return Seed(url, acme.plaintext, admin.plaintext, crm.plaintext, other.plaintext)


@pytest.fixture
async def relay(seed: Seed) -> AsyncIterator[RelayHandle]:
    async with serve_relay(seed.database_url, event_poll_interval_s=0.1) as handle:
        yield handle


@pytest.fixture
async def http(relay: RelayHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=relay.base_url, timeout=30) as client:
        yield client


async def sign_in(http: httpx.AsyncClient, username: str) -> Session:
    response = await http.post(
        "/v1/admin/session", json={"username": username, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    cookie = response.cookies.get("erp_relay_session")
    assert cookie
    return Session(cookie, response.json()["csrf_token"])


@pytest.fixture
async def admin(http: httpx.AsyncClient) -> Session:
    return await sign_in(http, "ala")


@pytest.fixture
async def viewer(http: httpx.AsyncClient) -> Session:
    return await sign_in(http, "viv")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
