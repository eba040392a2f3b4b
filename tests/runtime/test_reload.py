"""Config reload in a running agent process: on SIGHUP, and when the file changes.

A valid file is applied (what can be live, at once; the relay section by handing each
connection over); an invalid one changes nothing and says why; what needs a restart is named.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

import pytest

from tests.runtime.conftest import Office, Relay, connected, crm
from tests.support.fleet import eventually

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGHUP is POSIX only")


async def _status(office: Office, done: Any, what: str) -> dict[str, Any]:
    status: dict[str, Any] = await eventually(lambda: asyncio.to_thread(office.status), done, what)
    return status


def _hangup(office: Office) -> None:
    assert office.agent.proc is not None
    os.kill(office.agent.proc.pid, signal.SIGHUP)


async def _a_call_succeeds(relay: Relay) -> None:
    async with crm(relay) as client:
        answer = await client.post("/v1/agents/acme/calls/customers.get", json={"id": "1"})
    assert answer.status_code == 200, answer.text


async def test_sighup_applies_a_new_log_level_and_relay_url(relay: Relay, office: Office) -> None:
    office.write_config(watch_s=0)  # only the signal may reload
    office.agent.start()
    await connected(relay, office)
    loaded = office.status()["config"]["loaded_at"]
    moved_url = relay.process.ws_url.replace("127.0.0.1", "localhost")
    office.write_config(watch_s=0, relay_url=moved_url, top_options=['log_level = "debug"'])
    _hangup(office)
    status = await _status(
        office,
        lambda s: s["links"][0]["connected"] and s["links"][0]["url"] == moved_url,
        "the link to reconnect to the new URL",
    )
    assert status["config"]["loaded_at"] > loaded
    assert status["config"]["error"] == ""
    assert status["config"]["restart_required"] == []
    await _a_call_succeeds(relay)
    # a successful call is logged at DEBUG only: the new level is in force
    await eventually(
        lambda: asyncio.to_thread(office.agent.log),
        lambda log: '"msg":"call answered"' in log,
        "a debug line for the call",
    )


async def test_an_invalid_file_keeps_the_running_settings(relay: Relay, office: Office) -> None:
    office.write_config(watch_s=0)
    office.agent.start()
    (before,) = await connected(relay, office)
    office.config.write_text(
        office.config.read_text(encoding="utf-8").replace(
            "max_concurrency = 2", "max_concurrency = -1"
        ),
        encoding="utf-8",
    )
    _hangup(office)
    status = await _status(office, lambda s: s["config"]["error"], "the reload to be refused")
    assert "max_concurrency" in status["config"]["error"]
    assert status["links"][0]["session_id"] == before["session_id"]
    await _a_call_succeeds(relay)
    log = office.agent.log()
    assert "config reload refused" in log
    # broken TOML as well
    office.config.write_text("[relay\nurl = ", encoding="utf-8")
    _hangup(office)
    await _status(
        office,
        lambda s: s["config"]["error"] and "max_concurrency" not in s["config"]["error"],
        "the second reload to be refused",
    )
    assert office.agent.alive
    await _a_call_succeeds(relay)
    # the config is unreadable now: the status file is named instead
    answer = await asyncio.to_thread(
        office.status_command, "--status-file", str(office.status_file)
    )
    assert answer.returncode == 0, answer.stderr
    assert "last reload refused" in answer.stdout, answer.stdout


async def test_a_changed_file_is_picked_up_without_a_signal(relay: Relay, office: Office) -> None:
    office.agent.start()
    (before,) = await connected(relay, office)
    office.write_config(agent_options=["read_only = true"], top_options=['log_level = "warning"'])
    office.config.write_text(
        office.config.read_text(encoding="utf-8").replace(
            "max_concurrency = 2", "max_concurrency = 3"
        ),
        encoding="utf-8",
    )
    status = await _status(
        office,
        lambda s: s["config"]["restart_required"] == ["agent.max_concurrency"],
        "the change to be seen",
    )
    assert status["config"]["error"] == ""
    # read_only changes what the relay may send: the link was handed over with a new hello
    await _status(
        office,
        lambda s: (
            s["links"][0]["connected"] and s["links"][0]["session_id"] != before["session_id"]
        ),
        "the link to hand over",
    )
    async with crm(relay) as client:
        write = await client.post(
            "/v1/agents/acme/calls/customers.create",
            json={"name": "Not today"},
            headers={"Idempotency-Key": "read-only-1"},
        )
    assert write.status_code == 403, write.text
    await _a_call_succeeds(relay)
    answer = await asyncio.to_thread(office.status_command)
    assert "restart required to apply: agent.max_concurrency" in answer.stdout, answer.stdout
