"""``erp-relay``: the relay's command line.

This module owns the group `main` and the administration commands (``db``, ``agents``,
``keys``). The server commands (``serve``, ``demo``) live with the server and register
themselves with ``from relay.cli import main; main.add_command(...)``; they can reuse
`database_url_option` so every command reads the database the same way.

Secrets never travel in argv (visible in ``ps`` and shell history): commands print new tokens
and keys, they never take one as an argument. A new secret goes alone on stdout, so
``TOKEN=$(erp-relay agents add shop-1)`` works, and the "shown once" warning goes to stderr.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import click
from sqlalchemy.exc import SQLAlchemyError

from relay.console.passwords import check_strength, hash_password
from relay.store import (
    DEFAULT_DATABASE_URL,
    AlreadyExists,
    NotFoundError,
    Revoked,
    SchemaNotCurrent,
    Store,
    StoreError,
    upgrade,
)
from relay.store.console import ROLES, ConsoleStore, validate_username
from relay.store.db import display_url, head_revision, normalise_url, sqlite_path

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

DATABASE_URL_ENV = "ERP_RELAY_DATABASE_URL"

database_url_option: Callable[[F], F] = click.option(
    "--database-url",
    envvar=DATABASE_URL_ENV,
    default=DEFAULT_DATABASE_URL,
    show_default=True,
    show_envvar=True,
    help="sqlite:///path or postgresql://user:password@host/db (async drivers are implied).",
)
"""The database option shared by every command that opens the store."""


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="erp-relay")
def main() -> None:
    """ERP Relay: the cloud side of the bridge between CRMs and on-premises ERP agents."""


# Plumbing


def _fail(message: str) -> click.ClickException:
    return click.ClickException(message)


def _run(url: str, action: Callable[[Store], Awaitable[T]]) -> T:
    """Open the store at `url`, run `action`, close; translate store errors to CLI errors."""
    try:
        normalise_url(url)
    except ValueError as exc:
        raise _fail(str(exc)) from exc

    async def run() -> T:
        await _prepare(url)
        store = await Store.open(url)
        try:
            return await action(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except SchemaNotCurrent as exc:
        raise _fail(f"{exc} (database: {display_url(url)})") from exc
    except (AlreadyExists, NotFoundError, Revoked, ValueError) as exc:
        raise _fail(str(exc)) from exc
    except (StoreError, SQLAlchemyError, OSError) as exc:
        raise _fail(
            f"cannot use the database {display_url(url)}: {type(exc).__name__}: {exc}"
        ) from exc


async def _prepare(url: str) -> None:
    """Create and migrate a SQLite database that does not exist yet; touch nothing else.

    A missing SQLite file means a first run on one machine, where making the operator run
    ``db upgrade`` first would only be a chore. An existing database (or any PostgreSQL one)
    is never migrated implicitly: that is a deliberate deploy step.
    """
    path = sqlite_path(url)
    if path is not None and not path.exists():
        click.echo(f"Creating a new database at {path}", err=True)
        await upgrade(url)


def _when(value: dt.datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(header) for header in headers]
    for row in rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    lines = [headers, *rows]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _show_secret(kind: str, plaintext: str, public_id: str) -> None:
    click.echo(plaintext)
    click.echo(
        f"This {kind} ({public_id}) is shown only now and cannot be shown again: store it "
        "in a secret manager. If it is lost, issue a new one and revoke this one.",
        err=True,
    )


# db


@main.group()
def db() -> None:
    """The relay's database schema."""


@db.command("upgrade")
@database_url_option
def db_upgrade(database_url: str) -> None:
    """Migrate the database to the newest schema (safe to run repeatedly)."""
    try:
        asyncio.run(upgrade(database_url))
    except (ValueError, SQLAlchemyError, OSError) as exc:
        raise _fail(f"cannot upgrade {display_url(database_url)}: {exc}") from exc
    click.echo(f"Database {display_url(database_url)} is at revision {head_revision()}.")


@db.command("check")
@database_url_option
def db_check(database_url: str) -> None:
    """Exit with an error unless the schema is at the newest revision (for deploy scripts)."""

    async def noop(_store: Store) -> None:
        return None

    path = sqlite_path(database_url) if _is_valid(database_url) else None
    if path is not None and not path.exists():
        raise _fail(f"no database at {path}; run `erp-relay db upgrade`")
    _run(database_url, noop)
    click.echo(f"Database schema is current (revision {head_revision()}).")


def _is_valid(url: str) -> bool:
    try:
        normalise_url(url)
    except ValueError:
        return False
    return True


# agents

_SQLITE_NOTE = (
    "\n\nA SQLite database that does not exist yet is created and migrated; any other "
    "database must be at the newest schema (run `erp-relay db upgrade`)."
)


@main.group()
def agents() -> None:
    """On-premises agents and their tokens."""


@agents.command(
    "add", help="Register an agent and print its first token (shown once)." + _SQLITE_NOTE
)
@click.argument("name")
@database_url_option
def agents_add(name: str, database_url: str) -> None:
    secret = _run(database_url, lambda store: store.create_agent(name))
    _show_secret("agent token", secret.plaintext, secret.public_id)


@agents.command("token", help="Issue another token for an agent (shown once)." + _SQLITE_NOTE)
@click.argument("name")
@database_url_option
def agents_token(name: str, database_url: str) -> None:
    secret = _run(database_url, lambda store: store.add_agent_token(name))
    _show_secret("agent token", secret.plaintext, secret.public_id)


@agents.command("list", help="List agents and what they reported when last seen." + _SQLITE_NOTE)
@database_url_option
def agents_list(database_url: str) -> None:
    records = _run(database_url, lambda store: store.list_agents())
    if not records:
        click.echo("No agents. Add one with `erp-relay agents add NAME`.")
        return
    rows = [
        (
            record.name,
            "revoked" if record.revoked else "active",
            _when(record.last_seen_at),
            record.last_version or "-",
            record.last_connector or "-",
            record.last_erp or "-",
            record.last_address or "-",
            _when(record.created_at),
        )
        for record in records
    ]
    headers = ("NAME", "STATUS", "LAST SEEN", "VERSION", "CONNECTOR", "ERP", "ADDRESS", "CREATED")
    click.echo(_table(headers, rows))


@agents.command("revoke", help="Revoke an agent and all its tokens." + _SQLITE_NOTE)
@click.argument("name")
@database_url_option
def agents_revoke(name: str, database_url: str) -> None:
    _run(database_url, lambda store: store.revoke_agent(name))
    click.echo(f"Agent {name} and all its tokens are revoked.")


@agents.command("revoke-token", help="Revoke one agent token by its public id." + _SQLITE_NOTE)
@click.argument("public_id")
@database_url_option
def agents_revoke_token(public_id: str, database_url: str) -> None:
    _run(database_url, lambda store: store.revoke_agent_token(public_id))
    click.echo(f"Agent token {public_id} is revoked.")


# keys


@main.group()
def keys() -> None:
    """API keys for CRMs and other callers."""


@keys.command(
    "add",
    help=(
        "Issue an API key and print it (shown once). Grant agents with --agent (repeat) or "
        "--all-agents, and operations with --operation (repeat; an exact name such as "
        "customers.get, a group such as 'customers.*', or '*') or --all-operations. Nothing "
        "is granted by default." + _SQLITE_NOTE
    ),
)
@click.argument("name")
@click.option("--agent", "agent_names", multiple=True, metavar="NAME", help="An agent to allow.")
@click.option("--all-agents", is_flag=True, help="Allow every agent, present and future.")
@click.option("--operation", "operations", multiple=True, metavar="OP", help="An operation.")
@click.option("--all-operations", is_flag=True, help="Allow every operation.")
@click.option(
    "--admin",
    is_flag=True,
    help="A key for the admin API (/v1/admin/, for operators' scripts); grants default to all.",
)
@database_url_option
def keys_add(
    *,
    name: str,
    agent_names: tuple[str, ...],
    all_agents: bool,
    operations: tuple[str, ...],
    all_operations: bool,
    admin: bool,
    database_url: str,
) -> None:
    if admin:
        all_agents = all_agents or not agent_names
        all_operations = all_operations or not operations
    if all_agents and agent_names:
        raise click.UsageError("give either --agent or --all-agents, not both")
    if all_operations and operations:
        raise click.UsageError("give either --operation or --all-operations, not both")
    if not (all_agents or agent_names):
        raise click.UsageError(
            "the key would reach no agent: give --agent NAME (repeatable) or --all-agents"
        )
    if not (all_operations or operations):
        raise click.UsageError(
            "the key would allow no operation: give --operation OP (repeatable, e.g. "
            "'customers.*') or --all-operations"
        )
    granted_agents = ("*",) if all_agents else agent_names
    granted_operations = ("*",) if all_operations else operations
    secret = _run(
        database_url,
        lambda store: store.create_api_key(name, granted_agents, granted_operations, admin=admin),
    )
    _show_secret("API key", secret.plaintext, secret.public_id)


@keys.command("list", help="List API keys and their grants (never the keys)." + _SQLITE_NOTE)
@database_url_option
def keys_list(database_url: str) -> None:
    records = _run(database_url, lambda store: store.list_api_keys())
    if not records:
        click.echo("No API keys. Add one with `erp-relay keys add NAME ...`.")
        return
    rows = [
        (
            record.public_id,
            record.name,
            "revoked" if record.revoked else "active",
            ",".join(record.agents),
            ",".join(record.operations),
            _when(record.created_at),
            _when(record.last_used_at),
        )
        for record in records
    ]
    headers = ("ID", "NAME", "STATUS", "AGENTS", "OPERATIONS", "CREATED", "LAST USED")
    click.echo(_table(headers, rows))


@keys.command("revoke", help="Revoke an API key by its public id." + _SQLITE_NOTE)
@click.argument("public_id")
@database_url_option
def keys_revoke(public_id: str, database_url: str) -> None:
    _run(database_url, lambda store: store.revoke_api_key(public_id))
    click.echo(f"API key {public_id} is revoked.")


@keys.command(
    "webhook-secret",
    help=(
        "Print the secret an API key's owner uses to verify webhook signatures. It is derived "
        "from ERP_RELAY_WEBHOOK_SIGNING_KEY, so it can be shown again; changing that key "
        "changes every secret." + _SQLITE_NOTE
    ),
)
@click.argument("public_id")
@database_url_option
def keys_webhook_secret(public_id: str, database_url: str) -> None:
    from relay.settings import RelaySettings
    from relay.webhooks import key_secret

    signing_key = RelaySettings().webhook_signing_key
    if signing_key is None or not signing_key.get_secret_value():
        raise click.ClickException(
            "this relay sends no webhooks: set ERP_RELAY_WEBHOOK_SIGNING_KEY first"
        )
    records = _run(database_url, lambda store: store.list_api_keys())
    if not any(record.public_id == public_id and not record.revoked for record in records):
        raise click.ClickException(f"no active API key with public id {public_id!r}")
    click.echo(key_secret(signing_key.get_secret_value(), public_id))


# operator


@main.group()
def operator() -> None:
    """People who sign in to the dashboard (/dashboard/)."""


def _console(action: Callable[[ConsoleStore], Awaitable[T]]) -> Callable[[Store], Awaitable[T]]:
    return lambda store: action(ConsoleStore(store.engine))


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = str(click.prompt("Password", hide_input=True, confirmation_prompt=True))
    try:
        return check_strength(password)
    except ValueError as exc:
        raise _fail(str(exc)) from exc


@operator.command(
    "create",
    help="Create an operator; the password is asked twice (or read from stdin)." + _SQLITE_NOTE,
)
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), default="viewer", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin's first line.")
@database_url_option
def operator_create(username: str, role: str, password_stdin: bool, database_url: str) -> None:
    try:
        validate_username(username)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    password_hash = hash_password(_read_password(password_stdin))
    _run(database_url, _console(lambda c: c.create_operator(username, password_hash, role)))
    click.echo(f"Operator {username} ({role}) created.", err=True)


@operator.command("list", help="List operators and their roles." + _SQLITE_NOTE)
@database_url_option
def operator_list(database_url: str) -> None:
    records = _run(database_url, _console(lambda c: c.list_operators()))
    if not records:
        click.echo("No operators. Create one with `erp-relay operator create NAME --role admin`.")
        return
    rows = [
        (
            r.username,
            r.role,
            "disabled" if r.disabled_at else "active",
            _when(r.created_at),
            _when(r.last_login_at),
        )
        for r in records
    ]
    click.echo(_table(("USERNAME", "ROLE", "STATUS", "CREATED", "LAST SIGN-IN"), rows))


@operator.command("disable", help="Disable an operator and end their sessions." + _SQLITE_NOTE)
@click.argument("username")
@database_url_option
def operator_disable(username: str, database_url: str) -> None:
    _run(database_url, _console(lambda c: c.disable_operator(username)))
    click.echo(f"Operator {username} disabled.", err=True)


def _add_server_commands() -> None:
    # Imported here, not at the top: the admin commands above must work without loading the
    # web stack, and relay.server imports the app, which imports the store this module uses.
    from relay.demo import demo_command
    from relay.server import serve_command

    main.add_command(serve_command)
    main.add_command(demo_command)


_add_server_commands()
