"""The installed commands as an operator runs them: separate processes, real sockets."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.support.servers import free_port

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ERP_RELAY_", "ERP_AGENT_"))}
    env.update(extra)
    return env


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: PLW1510 - callers check the code themselves
        [str(BIN / args[0]), *args[1:]], capture_output=True, text=True, env=env, timeout=120
    )


def _wait_http(url: str, predicate: object, timeout_s: float = 60) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=2)
            if callable(predicate) and predicate(response):
                return response
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"{url} never became ready ({last})")


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_operator_journey(tmp_path: Path, processes: list[subprocess.Popen[str]]) -> None:
    port = free_port()
    env = _env(ERP_RELAY_DATABASE_URL=f"sqlite:///{tmp_path / 'relay.sqlite'}")
    assert _cli("erp-relay", "db", "upgrade", env=env).returncode == 0
    added = _cli("erp-relay", "agents", "add", "acme", env=env)
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    assert token.startswith("erpa_")
    key = _cli("erp-relay", "keys", "add", "crm", "--agent", "acme", "--all-operations", env=env)
    assert key.returncode == 0, key.stderr
    api_key = key.stdout.strip()
    listed = _cli("erp-relay", "agents", "list", env=env).stdout
    assert "acme" in listed
    assert token not in listed

    token_file = tmp_path / "agent.token"
    token_file.write_text(token)
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[relay]\nurl = "ws://127.0.0.1:{port}/v1/agent/connect"\nallow_insecure = true\n'
        f'token_file = "{token_file}"\n\n[connector]\ntype = "demo"\n'
        f'path = "{tmp_path / "erp.sqlite"}"\n'
    )
    offline = _cli("erp-agent", "check", "--config", str(config), env=_env())
    assert offline.returncode == 1
    assert "FAIL relay" in offline.stdout
    assert "refused" in offline.stdout
    assert token not in offline.stdout + offline.stderr

    relay = subprocess.Popen(
        [str(BIN / "erp-relay"), "serve", "--port", str(port)],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    processes.append(relay)
    base = f"http://127.0.0.1:{port}"
    _wait_http(f"{base}/readyz", lambda r: r.status_code == 200)
    report = _cli("erp-agent", "check", "--config", str(config), env=_env())
    assert report.returncode == 0, report.stdout
    assert "ok   relay" in report.stdout

    agent = subprocess.Popen(
        [str(BIN / "erp-agent"), "run", "--config", str(config)],
        env=_env(),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    processes.append(agent)
    headers = {"Authorization": f"Bearer {api_key}"}
    deadline = time.monotonic() + 60
    while not httpx.get(f"{base}/v1/agents/acme", headers=headers).json()["online"]:
        assert time.monotonic() < deadline, "agent never came online"
        assert agent.poll() is None, agent.stdout.read() if agent.stdout else ""
        time.sleep(0.1)
    answer = httpx.post(
        f"{base}/v1/agents/acme/calls/customers.balance",
        json={"id": "1"},
        headers=headers,
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert "receivables" in answer.json()

    relay.send_signal(signal.SIGTERM)
    # uvicorn drains, then re-raises the signal so the exit status says how it ended
    assert relay.wait(30) in (0, -signal.SIGTERM)
    out = agent.stdout
    agent.terminate()
    assert agent.wait(30) == 0
    log = out.read() if out else ""
    assert "relay asked to reconnect" in log
    assert token not in log


def test_demo_command_prints_a_working_curl_line(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    port = free_port()
    demo = subprocess.Popen(
        [
            str(BIN / "erp-relay"),
            "demo",
            "--port",
            str(port),
            "--state-dir",
            str(tmp_path / "state"),
        ],
        env=_env(),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    processes.append(demo)
    assert demo.stdout is not None
    curl_line = None
    deadline = time.monotonic() + 120
    for line in demo.stdout:
        if line.strip().startswith("curl "):
            curl_line = line.strip()
        if "Press Ctrl+C" in line or time.monotonic() > deadline:
            break
    assert curl_line, "the demo printed no curl line"
    result = subprocess.run(shlex.split(curl_line), capture_output=True, timeout=30, check=True)
    body = orjson.loads(result.stdout)
    assert "receivables" in body, body
    assert f"http://127.0.0.1:{port}" in curl_line
    demo.send_signal(signal.SIGINT)
    assert demo.wait(30) == 0


def test_demo_on_a_busy_port_says_what_to_do(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _cli(
            "erp-relay",
            "demo",
            "--port",
            str(port),
            "--state-dir",
            str(tmp_path / "state"),
            env=_env(),
        )
    assert result.returncode != 0
    assert f"port {port} is already in use" in result.stderr
    assert "--port" in result.stderr
