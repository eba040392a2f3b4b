"""A real relay (uvicorn on a free loopback port) and real agents, inside the test's loop."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from agent.connectors.base import Connector
from agent.settings import (
    AgentOptions,
    AgentSettings,
    ChangesOptions,
    ReconnectOptions,
    RelayOptions,
)
from agent.supervisor import Supervisor
from relay.app import RelayApp, create_app
from relay.server import RelayServer, uvicorn_config
from relay.settings import RelaySettings
from relay.state import RelayState


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RelayHandle:
    server: RelayServer
    port: int
    settings: RelaySettings

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/agent/connect"

    @property
    def state(self) -> RelayState:
        app = self.server.config.app
        assert isinstance(app, RelayApp)
        return app.state


@asynccontextmanager
async def serve_relay(
    database_url: str,
    port: int | None = None,
    *,
    uvicorn: dict[str, Any] | None = None,
    **overrides: Any,
) -> AsyncIterator[RelayHandle]:
    """``uvicorn`` adds server options (``ssl_certfile``, ``ssl_keyfile`` to serve TLS)."""
    port = port or free_port()
    settings = RelaySettings(database_url=database_url, host="127.0.0.1", port=port, **overrides)
    server = RelayServer(
        uvicorn_config(create_app(settings), settings, loop="asyncio", **(uvicorn or {}))
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("relay did not start")
        await asyncio.sleep(0.01)
    try:
        yield RelayHandle(server, port, settings)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


def agent_settings(ws_url: str | list[str], token: str, **agent: Any) -> AgentSettings:
    """``ws_url`` is `RelayOptions.url`, or its ``urls`` when a list; ``changes=False`` turns
    the change feed off (`ChangesOptions.enabled`)."""
    address = {"url": ws_url} if isinstance(ws_url, str) else {"urls": ws_url}
    return AgentSettings(
        relay=RelayOptions(
            **address,
            connections=agent.pop("connections", 1),
            allow_insecure=True,
            connect_timeout_s=5,
            ping_interval_s=agent.pop("ping_interval_s", 5),
            ping_timeout_s=agent.pop("ping_timeout_s", 5),
        ),
        reconnect=ReconnectOptions(
            base_s=agent.pop("base_s", 0.1),
            cap_s=agent.pop("cap_s", 1.0),
            stable_after_s=agent.pop("stable_after_s", 2.0),
        ),
        changes=ChangesOptions(enabled=agent.pop("changes", None)),
        agent=AgentOptions(**agent),
        token=SecretStr(token),
    )


@asynccontextmanager
async def run_agent(
    ws_url: str | list[str], token: str, connector: Connector, *, wait: bool = True, **agent: Any
) -> AsyncIterator[Supervisor]:
    supervisor = Supervisor(agent_settings(ws_url, token, **agent), connector)
    task = asyncio.create_task(supervisor.run())
    try:
        if wait:
            await wait_for(lambda: supervisor.status.connected, what="agent to connect")
        yield supervisor
    finally:
        supervisor.stop()
        await asyncio.wait_for(task, 30)


async def wait_for(predicate: Any, *, timeout: float = 10.0, what: str = "condition") -> None:
    """Poll a cheap predicate; the only waiting tests do is for a state, never a fixed sleep."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
