"""The Windows service's body, `AgentRunner`, run here for real: the agent's supervisor on its
own thread and event loop, connected to a real relay process, stopped from another thread as
the SCM's SvcStop does, and its exit status. The pywin32 glue around it needs a Windows machine
(docs/agent-install.md has the checklist); on Linux the commands say where to look instead."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.winservice import STOP_TIMEOUT_S, AgentRunner, Exit, service_command_line
from tests.service.conftest import Relay
from tests.support.agent_process import wait_until
from tests.support.servers import free_port

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """The runner sets up the process's logging as the service does; put pytest's back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


def write_config(path: Path, ws_url: str, token_file: Path, erp_path: Path) -> Path:
    path.write_text(
        "[relay]\n"
        f"url = '{ws_url}'\n"
        "allow_insecure = true\n"
        f"token_file = '{token_file}'\n"
        "connect_timeout_s = 2\n"
        "[reconnect]\nbase_s = 0.2\ncap_s = 1\n"
        "[connector]\ntype = 'demo'\n"
        f"path = '{erp_path}'\nseed = false\n",
        encoding="utf-8",
    )
    return path


class Service:
    """`AgentRunner.run` on a thread of its own, as the SCM calls SvcDoRun."""

    def __init__(self, runner: AgentRunner) -> None:
        self.runner = runner
        self.exit: Exit | None = None
        self.thread = threading.Thread(target=self._run, name="SvcDoRun")

    def _run(self) -> None:
        self.exit = self.runner.run()

    def start(self) -> Service:
        self.thread.start()
        return self

    def stop(self) -> Exit | None:
        """SvcStop, then wait for SvcDoRun to return (bounded by the runner's own timeout)."""
        self.runner.stop()
        self.thread.join(self.runner.stop_timeout_s + 10)
        assert not self.thread.is_alive(), "SvcDoRun did not return"
        return self.exit


def test_the_service_body_connects_logs_to_its_file_and_stops_cleanly_in_time(
    relay: Relay, erp_path: Path, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(relay.token, encoding="utf-8")
    config = write_config(tmp_path / "agent.toml", relay.process.ws_url, token_file, erp_path)
    log_file = tmp_path / "ProgramData" / "ErpRelay" / "logs" / "agent.log"
    service = Service(AgentRunner(config, console=False, default_log_file=log_file)).start()
    try:
        wait_until(relay.agent_online, timeout_s=60, what="the agent to connect")
        assert service.runner.supervisor is not None
        assert service.runner.supervisor.status.connected
    finally:
        exit_status = service.stop()
    # stopped within STOP_TIMEOUT_S, or the status would be STOP_TIMEOUT
    assert exit_status is Exit.STOPPED
    assert exit_status == 0
    wait_until(lambda: not relay.agent_online(), timeout_s=30, what="the relay to see it go")
    text = log_file.read_text(encoding="utf-8")
    assert "connected to the relay" in text
    assert "the agent stopped" in text
    assert relay.token not in text


def test_a_stop_before_the_agent_is_up_is_not_lost(erp_path: Path, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("erpa_unused", encoding="utf-8")
    nowhere = f"ws://127.0.0.1:{free_port()}/v1/agent/connect"  # nothing listens: backoff
    config = write_config(tmp_path / "agent.toml", nowhere, token_file, erp_path)
    runner = AgentRunner(config, console=False, default_log_file=tmp_path / "agent.log")
    runner.stop()  # the SCM's stop arrives while the service is still starting
    assert runner.run() is Exit.STOPPED


def test_a_config_that_cannot_load_fails_before_anything_starts(tmp_path: Path) -> None:
    runner = AgentRunner(tmp_path / "missing.toml", default_log_file=tmp_path / "agent.log")
    with pytest.raises(ValueError, match="does not exist"):
        runner.run()
    assert runner.supervisor is None
    assert STOP_TIMEOUT_S < 30  # the wait hint the SCM gets stays under its patience


def test_the_service_command_line_keeps_paths_with_spaces_whole() -> None:
    line = service_command_line(
        r"C:\Program Files\ErpRelay\Python\python.exe",
        Path(r"C:\ProgramData\ErpRelay\agent.toml"),
    )
    assert line == (
        r'"C:\Program Files\ErpRelay\Python\python.exe" -m agent service run '
        r"--config C:\ProgramData\ErpRelay\agent.toml"
    )


@pytest.mark.parametrize("command", ["install", "uninstall", "start", "stop", "status"])
def test_service_commands_on_linux_point_to_the_systemd_unit(command: str) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "erp-agent"), "service", command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "deploy/agent/erp-agent.service" in done.stderr
    assert "Traceback" not in done.stderr
    assert "win32" not in done.stderr  # pywin32 is never imported on Linux
