"""``erp-relay operator …`` and ``erp-relay keys add --admin``."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from click.testing import CliRunner, Result

from relay.cli import main
from relay.console import passwords
from relay.store import Store, upgrade_sync
from relay.store.console import ConsoleStore

PASSWORD = "correct horse battery"


def run(url: str, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(
        main, [*args, "--database-url", url], input=stdin, catch_exceptions=False
    )


async def _operator_hash(url: str, username: str) -> str | None:
    store = await Store.open(url)
    try:
        found = await ConsoleStore(store.engine).operator_for_sign_in(username)
    finally:
        await store.close()
    return None if found is None else found[1]


def test_operator_create_asks_twice_and_lists(database_url: str) -> None:
    upgrade_sync(database_url)
    typo = run(
        database_url,
        "operator",
        "create",
        "ala",
        "--role",
        "admin",
        stdin=f"{PASSWORD}\n{PASSWORD}x\n{PASSWORD}\n{PASSWORD}\n",
    )
    assert typo.exit_code == 0, typo.output
    assert "do not match" in typo.output and PASSWORD not in typo.output
    stored = asyncio.run(_operator_hash(database_url, "ala"))
    assert stored is not None and stored.startswith("$argon2id$")
    assert asyncio.run(passwords.verify_password(stored, PASSWORD))

    duplicate = run(database_url, "operator", "create", "ala", "--password-stdin", stdin=PASSWORD)
    assert duplicate.exit_code != 0 and "already exists" in duplicate.output
    weak = run(database_url, "operator", "create", "bob", "--password-stdin", stdin="short\n")
    assert weak.exit_code != 0 and "12" in weak.output

    listed = run(database_url, "operator", "list")
    assert "ala" in listed.stdout and "admin" in listed.stdout and "active" in listed.stdout
    assert run(database_url, "operator", "disable", "ala").exit_code == 0
    assert "disabled" in run(database_url, "operator", "list").stdout
    assert asyncio.run(_operator_hash(database_url, "ala")) is None, "cannot sign in"


def test_operator_create_in_a_real_process(sqlite_url: str) -> None:
    """As an installer script would: the password on stdin, never in argv."""
    done = subprocess.run(
        [
            *(sys.executable, "-m", "relay", "operator", "create", "ops", "--role", "viewer"),
            *("--password-stdin", "--database-url", sqlite_url),
        ],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    stored = asyncio.run(_operator_hash(sqlite_url, "ops"))
    assert stored is not None and asyncio.run(passwords.verify_password(stored, PASSWORD))


def test_admin_api_key(database_url: str) -> None:
    upgrade_sync(database_url)
    result = run(database_url, "keys", "add", "ops-script", "--admin")
    assert result.exit_code == 0, result.output

    async def check() -> bool:
        store = await Store.open(database_url)
        try:
            key = await store.authenticate_api_key(result.stdout.strip())
        finally:
            await store.close()
        return key is not None and key.admin and key.agents == ("*",)

    assert asyncio.run(check())
