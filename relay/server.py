"""Running the relay: uvicorn configured for agents, and a drain before shutdown.

On SIGTERM the relay stops taking new agent connections, sends goaway to every agent (they
reconnect at once, to another replica when there is one), waits up to `shutdown_grace_s` for
calls in flight, and only then lets uvicorn close the sockets.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import click
import uvicorn

from relay.app import RelayApp, create_app
from relay.logs import configure_logging
from relay.settings import RelaySettings
from relay.state import RelayState

log = logging.getLogger("relay.server")


def uvicorn_config(app: RelayApp, settings: RelaySettings, **overrides: Any) -> uvicorn.Config:
    """Uvicorn settings that matter for agents: no compression, bounded frames, keepalive."""
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop" if _has_uvloop() else "asyncio",
        "http": "httptools",
        "ws": "websockets-sansio",
        "ws_max_size": settings.max_frame_bytes,
        "ws_ping_interval": settings.ws_ping_interval_s,
        "ws_ping_timeout": settings.ws_ping_timeout_s,
        "ws_per_message_deflate": False,
        "lifespan": "on",
        "access_log": False,
        "server_header": False,
        "log_config": None,
        "timeout_graceful_shutdown": settings.shutdown_grace_s + 5,
        "proxy_headers": bool(settings.trusted_proxies),
        "forwarded_allow_ips": settings.trusted_proxies or None,
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


class RelayServer(uvicorn.Server):
    """A uvicorn server that stops listening, then drains agents, then closes connections."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # New connections (agents and callers) go to other replicas from now on; the load
        # balancer retries a refused connection elsewhere, which is safe for any request.
        for server in self.servers:
            server.close()
        app = self.config.app
        if isinstance(app, RelayApp) and hasattr(app.app.state, "relay"):
            await drain(app.state)
        await super().shutdown(sockets)


async def drain(state: RelayState) -> None:
    """Move every agent to another replica and wait for the calls still running here.

    A link that was sent goaway takes no new call (the agent stops reading new ones while it
    finishes the running ones); calls arriving meanwhile wait briefly for the agent to show
    up at another replica (`relay.api.calls`) instead of failing.
    """
    state.draining = True
    links = list(state.hub)
    for link in links:
        link.leaving = True
        if state.cluster is not None:
            state.cluster.agent_disconnected(link)
    for link in links:
        try:
            await link.send(link.session.goaway("relay shutting down"))
        except Exception:  # noqa: S112 - a dead link has nothing to drain
            continue
    loop = asyncio.get_running_loop()
    give_up = loop.time() + state.settings.shutdown_grace_s
    in_flight = [future for link in links for future in link.waiters.values()]
    if in_flight:
        await asyncio.wait(in_flight, timeout=state.settings.shutdown_grace_s)
    # Agents close their connection once their calls are answered. Waiting for that lets
    # them end it cleanly, instead of uvicorn closing sockets that are mid close handshake.
    while any(not link.closed for link in links) and loop.time() < give_up:  # noqa: ASYNC110
        await asyncio.sleep(0.05)  # a few polls at shutdown; links have no close event
    await asyncio.sleep(0.1)
    log.info("drained", extra={"agents": len(links)})


def run(settings: RelaySettings) -> None:
    server = RelayServer(uvicorn_config(create_app(settings), settings))
    server.run()


@click.command("serve")
@click.option("--host", default=None, help="Address to listen on (ERP_RELAY_HOST).")
@click.option("--port", type=int, default=None, help="Port to listen on (ERP_RELAY_PORT).")
@click.option("--database-url", default=None, help="Store URL (ERP_RELAY_DATABASE_URL).")
def serve_command(host: str | None, port: int | None, database_url: str | None) -> None:
    """Run the relay. Settings come from ERP_RELAY_* variables; options override them."""
    given: dict[str, Any] = {"host": host, "port": port, "database_url": database_url}
    overrides = {k: v for k, v in given.items() if v is not None}
    settings = RelaySettings(**overrides)
    configure_logging(settings)
    run(settings)
