from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from relay.cli import DATABASE_URL_ENV, main
from relay.store import Store, upgrade_sync
from relay.store.db import head_revision

TOKEN = re.compile(r"erpa_[a-z0-9]{12}_[A-Za-z0-9]{43}")
KEY = re.compile(r"erpk_[a-z0-9]{12}_[A-Za-z0-9]{43}")


def run(*args: str, url: str | None = None, env: dict[str, str] | None = None) -> Result:
    argv = list(args)
    if url is not None:
        argv += ["--database-url", url]
    return CliRunner().invoke(main, argv, env=env, catch_exceptions=False)


@pytest.fixture
def url(database_url: str) -> str:
    """A database already at head, as an operator would have after `db upgrade`."""
    result = run("db", "upgrade", url=database_url)
    assert result.exit_code == 0, result.output
    assert f"revision {head_revision()}" in result.stdout
    return database_url


async def _authenticate_agent(url: str, token: str) -> bool:
    store = await Store.open(url)
    try:
        return await store.authenticate_agent(token) is not None
    finally:
        await store.close()


async def _authenticate_key(url: str, key: str) -> bool:
    store = await Store.open(url)
    try:
        return await store.authenticate_api_key(key) is not None
    finally:
        await store.close()


def test_agent_token_is_printed_once_and_alone_on_stdout(url: str) -> None:
    result = run("agents", "add", "shop-1", url=url)
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert TOKEN.fullmatch(token)
    assert "cannot be shown again" in result.stderr
    assert token not in result.stderr
    assert asyncio.run(_authenticate_agent(url, token))

    listed = run("agents", "list", url=url)
    assert listed.exit_code == 0
    assert "shop-1" in listed.stdout
    assert "active" in listed.stdout
    assert token not in listed.output
    assert token.rsplit("_", 1)[1] not in listed.output
    assert not TOKEN.search(listed.output)


def test_duplicate_and_invalid_agent_names_fail_cleanly(url: str) -> None:
    assert run("agents", "add", "shop-1", url=url).exit_code == 0
    duplicate = run("agents", "add", "shop-1", url=url)
    assert duplicate.exit_code == 1
    assert "already exists" in duplicate.stderr
    invalid = run("agents", "add", "Shop One", url=url)
    assert invalid.exit_code == 1
    assert "invalid agent name" in invalid.stderr


def test_another_token_and_revocation(url: str) -> None:
    first = run("agents", "add", "shop-1", url=url).stdout.strip()
    second_result = run("agents", "token", "shop-1", url=url)
    assert second_result.exit_code == 0
    second = second_result.stdout.strip()
    assert TOKEN.fullmatch(second)
    assert second != first
    assert asyncio.run(_authenticate_agent(url, second))

    revoked = run("agents", "revoke", "shop-1", url=url)
    assert revoked.exit_code == 0
    assert "revoked" in revoked.stdout
    assert not asyncio.run(_authenticate_agent(url, first))
    assert not asyncio.run(_authenticate_agent(url, second))
    assert "revoked" in run("agents", "list", url=url).stdout

    missing = run("agents", "revoke", "nobody", url=url)
    assert missing.exit_code == 1
    assert "no agent 'nobody'" in missing.stderr
    refused = run("agents", "token", "shop-1", url=url)
    assert refused.exit_code == 1
    assert "revoked" in refused.stderr


def test_revoke_one_token(url: str) -> None:
    first = run("agents", "add", "shop-1", url=url).stdout.strip()
    second = run("agents", "token", "shop-1", url=url).stdout.strip()
    public_id = first.split("_")[1]
    result = run("agents", "revoke-token", public_id, url=url)
    assert result.exit_code == 0
    assert not asyncio.run(_authenticate_agent(url, first))
    assert asyncio.run(_authenticate_agent(url, second))


def test_keys_add_list_revoke(url: str) -> None:
    result = run(
        "keys",
        "add",
        "crm",
        "--agent",
        "shop-1",
        "--agent",
        "shop-2",
        "--operation",
        "customers.*",
        "--operation",
        "orders.create",
        url=url,
    )
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    assert KEY.fullmatch(key)
    assert "cannot be shown again" in result.stderr
    assert asyncio.run(_authenticate_key(url, key))

    listed = run("keys", "list", url=url)
    assert listed.exit_code == 0
    public_id = key.split("_")[1]
    assert public_id in listed.stdout
    assert "shop-1,shop-2" in listed.stdout
    assert "customers.*,orders.create" in listed.stdout
    assert key not in listed.output
    assert not KEY.search(listed.output)

    revoked = run("keys", "revoke", public_id, url=url)
    assert revoked.exit_code == 0
    assert not asyncio.run(_authenticate_key(url, key))
    assert "revoked" in run("keys", "list", url=url).stdout
    assert run("keys", "revoke", "nonexistent0", url=url).exit_code == 1


def test_keys_for_everything(url: str) -> None:
    result = run("keys", "add", "admin", "--all-agents", "--all-operations", url=url)
    assert result.exit_code == 0, result.output
    assert KEY.fullmatch(result.stdout.strip())
    listed = run("keys", "list", url=url).stdout
    assert re.search(r"admin\s+active\s+\*\s+\*", listed)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--operation", "ping"], "--all-agents"),
        (["--agent", "shop-1"], "--all-operations"),
        (["--agent", "shop-1", "--all-agents", "--all-operations"], "not both"),
        (["--agent", "shop-1", "--operation", "customers.gett"], "unknown operation"),
        (["--agent", "Bad Name", "--all-operations"], "invalid agent name"),
    ],
)
def test_keys_add_refuses_incomplete_or_wrong_grants(
    url: str, args: list[str], message: str
) -> None:
    result = run("keys", "add", "crm", *args, url=url)
    assert result.exit_code != 0
    assert message in result.stderr
    assert not KEY.search(result.output)
    assert "No API keys" in run("keys", "list", url=url).stdout


def test_admin_commands_refuse_a_database_not_at_head(database_url: str) -> None:
    if database_url.startswith("sqlite"):
        # An existing but empty SQLite file is not created implicitly.
        path = Path(database_url.split(":///", 1)[1])
        path.touch()
    result = run("agents", "list", url=database_url)
    assert result.exit_code == 1
    assert "erp-relay db upgrade" in result.stderr
    check = run("db", "check", url=database_url)
    assert check.exit_code == 1
    assert run("db", "upgrade", url=database_url).exit_code == 0
    assert run("db", "check", url=database_url).exit_code == 0
    assert run("agents", "list", url=database_url).exit_code == 0


def test_a_missing_sqlite_database_is_created(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite"
    url = f"sqlite:///{path}"
    missing = run("db", "check", url=url)
    assert missing.exit_code == 1
    assert not path.exists()
    result = run("agents", "add", "shop-1", url=url)
    assert result.exit_code == 0, result.output
    assert path.exists()
    assert "Creating a new database" in result.stderr
    assert TOKEN.fullmatch(result.stdout.strip())


def test_database_url_from_the_environment(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'env.sqlite'}"
    assert run("agents", "add", "shop-1", env={DATABASE_URL_ENV: url}).exit_code == 0
    assert "shop-1" in run("agents", "list", env={DATABASE_URL_ENV: url}).stdout


def test_unreachable_or_unsupported_databases_give_a_clear_error() -> None:
    result = run("agents", "list", url="postgresql://nobody:hunter2@127.0.0.1:1/none")
    assert result.exit_code == 1
    assert "cannot use the database" in result.stderr
    assert "hunter2" not in result.output
    result = run("agents", "list", url="mysql://u@h/db")
    assert result.exit_code == 1
    assert "unsupported database" in result.stderr


def test_the_group_accepts_commands_from_other_modules() -> None:
    @click.command("extra-for-test")
    def extra() -> None:
        click.echo("hello")

    main.add_command(extra)
    try:
        assert run("extra-for-test").stdout == "hello\n"
    finally:
        main.commands.pop("extra-for-test")


def test_console_script(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "erp-relay"
    if not script.exists():
        pytest.skip("erp-relay console script not installed in this environment")
    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    upgrade_sync(url)
    env = {**os.environ, DATABASE_URL_ENV: url}
    completed = subprocess.run(
        [str(script), "agents", "add", "shop-1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert TOKEN.fullmatch(completed.stdout.strip())
    assert "cannot be shown again" in completed.stderr
    listed = subprocess.run(
        [str(script), "agents", "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert listed.returncode == 0
    assert "shop-1" in listed.stdout
    assert completed.stdout.strip() not in listed.stdout


def test_webhook_secret_matches_what_the_relay_signs_with(url: str) -> None:
    from relay.webhooks import key_secret

    added = run("keys", "add", "crm", "--all-agents", "--all-operations", url=url)
    public_id = added.stdout.strip().split("_")[1]
    unset = CliRunner().invoke(
        main,
        ["keys", "webhook-secret", public_id, "--database-url", url],
        env={"ERP_RELAY_WEBHOOK_SIGNING_KEY": None},
    )
    assert unset.exit_code != 0
    assert "ERP_RELAY_WEBHOOK_SIGNING_KEY" in unset.output
    env = {"ERP_RELAY_WEBHOOK_SIGNING_KEY": "relay-signing-key"}
    shown = run("keys", "webhook-secret", public_id, url=url, env=env)
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.strip() == key_secret("relay-signing-key", public_id)
    unknown = CliRunner().invoke(
        main, ["keys", "webhook-secret", "nosuchkey000", "--database-url", url], env=env
    )
    assert unknown.exit_code != 0
    assert "no active API key" in unknown.output
