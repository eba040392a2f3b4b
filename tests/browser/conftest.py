"""Browser tests of the dashboard: the distribution's Chromium, a real relay, real agents.

Chromium is `/usr/bin/chromium` (`.ci/run` installs it); Playwright's own browser download is
never used. Without it the tests skip locally and fail under ``CI=true``
(`tests.support.required`). One relay process serves the whole module set: each test makes
its own agents, so tests cannot see each other's state, and the relay starts once.

Screenshots go to ``test-artifacts/screenshots/`` (git-ignored): the steps each test names,
and the page as it was when a test failed, whose path the failure report prints.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from tests.browser.helpers import Console, screenshot_path
from tests.support.relay_process import RelayProcess
from tests.support.required import unavailable
from tests.support.servers import free_port

CHROMIUM = Path(os.environ.get("ERP_RELAY_TEST_CHROMIUM", "/usr/bin/chromium"))
EXPECT_TIMEOUT_MS = 15_000
"""How long a UI assertion waits: the dashboard polls every 5 s, events arrive in < 1 s."""


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Per module, not per session: Playwright's sync API runs an event loop in this thread
    while it is open, and every asyncio test collected after tests/browser would then fail
    to start its own."""
    if not CHROMIUM.exists():
        unavailable(f"Chromium not found at {CHROMIUM} (.ci/run installs it)")
    with sync_playwright() as driver:
        expect.set_options(timeout=EXPECT_TIMEOUT_MS)
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    # The sandbox needs user namespaces a container running as root does not have.
    args = ["--disable-dev-shm-usage", "--disable-gpu"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--no-sandbox")
    try:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
    except Exception as exc:  # any launch failure means "no usable Chromium"
        unavailable(f"Chromium at {CHROMIUM} does not start: {exc}")
    yield browser
    browser.close()


@pytest.fixture(scope="session")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    work = tmp_path_factory.mktemp("console")
    relay = RelayProcess(
        f"sqlite:///{work / 'relay.sqlite'}",
        free_port(),
        work / "relay.log",
        # A revoked API key or token is refused at once, not after the cache's 5 s.
        auth_cache_ttl_s="0",
    )
    the_console = Console(relay, work)
    the_console.cli("db", "upgrade")
    relay.start()
    try:
        yield the_console
    finally:
        for agent in the_console.agents:
            agent.stop()
        relay.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On a failure, save what the page showed and name the file in the report."""
    report = yield
    page = item.funcargs.get("page") if isinstance(item, pytest.Function) else None
    if report.failed and report.when == "call" and isinstance(page, Page) and not page.is_closed():
        path = screenshot_path(item.name, "failure")
        try:
            page.screenshot(path=str(path), full_page=True)
            report.sections.append(("screenshot", f"saved {path}"))
        except Exception as exc:  # a failed screenshot must not hide the failure
            report.sections.append(("screenshot", f"could not save one: {exc}"))
    return report


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh browser profile in English on a laptop-sized screen."""
    context = browser.new_context(locale="en-GB", viewport={"width": 1366, "height": 900})
    the_page = context.new_page()
    errors: list[str] = []
    the_page.on("pageerror", lambda error: errors.append(str(error)))
    yield the_page
    context.close()
    assert not errors, f"the dashboard threw: {errors}"


@pytest.fixture
def shot(page: Page, request: pytest.FixtureRequest) -> Callable[[str], Path]:
    """``shot("step")`` saves the page as a test artifact."""

    def take(step: str) -> Path:
        path = screenshot_path(request.node.name, step)
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
