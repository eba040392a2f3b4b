"""deploy/agent/erp-agent.service as systemd reads it: valid, hardened, restarting forever.

`systemd-analyze verify` and `systemd-analyze security --offline` work without systemd running
(this container has no systemd as PID 1); the binary the unit names must exist for verify, so
it checks a copy whose ExecStart points at this environment's erp-agent.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from agent.settings import load_settings
from tests.service.conftest import DEPLOY, UNIT
from tests.support.required import unavailable

INSTALLED_BIN = "/opt/erp-agent/bin/erp-agent"
CONFIG = "/etc/erp-agent/agent.toml"


def directives(text: str) -> dict[str, list[str]]:
    """``Key=value`` lines by key, in order (a key may repeat, as SystemCallFilter= does)."""
    found: dict[str, list[str]] = defaultdict(list)
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found[key.strip()].append(value.strip())
    return dict(found)


UNIT_DIRECTIVES = directives(UNIT.read_text(encoding="utf-8"))


def one(key: str) -> str:
    values = UNIT_DIRECTIVES.get(key, [])
    assert len(values) == 1, f"{key}= appears {len(values)} times in {UNIT.name}"
    return values[0]


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        unavailable("systemd-analyze is not installed (Debian package systemd)")
    return path


@pytest.fixture
def checkable_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart on this environment's erp-agent, under the same file name."""
    agent = Path(sys.executable).parent / "erp-agent"
    text = UNIT.read_text(encoding="utf-8")
    assert INSTALLED_BIN in text
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(INSTALLED_BIN, str(agent)), encoding="utf-8")
    return copy


def test_systemd_verify_finds_nothing_to_say(checkable_unit: Path) -> None:
    done = subprocess.run(
        [systemd_analyze(), "verify", "--man=no", str(checkable_unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # unknown keys and bad values are only warnings: any line at all is a mistake in the unit
    assert done.stderr.strip() == ""
    assert done.stdout.strip() == ""


def test_systemd_security_rates_the_unit_well_exposed_only_to_the_network(
    checkable_unit: Path,
) -> None:
    done = subprocess.run(
        [systemd_analyze(), "security", "--offline=true", "--json=short", str(checkable_unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    checks = {item["name"]: item for item in json.loads(done.stdout)}
    exposed = {name for name, item in checks.items() if item["exposure"] not in (None, "0.0")}
    # what an agent that talks to a relay and a database must keep, and two /proc and device
    # settings left at their defaults for ODBC drivers that read /proc or /dev (see the unit)
    allowed = {
        "RestrictAddressFamilies=~AF_(INET|INET6)",
        "RestrictAddressFamilies=~AF_UNIX",
        "PrivateNetwork=",
        "IPAddressDeny=",
        "RootDirectory=/RootImage=",
        "ProcSubset=",
        "DeviceAllow=",
    }
    assert exposed <= allowed, sorted(exposed - allowed)
    # the threshold is on a 0-100 scale: 20 is the "2.0" the report prints; the unit rates 1.1
    rated = subprocess.run(
        [systemd_analyze(), "security", "--offline=true", "--threshold=20", str(checkable_unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert rated.returncode == 0, rated.stdout[-2000:]


def test_the_unit_runs_the_agent_as_its_own_user_read_only_but_its_state() -> None:
    assert one("ExecStart") == f"{INSTALLED_BIN} run --config {CONFIG}"
    assert one("User") == "erp-agent"
    assert "DynamicUser" not in UNIT_DIRECTIVES  # the secrets in /etc belong to a real group
    assert one("StateDirectory") == "erp-agent"
    assert one("StateDirectoryMode") == "0700"
    assert one("ProtectSystem") == "strict"
    assert "ReadWritePaths" not in UNIT_DIRECTIVES  # nothing writable but the state directory
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices"):
        assert one(key) == "yes", key
    assert one("CapabilityBoundingSet") == ""
    assert one("RestrictAddressFamilies").split() == ["AF_INET", "AF_INET6", "AF_UNIX"]
    assert UNIT_DIRECTIVES["SystemCallFilter"][0] == "@system-service"
    sysusers = (DEPLOY / "erp-agent.sysusers.conf").read_text(encoding="utf-8")
    assert any(line.startswith("u erp-agent ") for line in sysusers.splitlines())


def test_the_unit_restarts_on_any_exit_forever_and_logs_to_the_journal() -> None:
    assert one("Restart") == "always"
    assert float(one("RestartSec")) > 0
    assert one("StartLimitIntervalSec") == "0"  # never gives up restarting
    assert one("ExecReload") == "/bin/kill -HUP $MAINPID"
    # stderr goes to the journal: neither redirected elsewhere nor given a log file
    assert "StandardOutput" not in UNIT_DIRECTIVES
    assert "StandardError" not in UNIT_DIRECTIVES
    assert "--log-file" not in one("ExecStart")


def test_the_example_config_is_a_valid_agent_config() -> None:
    settings = load_settings(DEPLOY / "agent.toml.example")
    assert settings.relay.url.startswith("wss://")
    assert settings.relay.token_file == Path("/etc/erp-agent/token")
    assert settings.connector["type"] == "demo"
    assert settings.log_file is None
    # the service's state directory, so that `erp-agent status` from a shell finds it too
    assert settings.agent.journal_file() == Path("/var/lib/erp-agent/journal.sqlite")
