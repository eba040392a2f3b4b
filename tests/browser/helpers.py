"""What the dashboard's browser tests share: the relay under test, its command line, agents,
signing in, and where screenshots go."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.support.agent_process import AgentProcess, write_agent_config
from tests.support.relay_process import RelayProcess

SCREENSHOTS = Path(__file__).parents[2] / "test-artifacts" / "screenshots"
BIN = Path(sys.executable).parent
PASSWORD = "correct horse battery staple"
"""Every test operator's password (long enough for the relay's minimum)."""


@dataclass
class Console:
    """The relay under test and the command line that administers it."""

    relay: RelayProcess
    work: Path
    agents: list[AgentProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"{self.relay.base_url}/dashboard/"

    def cli(self, *args: str, stdin: str | None = None) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ERP_RELAY_")}
        env["ERP_RELAY_DATABASE_URL"] = self.relay.database_url
        done = subprocess.run(
            [str(BIN / "erp-relay"), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"erp-relay {' '.join(args)}: {done.stderr}"
        return done.stdout.strip()

    def operator(self, username: str, role: str) -> str:
        """Create an operator with `PASSWORD`; return the username."""
        self.cli("operator", "create", username, "--role", role, "--password-stdin", stdin=PASSWORD)
        return username

    def add_agent(self, name: str) -> str:
        """Register an agent; return its token."""
        return self.cli("agents", "add", name)

    def add_key(self, name: str, agent: str) -> str:
        """A CRM API key for every operation of `agent`."""
        return self.cli("keys", "add", name, "--agent", agent, "--all-operations")

    def start_agent(self, name: str, token: str, erp_path: Path) -> AgentProcess:
        folder = self.work / name
        folder.mkdir()
        erp = folder / "erp.sqlite"
        shutil.copy(erp_path, erp)
        config = write_agent_config(
            folder / "agent.toml",
            relay_url=self.relay.ws_url,
            erp_path=erp,
            journal_path=folder / "journal.sqlite",
        )
        agent = AgentProcess(config, token, folder / "agent.log")
        agent.start()
        self.agents.append(agent)
        return agent


def screenshot_path(test: str, step: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^\w.-]+", "_", f"{test}-{step}")
    return SCREENSHOTS / f"{name}.png"


def sign_in(page: Page, console: Console, username: str) -> None:
    page.goto(console.url)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Agents", level=1)).to_be_visible()
