"""The dashboard against a real relay and real agent processes: what ops see when sites come
and go, when calls flow, and when an admin acts."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.helpers import Console, sign_in

pytestmark = pytest.mark.slow

Shot = Callable[[str], Path]


def test_agent_appears_online_and_goes_offline_when_killed(
    page: Page, console: Console, seeded_erp: Path, shot: Shot
) -> None:
    admin = console.operator("ala", "admin")
    token = console.add_agent("lifecycle")
    sign_in(page, console, admin)
    row = page.locator('tr[data-agent="lifecycle"]')
    expect(row).to_contain_text("Offline")
    expect(page.locator("#live")).to_have_text("Live")

    agent = console.start_agent("lifecycle", token, seeded_erp)
    # No reload: the live feed's agent.connected event refetches the overview.
    expect(row).to_contain_text("Online")
    expect(row.locator('[data-label="Version"]')).not_to_have_text("–")
    expect(page.locator("#announcer")).to_contain_text("lifecycle")
    shot("online")

    agent.kill()
    expect(row).to_contain_text("Offline")
    shot("offline")


def test_call_appears_in_recent_calls(
    page: Page, console: Console, seeded_erp: Path, shot: Shot
) -> None:
    admin = console.operator("bartek", "admin")
    token = console.add_agent("caller")
    key = console.add_key("crm-caller", "caller")
    console.start_agent("caller", token, seeded_erp)
    sign_in(page, console, admin)
    page.locator('tr[data-agent="caller"]').get_by_role("link", name="caller").click()
    expect(page.get_by_role("heading", name="caller", level=1)).to_be_visible()
    expect(page.locator(".head-badge")).to_contain_text("Online")

    answer = httpx.post(
        f"{console.relay.base_url}/v1/agents/caller/calls/customers.balance",
        json={"id": "1"},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text

    call = page.locator('section[aria-labelledby="calls-title"] tr[data-operation]').first
    expect(call).to_contain_text("customers.balance")
    expect(call.locator('[data-label="Caller"]')).to_have_text("crm-caller")
    expect(call.locator('[data-label="Status"]')).to_contain_text("200")
    expect(page.locator("svg.chart .p50 circle").first).to_be_attached()
    shot("recent-call")


def test_revoking_the_token_drops_the_agent(
    page: Page, console: Console, seeded_erp: Path, shot: Shot
) -> None:
    admin = console.operator("celina", "admin")
    token = console.add_agent("revokee")
    agent = console.start_agent("revokee", token, seeded_erp)
    sign_in(page, console, admin)
    page.goto(f"{console.url}#/agents/revokee")
    expect(page.locator(".head-badge")).to_contain_text("Online")
    links = page.locator('section[aria-labelledby="links-title"] tbody tr')
    expect(links).to_have_count(1)

    tokens = page.locator('section[aria-labelledby="tokens-title"]')
    tokens.get_by_role("button", name="Revoke").click()
    dialog = page.locator("dialog#confirm")
    expect(dialog).to_contain_text("Connections that use it are closed")
    shot("confirm")
    dialog.get_by_role("button", name="Revoke").click()

    expect(page.locator("#flash")).to_contain_text("revoked")
    expect(page.locator(".head-badge")).to_contain_text("Offline")
    expect(links).to_have_count(0)
    history = page.locator('section[aria-labelledby="history-title"]')
    expect(history).to_contain_text("Disconnected")
    expect(tokens.locator('[data-label="Revoked"]').first).not_to_have_text("active")
    shot("dropped")
    assert agent.alive, "a refused agent keeps retrying; it must not crash"


def test_viewer_sees_no_action_buttons(
    page: Page, console: Console, seeded_erp: Path, shot: Shot
) -> None:
    viewer = console.operator("wiktor", "viewer")
    token = console.add_agent("watched")
    console.start_agent("watched", token, seeded_erp)
    sign_in(page, console, viewer)
    expect(page.locator("#who")).to_contain_text("viewer")
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Audit log")).to_be_visible()
    expect(nav.get_by_role("link", name="New agent")).to_have_count(0)

    page.goto(f"{console.url}#/agents/watched")
    expect(page.locator(".head-badge")).to_contain_text("Online")
    expect(page.locator('section[aria-labelledby="tokens-title"] tbody tr')).to_have_count(1)
    expect(page.locator("main button")).to_have_count(0)
    shot("agent")

    page.goto(f"{console.url}#/api-keys")
    expect(page.get_by_role("heading", name="Keys", exact=True)).to_be_visible()
    expect(page.locator("main form")).to_have_count(0)
    expect(page.locator("main button")).to_have_count(0)

    # The server refuses too, with the session's own CSRF token.
    status = page.evaluate(
        """async () => {
            const session = await (await fetch("/v1/admin/session")).json();
            const answer = await fetch("/v1/admin/agents", {
                method: "POST",
                headers: {"Content-Type": "application/json", "X-CSRF-Token": session.csrf_token},
                body: JSON.stringify({name: "sneaky"}),
            });
            return answer.status;
        }"""
    )
    assert status == 403


def test_admin_creates_an_agent_and_an_api_key(
    page: Page, console: Console, seeded_erp: Path, shot: Shot
) -> None:
    admin = console.operator("dorota", "admin")
    sign_in(page, console, admin)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="New agent").click()
    page.get_by_label("Agent name").fill("fresh")
    page.get_by_role("button", name="Create agent").click()
    secret = page.locator("#secret-value")
    expect(secret).to_have_value(re.compile(r"^erpa_"))
    expect(page.locator(".secret-box")).to_contain_text("You will not see it again")
    shot("agent-token")

    console.start_agent("fresh", secret.input_value(), seeded_erp)
    page.get_by_role("link", name="Open agent fresh").click()
    expect(page.locator(".head-badge")).to_contain_text("Online")

    page.goto(f"{console.url}#/api-keys")
    page.get_by_label("Name", exact=True).fill("shop")
    page.get_by_label("Agents").fill("fresh")
    page.get_by_role("button", name="Create key").click()
    expect(page.locator("#secret-value")).to_have_value(re.compile(r"^erpk_"))
    row = page.locator("tbody tr", has_text="shop")
    expect(row).to_contain_text("fresh")
    shot("api-key")
    row.get_by_role("button", name="Revoke").click()
    page.locator("dialog#confirm").get_by_role("button", name="Revoke").click()
    expect(row.locator('[data-label="Revoked"]')).not_to_have_text("active")

    page.goto(f"{console.url}#/audit")
    entries = page.locator("main tbody tr")
    expect(entries.first).to_contain_text("api_key.revoke")
    expect(page.locator("main")).to_contain_text("agent.create")
    expect(page.get_by_role("link", name="Export CSV")).to_have_attribute(
        "href", "/v1/admin/audit/export?format=csv"
    )
    shot("audit")
