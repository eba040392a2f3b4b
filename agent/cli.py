"""``erp-agent``: run the agent, or check its configuration before installing it as a service."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from dataclasses import replace
from pathlib import Path

import click

from agent.connectors.base import CheckItem, Connector
from agent.connectors.registry import load
from agent.link import ConnectFailed, LinkStatus, run_link
from agent.logs import configure_logging
from agent.settings import AgentSettings, load_settings
from agent.supervisor import Supervisor

CONFIG_OPTION = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="ERP_AGENT_CONFIG",
    default=None,
    help="TOML config file (ERP_AGENT_CONFIG). ERP_AGENT_* variables override it.",
)


def build_connector(settings: AgentSettings) -> Connector:
    options = dict(settings.connector)
    name = str(options.pop("type", "demo"))
    return load(name).from_config(options)


@click.group()
def main() -> None:
    """The ERP Relay agent: runs next to the ERP and connects out to the relay."""


@main.command()
@CONFIG_OPTION
def run(config_path: Path | None) -> None:
    """Connect to the relay and serve calls until stopped (SIGINT/SIGTERM)."""
    try:
        settings = load_settings(config_path)
        connector = build_connector(settings)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    configure_logging(settings)
    asyncio.run(_run(settings, connector))


async def _run(settings: AgentSettings, connector: Connector) -> None:
    supervisor = Supervisor(settings, connector)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows has no signal handlers here
            loop.add_signal_handler(sig, supervisor.stop)
    await supervisor.run()


@main.command()
@CONFIG_OPTION
def check(config_path: Path | None) -> None:
    """Validate the config, reach the ERP database and the relay, and print a report."""
    items: list[CheckItem] = []
    settings: AgentSettings | None = None
    try:
        settings = load_settings(config_path)
        items.append(CheckItem("config", True, str(config_path or "environment")))
    except ValueError as exc:
        items.append(CheckItem("config", False, str(exc)))
    if settings is not None:
        try:
            settings.read_token()
            items.append(CheckItem("agent token", True, "present"))
        except ValueError as exc:
            items.append(CheckItem("agent token", False, str(exc)))
        try:
            connector = build_connector(settings)
            items.append(CheckItem("connector", True, connector.info().erp))
            items.extend(connector.check())
            items.extend(asyncio.run(_check_relay(settings, connector)))
            connector.close()
        except ValueError as exc:
            items.append(CheckItem("connector", False, str(exc)))
    width = max(len(item.name) for item in items)
    for item in items:
        mark = "ok  " if item.ok else "FAIL"
        click.echo(f"{mark} {item.name.ljust(width)}  {item.detail}")
    sys.exit(0 if all(item.ok for item in items) else 1)


async def _check_relay(settings: AgentSettings, connector: Connector) -> list[CheckItem]:
    """Open each configured link once, as `run` would, all at once."""
    supervisor = Supervisor(settings, connector)
    try:
        return list(
            await asyncio.gather(
                *(_probe_link(settings, supervisor, status) for status in supervisor.links)
            )
        )
    finally:
        supervisor.executor.close()
        supervisor.journal.close()


async def _probe_link(
    settings: AgentSettings, supervisor: Supervisor, status: LinkStatus
) -> CheckItem:
    name = "relay" if len(supervisor.links) == 1 else f"relay link {status.slot}"
    hello = replace(supervisor.hello, slot=status.slot)

    async def probe() -> str:
        task = asyncio.create_task(run_link(settings, supervisor.dispatcher, hello, status))
        ready = asyncio.create_task(status.ready.wait())
        await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if status.connected:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            where = f"{status.url}, replica {status.replica}" if status.replica else status.url
            return (
                f"connected to {where}, session {status.session_id}, "
                f"clock skew {status.clock_skew_ms} ms"
            )
        ended = task.result()
        raise ConnectFailed(ended.reason)

    try:
        async with asyncio.timeout(settings.relay.connect_timeout_s + 2):
            detail = await probe()
        return CheckItem(name, True, detail)
    except (ConnectFailed, TimeoutError, ValueError) as exc:
        return CheckItem(name, False, str(exc) or "no answer in time")
