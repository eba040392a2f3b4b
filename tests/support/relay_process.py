"""The relay as a real process (``erp-relay serve``), so fault tests can SIGKILL it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent


class RelayProcess:
    def __init__(self, database_url: str, port: int, log_path: Path, **settings: str) -> None:
        self.database_url = database_url
        self.port = port
        self.settings = settings
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/agent/connect"

    def start(self, timeout_s: float = 30) -> RelayProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ERP_RELAY_")}
        env["ERP_RELAY_DATABASE_URL"] = self.database_url
        env.update({f"ERP_RELAY_{k.upper()}": v for k, v in self.settings.items()})
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(BIN / "erp-relay"), "serve", "--port", str(self.port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"relay exited with {self.process.returncode}:\n{self.log()[-3000:]}"
                )
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("relay did not start")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no drain, no goaway, nothing flushed."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
