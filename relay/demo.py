"""``erp-relay demo``: the whole system on one machine, with nothing to install or configure.

It starts a relay on SQLite, registers an agent, an API key and a dashboard operator, and starts
a real agent process (``python -m agent run``) with the built-in demo ERP, a SQLite database
shaped like Subiekt GT.
The relay does not import the agent package: the agent is a separate process, as in an office.
Everything lives in a state directory that is recreated on every run, so the printed key and
curl line always work.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import sys
import time
from pathlib import Path

import click

from relay.app import create_app
from relay.console.passwords import hash_password_async
from relay.dashboard import DASHBOARD_PATH
from relay.server import RelayServer, uvicorn_config
from relay.settings import RelaySettings
from relay.state import RelayState
from relay.store import Store
from relay.store.console import ConsoleStore
from relay.store.db import upgrade

DEMO_AGENT = "demo"
DEMO_OPERATOR = "admin"
AGENT_START_TIMEOUT_S = 120.0


def _agent_config(state_dir: Path, port: int) -> Path:
    erp = state_dir / "demo-erp.sqlite"
    config = state_dir / "agent.toml"
    config.write_text(
        "# Written by `erp-relay demo`. A real agent uses wss:// and its own token file.\n"
        'log_format = "text"\n\n'
        "[relay]\n"
        f'url = "ws://127.0.0.1:{port}/v1/agent/connect"\n'
        "allow_insecure = true\n"
        f'token_file = "{(state_dir / "agent.token").as_posix()}"\n\n'
        "[agent]\nmax_concurrency = 4\n"
        f'journal_path = "{(state_dir / "journal.sqlite").as_posix()}"\n\n'
        "[connector]\n"
        'type = "demo"\n'
        f'path = "{erp.as_posix()}"\n',
        encoding="utf-8",
    )
    return config


async def _prepare(database_url: str) -> tuple[str, str, str]:
    """Create the store, the demo agent, an API key and an admin operator for the dashboard;
    return the token, the key and the operator's password.

    The password is random for each run (the demo listens on loopback only, but a fixed
    password would end up in scripts and screenshots and then on a real server)."""
    await upgrade(database_url)
    store = await Store.open(database_url)
    password = secrets.token_urlsafe(12)
    try:
        token = await store.create_agent(DEMO_AGENT)
        key = await store.create_api_key("demo", [DEMO_AGENT], ["*"])
        password_hash = await hash_password_async(password)
        await ConsoleStore(store.engine).create_operator(DEMO_OPERATOR, password_hash, "admin")
    finally:
        await store.close()
    return token.plaintext, key.plaintext, password


def _write_secret(path: Path, secret: str) -> None:
    path.write_text(secret + "\n", encoding="utf-8")
    path.chmod(0o600)


def _banner(port: int, api_key: str, password: str, agent_config: Path) -> str:
    base = f"http://127.0.0.1:{port}"
    return "\n".join(
        [
            "",
            "ERP Relay demo is running: relay + agent + demo ERP (Subiekt GT schema, SQLite)",
            f"  API docs      {base}/docs",
            f"  OpenAPI       {base}/openapi.json",
            f"  agents        {base}/v1/agents",
            f"  API key       {api_key}   (shown once; stored hashed)",
            f"  dashboard     {base}{DASHBOARD_PATH}/",
            f"                sign in as {DEMO_OPERATOR} / {password}   (demo only)",
            f"  agent status  erp-agent status --config {agent_config}",
            "",
            "Try it:",
            f"  curl -s -H 'Authorization: Bearer {api_key}' -H 'Content-Type: application/json' "
            f'-d \'{{"id": "1"}}\' {base}/v1/agents/{DEMO_AGENT}/calls/customers.balance',
            "",
            "Press Ctrl+C to stop.",
            "",
        ]
    )


async def run_demo(state_dir: Path, port: int) -> None:
    database_url = f"sqlite+aiosqlite:///{(state_dir / 'relay.sqlite').as_posix()}"
    token, api_key, password = await _prepare(database_url)
    await asyncio.to_thread(_write_secret, state_dir / "agent.token", token)
    config = await asyncio.to_thread(_agent_config, state_dir, port)
    settings = RelaySettings(database_url=database_url, host="127.0.0.1", port=port)
    app = create_app(settings)
    server = RelayServer(uvicorn_config(app, settings))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
            raise click.ClickException(f"the relay could not start on port {port}")
        await asyncio.sleep(0.05)
    agent = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent",
        "run",
        "--config",
        str(config),
        env={k: v for k, v in os.environ.items() if not k.startswith("ERP_AGENT_")},
    )
    try:
        state: RelayState = app.state
        deadline = time.monotonic() + AGENT_START_TIMEOUT_S
        while not state.hub.is_online(DEMO_AGENT):
            if agent.returncode is not None or time.monotonic() > deadline or serving.done():
                server.should_exit = True
                raise click.ClickException("the demo agent did not connect; see its log above")
            await asyncio.sleep(0.1)
        click.echo(_banner(port, api_key, password, config))
        sys.stdout.flush()  # the banner must show at once even when stdout is a pipe
        await serving
    finally:
        if agent.returncode is None:
            agent.terminate()
            await agent.wait()


def _check_port_free(port: int) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise click.ClickException(
                f"port {port} is already in use (another demo still running?); "
                f"stop it or pick another port: erp-relay demo --port {port + 1}"
            ) from None


@click.command("demo")
@click.option("--port", type=int, default=8000, show_default=True, help="Relay port.")
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path(".erp-relay-demo"),
    show_default=True,
    help="Where the demo keeps its databases; wiped at every start.",
)
def demo_command(port: int, state_dir: Path) -> None:
    """Run relay + agent + demo ERP on this machine (SQLite, no external servers)."""
    _check_port_free(port)
    state_dir = state_dir.resolve()
    if state_dir.exists():
        shutil.rmtree(state_dir)
    state_dir.mkdir(parents=True)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl+C is how a demo ends
        asyncio.run(run_demo(state_dir, port))
    click.echo("Demo stopped.")
