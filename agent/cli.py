"""``erp-agent``: run the agent, check its configuration before installing it as a service, or
show what the running agent is doing (``status``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import click

from agent import status as agent_status
from agent.connectors.base import CheckItem, Connector
from agent.connectors.registry import load
from agent.link import ConnectFailed, LinkStatus, run_link
from agent.logs import configure_logging
from agent.settings import AgentSettings, default_journal_path, load_settings
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
    asyncio.run(_run(settings, connector, config_path, configure_logging))


async def _run(
    settings: AgentSettings,
    connector: Connector,
    config_path: Path | None = None,
    relog: Callable[[AgentSettings], object] | None = None,
) -> None:
    """``relog`` sets logging up again after a config reload (as it was set up at start)."""
    supervisor = Supervisor(settings, connector, config_path=config_path, relog=relog)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows has no signal handlers here
            loop.add_signal_handler(sig, supervisor.stop)
    hangup = getattr(signal, "SIGHUP", None)  # not on Windows: the file watch reloads there
    if hangup is not None:
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(hangup, supervisor.request_reload)
    await supervisor.run()


@main.command()
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the status snapshot as JSON.")
@click.option(
    "--status-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Read this status file instead of the one the config names.",
)
def status(config_path: Path | None, as_json: bool, status_file: Path | None) -> None:
    """Show what the running agent is doing: connections, last calls, errors.

    Exit status: 0 running and connected, 1 running but no connection to the relay, 3 not
    running (as LSB init scripts' status)."""
    path = status_file
    if path is None:
        try:
            path = load_settings(config_path).status_file()
        except ValueError as exc:
            # A broken config is when the status matters most (the agent runs on its old one)
            path = default_journal_path().with_name("status.json")
            click.echo(f"the config cannot be read ({exc}); reading {path}", err=True)
    try:
        data = agent_status.read(path)
    except agent_status.NotRunning as exc:
        click.echo(f"not running: {exc}", err=True)
        sys.exit(3)
    stopped = agent_status.why_not_running(data)
    if as_json:
        click.echo(json.dumps({**data, "not_running": stopped}, indent=1))
    else:
        click.echo(agent_status.render(data))
    if stopped is not None:
        click.echo(f"NOT RUNNING: {stopped}", err=True)
        sys.exit(3)
    sys.exit(0 if any(link.get("connected") for link in data.get("links", [])) else 1)


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
        items = list(
            await asyncio.gather(
                *(_probe_link(settings, supervisor, status) for status in supervisor.links)
            )
        )
        return items + _clock_items(supervisor.links)
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
            route = "" if status.route == "direct" else f" through proxy {status.route}"
            where = f"{status.url}{route}"
            where += f", replica {status.replica}" if status.replica else ""
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


def _clock_items(links: tuple[LinkStatus, ...]) -> list[CheckItem]:
    """A failed line when this machine's clock is far from the relay's (one line, whichever
    link measured it): the connection works, but it is a fault to fix before going live."""
    warnings = sorted({status.clock_warning for status in links if status.clock_warning})
    return [CheckItem("clock", False, warning) for warning in warnings[:1]]


@main.group()
def service() -> None:
    """The Windows service (on Linux, the systemd unit in deploy/agent/ does this)."""


@contextlib.contextmanager
def _service_errors() -> Iterator[None]:
    """A service command's failure as a CLI error. agent.winservice is imported by the
    commands themselves, only when they run: it pulls pywin32 on Windows."""
    from agent.winservice import ServiceError

    try:
        yield
    except ServiceError as exc:
        raise click.ClickException(str(exc)) from exc


@service.command("install")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help=r"The config the service runs with. Default: %PROGRAMDATA%\ErpRelay\agent.toml.",
)
@click.option(
    "--account",
    default=None,
    help=r"Run as this account (DOMAIN\user). Default: the virtual account "
    r"NT SERVICE\ErpRelayAgent, which has no password to manage.",
)
@click.option(
    "--password-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="A file holding only the --account's password (never on the command line).",
)
def service_install(
    config_path: Path | None, account: str | None, password_file: Path | None
) -> None:
    """Install the service: automatic (delayed) start, restarted by Windows after a failure."""
    from agent import winservice

    with _service_errors():
        config = config_path or winservice.default_config_file()
        command = winservice.install(config, account, password_file)
    click.echo(f"installed service {winservice.SERVICE_NAME}: {command}")
    click.echo(f"logs in {winservice.default_log_file()}; now `erp-agent service start`")


@service.command("uninstall")
def service_uninstall() -> None:
    """Stop the service if it runs and remove it (config, journal and logs stay)."""
    from agent import winservice

    with _service_errors():
        winservice.uninstall()
    click.echo(f"removed service {winservice.SERVICE_NAME}")


@service.command("start")
def service_start() -> None:
    """Start the service and wait until Windows reports it running."""
    from agent import winservice

    with _service_errors():
        winservice.start()
    click.echo(f"service {winservice.SERVICE_NAME} running")


@service.command("stop")
def service_stop() -> None:
    """Stop the service and wait until it has stopped."""
    from agent import winservice

    with _service_errors():
        winservice.stop()
    click.echo(f"service {winservice.SERVICE_NAME} stopped")


@service.command("status")
def service_status() -> None:
    """What Windows knows of the service: state, process, account, command line."""
    from agent import winservice

    with _service_errors():
        state = winservice.status()
    for line in state.lines():
        click.echo(line)


@service.command("run", hidden=True)
@CONFIG_OPTION
def service_run(config_path: Path | None) -> None:
    """The command the Service Control Manager starts; not for a console."""
    from agent import winservice

    with _service_errors():
        winservice.run(config_path or winservice.default_config_file())
