"""A real agent process (``python -m agent run --config …``) that tests can kill -9 and restart.

The in-process agent of `tests.support.servers.run_agent` cannot die the way an office PC does;
this one can: `AgentProcess.kill` sends SIGKILL, and ``ERP_AGENT_CRASH_AT`` (see
`agent.crashpoints`) makes the process kill itself at a named point of the write path.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from agent.crashpoints import ENV_VAR as CRASH_ENV


def write_agent_config(
    path: Path,
    *,
    relay_url: str | Sequence[str],
    erp_path: Path,
    journal_path: Path,
    max_concurrency: int = 2,
    connections: int | None = None,
    agent_options: Sequence[str] = (),
    relay_options: Sequence[str] = (),
    top_options: Sequence[str] = (),
    tables: str = "",
) -> Path:
    """An agent TOML for a local relay (``ws://``) and a demo ERP file that already exists.

    ``relay_url`` is ``[relay] url``, or ``[relay] urls`` when a list; ``connections`` defaults
    to one per URL. ``agent_options`` are more TOML lines for ``[agent]``
    (``'read_only = true'``), ``relay_options`` for ``[relay]`` (``'proxy = "none"'``),
    ``top_options`` top-level ones (``'log_level = "debug"'``); ``tables`` is more TOML text
    at the end (``'[status]\\nlisten = "127.0.0.1:8765"\\n'``)."""
    if isinstance(relay_url, str):
        address = f'url = "{relay_url}"\n'
        links = connections or 1
    else:
        address = f"urls = [{', '.join(f'{url!r}' for url in relay_url)}]\n"
        links = connections or len(relay_url)
    path.write_text(
        "".join(f"{line}\n" for line in top_options) + "[relay]\n"
        f"{address}"
        f"connections = {links}\n"
        "allow_insecure = true\n"
        "connect_timeout_s = 5\n"
        "ping_interval_s = 5\n"
        "ping_timeout_s = 5\n" + "".join(f"{line}\n" for line in relay_options) + "\n"
        "[reconnect]\n"
        "base_s = 0.1\n"
        "cap_s = 0.5\n"
        "stable_after_s = 2\n\n"
        "[agent]\n"
        f"max_concurrency = {max_concurrency}\n"
        f"journal_path = {str(journal_path)!r}\n"
        + "".join(f"{line}\n" for line in agent_options)
        + "\n"
        "[connector]\n"
        'type = "demo"\n'
        f"path = {str(erp_path)!r}\n"
        "seed = false\n" + tables,
        encoding="utf-8",
    )
    return path


def _clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The test's environment without any ERP_AGENT_* of its own, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERP_AGENT_")}
    env.update(extra)
    return env


class AgentProcess:
    """One agent installation (config, token, log file) whose process can be (re)started."""

    def __init__(
        self,
        config: Path,
        token: str | None,
        log_path: Path,
        command_prefix: Sequence[str] = (),
        *,
        log_level: str | None = "info",
    ) -> None:
        """``command_prefix`` runs the agent through another command (``ip netns exec NAME``).
        ``token`` goes in ERP_AGENT_TOKEN (None: the config's ``token_file`` is read);
        ``log_level`` in ERP_AGENT_LOG_LEVEL (None: the config's ``log_level``)."""
        self.config = config
        self.log_level = log_level
        self.command_prefix = tuple(command_prefix)
        self.token = token
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, *, crash_at: str | None = None, **env: str) -> None:
        """Start the process; ``crash_at`` names the crash point it will die at."""
        if self.alive:
            raise RuntimeError("the agent process is already running")
        self._close_log()
        defaults = {"ERP_AGENT_TOKEN": self.token, "ERP_AGENT_LOG_LEVEL": self.log_level}
        extra = {k: v for k, v in defaults.items() if v is not None} | env
        if crash_at is not None:
            extra[CRASH_ENV] = crash_at
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                *self.command_prefix,
                *(sys.executable, "-m", "agent", "run", "--config", str(self.config)),
            ],
            env=_clean_env(extra),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def wait_dead(self, timeout_s: float = 30) -> int:
        """Wait for the process to end by itself (a crash point); returns its exit status."""
        assert self.proc is not None
        return self.proc.wait(timeout_s)

    def kill(self) -> int:
        """SIGKILL (a power cut, as far as the agent can tell) and reap the process."""
        assert self.proc is not None
        if self.proc.poll() is None:
            if sys.platform == "win32":
                self.proc.kill()
            else:
                os.kill(self.proc.pid, signal.SIGKILL)
        return self.proc.wait(30)

    def terminate(self) -> None:
        """SIGTERM without waiting (tests in an event loop wait for `alive` to turn false)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not end within 10 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_log()

    def restart(self, *, crash_at: str | None = None, **env: str) -> None:
        if self.alive:
            self.kill()
        self.start(crash_at=crash_at, **env)

    def log(self) -> str:
        """Everything the process wrote so far (for assertion messages)."""
        if self._log is not None:
            self._log.flush()
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def wait_until(predicate: object, *, timeout_s: float = 30, what: str = "condition") -> None:
    """Poll ``predicate()`` (blocking) until it is true."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
