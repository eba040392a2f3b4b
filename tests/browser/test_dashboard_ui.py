"""The dashboard's shell against a real relay: languages, a lost session, a phone's screen."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.helpers import PASSWORD, Console, sign_in

pytestmark = pytest.mark.slow

Shot = Callable[[str], Path]


def test_the_language_switch_translates_and_is_remembered(
    page: Page, console: Console, shot: Shot
) -> None:
    admin = console.operator("ewa", "admin")
    console.add_agent("polyglot")
    sign_in(page, console, admin)
    page.get_by_label("Language").select_option("pl")

    expect(page.get_by_role("heading", name="Agenci", level=1)).to_be_visible()
    expect(page.locator("html")).to_have_attribute("lang", "pl")
    expect(page.locator('tr[data-agent="polyglot"]')).to_contain_text("Offline")
    expect(page.get_by_role("button", name="Wyloguj")).to_be_visible()
    expect(page.locator("th").first).to_have_text("Agent")
    expect(page.get_by_role("columnheader", name="Połączenia")).to_be_visible()
    shot("polish")

    page.reload()
    expect(page.get_by_role("heading", name="Agenci", level=1)).to_be_visible()
    page.get_by_label("Język").select_option("en")
    expect(page.get_by_role("heading", name="Agents", level=1)).to_be_visible()


def test_the_first_visit_follows_the_browsers_language(browser: Browser, console: Console) -> None:
    context = browser.new_context(locale="pl-PL")
    try:
        page = context.new_page()
        page.goto(console.url)
        expect(page.get_by_role("heading", name="Logowanie")).to_be_visible()
        page.get_by_label("Nazwa użytkownika").fill("nobody")
        page.get_by_label("Hasło").fill(PASSWORD)
        page.get_by_role("button", name="Zaloguj").click()
        expect(page.get_by_role("alert")).to_have_text("Błędna nazwa użytkownika lub hasło.")
    finally:
        context.close()


def test_a_lost_session_leads_back_to_sign_in(page: Page, console: Console, shot: Shot) -> None:
    viewer = console.operator("filip", "viewer")
    sign_in(page, console, viewer)
    page.context.clear_cookies()
    # The next refresh (within 5 s) gets 401 and the page asks to sign in again.
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator(".notice")).to_have_text("Please sign in.")
    shot("signed-out")
    page.get_by_label("Username").fill(viewer)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Agents", level=1)).to_be_visible()


def test_tables_become_cards_on_a_phone(page: Page, console: Console, shot: Shot) -> None:
    viewer = console.operator("greta", "viewer")
    console.add_agent("pocket")
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, console, viewer)
    row = page.locator('tr[data-agent="pocket"]')
    expect(row).to_contain_text("Offline")
    assert row.evaluate("tr => getComputedStyle(tr).display") == "block"
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways ({width}px)"
    shot("phone")
