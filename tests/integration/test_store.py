from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from relay.secrets import SecretKind, generate
from relay.store import (
    AlreadyExists,
    ApiKeyRecord,
    CallLogRow,
    NotFoundError,
    Revoked,
    SchemaNotCurrent,
    Store,
    check_schema,
    create_engine,
    head_revision,
    normalise_url,
    upgrade,
    upgrade_sync,
)
from relay.store.db import alembic_config, current_revision, downgrade
from relay.store.models import metadata
from tests.support.clock import Clock

T0 = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
async def clocked(database_url: str) -> Any:
    """A store on a migrated database whose clock the test moves."""
    await upgrade(database_url)
    clock = Clock(T0)
    store = await Store.open(database_url, clock=clock)
    try:
        yield store, clock
    finally:
        await store.close()


async def _raw(store: Store, table: str) -> list[dict[str, Any]]:
    async with store.engine.connect() as connection:
        result = await connection.execute(sa.text(f"SELECT * FROM {table}"))
        return [dict(row._mapping) for row in result]


def _without_secret(plaintext: str) -> str:
    return plaintext.rsplit("_", 1)[1]


# URLs and migrations


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///relay.sqlite", "sqlite+aiosqlite:///relay.sqlite"),
        ("sqlite+aiosqlite:///relay.sqlite", "sqlite+aiosqlite:///relay.sqlite"),
        ("sqlite://", "sqlite+aiosqlite://"),
        ("postgresql://u:p@h:5432/db", "postgresql+asyncpg://u:p@h:5432/db"),
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+psycopg2://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
    ],
)
def test_normalise_url_picks_the_async_driver(given: str, expected: str) -> None:
    assert normalise_url(given).render_as_string(hide_password=False) == expected


@pytest.mark.parametrize("url", ["mysql://u@h/db", "sqlite+pysqlcipher:///x", "oracle://h"])
def test_normalise_url_refuses_other_databases(url: str) -> None:
    with pytest.raises(ValueError, match="unsupported"):
        normalise_url(url)


async def test_migrations_reach_head_and_match_the_models(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        with pytest.raises(SchemaNotCurrent) as caught:
            await check_schema(engine)
        assert caught.value.current is None
        assert "erp-relay db upgrade" in str(caught.value)

        await upgrade(database_url)
        await upgrade(database_url)  # idempotent
        await check_schema(engine)
        async with engine.connect() as connection:
            assert await current_revision(connection) == head_revision()

            def diff(sync_connection: Connection) -> list[Any]:
                context = MigrationContext.configure(sync_connection, opts={"compare_type": True})
                return list(compare_metadata(context, metadata))

            assert await connection.run_sync(diff) == []
    finally:
        await engine.dispose()


async def test_a_newer_schema_is_accepted_for_rolling_deploys(database_url: str) -> None:
    """A replica of the previous release restarting mid-deploy finds the schema a newer
    release migrated (additive only): it starts; an older schema is still refused."""
    await upgrade(database_url)
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(sa.text("UPDATE alembic_version SET version_num = 'f00d'"))
        await check_schema(engine)
        async with engine.begin() as connection:
            await connection.execute(sa.text("UPDATE alembic_version SET version_num = '0001'"))
        with pytest.raises(SchemaNotCurrent):
            await check_schema(engine)
    finally:
        await engine.dispose()


async def test_open_refuses_a_database_not_at_head(database_url: str) -> None:
    with pytest.raises(SchemaNotCurrent):
        await Store.open(database_url)
    store = await Store.open(database_url, require_current_schema=False)
    await store.ping()
    await store.close()


async def test_downgrade_and_upgrade_again(database_url: str) -> None:
    await upgrade(database_url)
    await downgrade(database_url, "base")
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda c: sa.inspect(c).get_table_names())
        assert set(tables) <= {"alembic_version"}
    finally:
        await engine.dispose()
    await upgrade(database_url)


async def test_ping(store: Store) -> None:
    await store.ping()


async def test_ping_raises_when_the_database_is_unreachable() -> None:
    store = Store(create_engine("postgresql://nobody@127.0.0.1:1/none"))
    try:
        with pytest.raises(ConnectionRefusedError):
            await store.ping()
    finally:
        await store.close()


# Agents


async def test_create_agent_issues_a_working_token(clocked: Any) -> None:
    store, _ = clocked
    secret = await store.create_agent("shop-1")
    assert secret.plaintext.startswith(f"erpa_{secret.public_id}_")
    identity = await store.authenticate_agent(secret.plaintext)
    assert identity is not None
    assert identity.agent_name == "shop-1"
    assert identity.token_public_id == secret.public_id
    assert isinstance(identity.agent_id, int)

    record = await store.get_agent("shop-1")
    assert record is not None
    assert record.name == "shop-1"
    assert record.created_at == T0
    assert record.created_at.tzinfo is not None
    assert not record.revoked
    assert record.last_seen_at is None
    assert await store.get_agent("nobody") is None


@pytest.mark.parametrize(
    "name", ["", "Shop", "-shop", ".shop", "shop 1", "a" * 64, "shop/1", "sklep-ł", "shop\n"]
)
async def test_create_agent_refuses_bad_names(store: Store, name: str) -> None:
    with pytest.raises(ValueError, match="invalid agent name"):
        await store.create_agent(name)
    assert await store.list_agents() == []


async def test_create_agent_accepts_the_longest_name(store: Store) -> None:
    name = "a" + "b._-9" * 12 + "z" * 2
    assert len(name) == 63
    await store.create_agent(name)
    assert await store.get_agent(name) is not None


async def test_duplicate_agent_is_refused_even_after_revocation(store: Store) -> None:
    await store.create_agent("shop-1")
    with pytest.raises(AlreadyExists):
        await store.create_agent("shop-1")
    await store.revoke_agent("shop-1")
    with pytest.raises(AlreadyExists):
        await store.create_agent("shop-1")


async def test_list_agents_is_sorted_by_name(store: Store) -> None:
    for name in ("zeta", "alpha", "mid.1"):
        await store.create_agent(name)
    assert [a.name for a in await store.list_agents()] == ["alpha", "mid.1", "zeta"]


async def test_add_agent_token_gives_a_second_valid_token(store: Store) -> None:
    first = await store.create_agent("shop-1")
    second = await store.add_agent_token("shop-1")
    assert second.public_id != first.public_id
    for secret in (first, second):
        identity = await store.authenticate_agent(secret.plaintext)
        assert identity is not None
        assert identity.token_public_id == secret.public_id
    with pytest.raises(NotFoundError):
        await store.add_agent_token("nobody")


async def test_revoke_one_token_keeps_the_others(store: Store) -> None:
    first = await store.create_agent("shop-1")
    second = await store.add_agent_token("shop-1")
    await store.revoke_agent_token(first.public_id)
    await store.revoke_agent_token(first.public_id)  # twice is fine
    assert await store.authenticate_agent(first.plaintext) is None
    assert await store.authenticate_agent(second.plaintext) is not None
    with pytest.raises(NotFoundError):
        await store.revoke_agent_token("nonexistent0")


async def test_revoke_agent_rejects_all_its_tokens(store: Store) -> None:
    first = await store.create_agent("shop-1")
    second = await store.add_agent_token("shop-1")
    other = await store.create_agent("shop-2")
    await store.revoke_agent("shop-1")
    await store.revoke_agent("shop-1")
    assert await store.authenticate_agent(first.plaintext) is None
    assert await store.authenticate_agent(second.plaintext) is None
    assert await store.authenticate_agent(other.plaintext) is not None
    record = await store.get_agent("shop-1")
    assert record is not None
    assert record.revoked
    with pytest.raises(Revoked):
        await store.add_agent_token("shop-1")
    with pytest.raises(NotFoundError):
        await store.revoke_agent("nobody")
    tokens = await _raw(store, "agent_tokens")
    assert all(
        row["revoked_at"] is not None for row in tokens if row["public_id"] != other.public_id
    )


async def test_agent_token_with_wrong_secret_is_rejected(store: Store) -> None:
    secret = await store.create_agent("shop-1")
    forged = f"erpa_{secret.public_id}_{'A' * 43}"
    assert await store.authenticate_agent(forged) is None
    stranger = generate(SecretKind.AGENT_TOKEN)
    assert await store.authenticate_agent(stranger.plaintext) is None


@pytest.mark.parametrize(
    "garbage",
    ["", "erpa_", "Bearer x", "x" * 100_000, "erpa_' OR 1=1 --_" + "a" * 43, "\x00" * 61],
)
async def test_garbage_credentials_are_rejected(store: Store, garbage: str) -> None:
    await store.create_agent("shop-1")
    assert await store.authenticate_agent(garbage) is None
    assert await store.authenticate_api_key(garbage) is None


async def test_api_key_is_not_an_agent_token(store: Store) -> None:
    token = await store.create_agent("shop-1")
    key = await store.create_api_key("crm", ["*"], ["*"])
    assert await store.authenticate_agent(key.plaintext) is None
    assert await store.authenticate_api_key(token.plaintext) is None


async def test_record_agent_seen(store: Store) -> None:
    await store.create_agent("shop-1")
    seen = dt.datetime(2025, 3, 2, 8, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    await store.record_agent_seen(
        "shop-1",
        at=seen,
        version="1.2.3",
        connector="subiekt",
        erp="Subiekt GT 1.74" + "x" * 500,
        address="203.0.113.7",
    )
    record = await store.get_agent("shop-1")
    assert record is not None
    assert record.last_seen_at == seen
    assert record.last_seen_at.utcoffset() == dt.timedelta(0)
    assert record.last_version == "1.2.3"
    assert record.last_connector == "subiekt"
    assert record.last_erp is not None
    assert record.last_erp.startswith("Subiekt GT 1.74")
    assert len(record.last_erp) == 128
    assert record.last_address == "203.0.113.7"
    with pytest.raises(NotFoundError):
        await store.record_agent_seen(
            "nobody", at=seen, version=None, connector=None, erp=None, address=None
        )


async def test_naive_datetimes_are_refused(store: Store) -> None:
    await store.create_agent("shop-1")
    with pytest.raises(sa.exc.StatementError):
        await store.record_agent_seen(
            "shop-1",
            at=dt.datetime(2025, 1, 1),
            version=None,
            connector=None,
            erp=None,
            address=None,
        )


async def test_last_used_is_written_at_most_once_a_minute(clocked: Any) -> None:
    store, clock = clocked
    token = await store.create_agent("shop-1")
    key = await store.create_api_key("crm", ["*"], ["*"])

    async def last_used(table: str, public_id: str) -> dt.datetime | None:
        rows = [r for r in await _raw(store, table) if r["public_id"] == public_id]
        value: dt.datetime | str | None = rows[0]["last_used_at"]
        if isinstance(value, str):  # SQLite without the column's type decorator
            value = dt.datetime.fromisoformat(value)
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value

    for table, public_id, authenticate, plaintext in (
        ("agent_tokens", token.public_id, store.authenticate_agent, token.plaintext),
        ("api_keys", key.public_id, store.authenticate_api_key, key.plaintext),
    ):
        clock.now = T0
        assert await last_used(table, public_id) is None
        assert await authenticate(plaintext) is not None
        assert await last_used(table, public_id) == T0
        clock.now = T0 + dt.timedelta(seconds=30)
        assert await authenticate(plaintext) is not None
        assert await last_used(table, public_id) == T0
        clock.now = T0 + dt.timedelta(minutes=2)
        assert await authenticate(plaintext) is not None
        assert await last_used(table, public_id) == clock.now


# API keys


async def test_api_key_lifecycle(clocked: Any) -> None:
    store, _ = clocked
    secret = await store.create_api_key("crm", ["shop-1", "shop-2", "shop-1"], ["customers.*"])
    assert secret.plaintext.startswith(f"erpk_{secret.public_id}_")
    record = await store.authenticate_api_key(secret.plaintext)
    assert record is not None
    assert record.public_id == secret.public_id
    assert record.name == "crm"
    assert record.agents == ("shop-1", "shop-2")
    assert record.operations == ("customers.*",)
    assert record.created_at == T0
    assert record.revoked_at is None

    other = await store.create_api_key("erp-sync", ["*"], ["orders.create", "ping"])
    listed = await store.list_api_keys()
    assert [k.public_id for k in listed] == [secret.public_id, other.public_id]
    assert listed[1].agents == ("*",)

    await store.revoke_api_key(secret.public_id)
    await store.revoke_api_key(secret.public_id)
    assert await store.authenticate_api_key(secret.plaintext) is None
    assert await store.authenticate_api_key(other.plaintext) is not None
    listed = await store.list_api_keys()
    assert listed[0].revoked_at == T0
    assert listed[0].revoked
    with pytest.raises(NotFoundError):
        await store.revoke_api_key("nonexistent0")


async def test_api_key_with_wrong_secret_is_rejected(store: Store) -> None:
    secret = await store.create_api_key("crm", ["*"], ["*"])
    assert await store.authenticate_api_key(f"erpk_{secret.public_id}_{'b' * 43}") is None


@pytest.mark.parametrize(
    ("agents", "operations", "message"),
    [
        ([], ["*"], "at least one agent"),
        (["*"], [], "at least one operation"),
        (["Shop"], ["*"], "invalid agent name"),
        (["*"], ["customers.gett"], "unknown operation"),
        (["*"], ["customer.*"], "unknown operation group"),
        (["*"], ["customers"], "unknown operation"),
    ],
)
async def test_api_key_grants_are_validated(
    store: Store, agents: list[str], operations: list[str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await store.create_api_key("crm", agents, operations)
    assert await store.list_api_keys() == []


@pytest.mark.parametrize("name", ["", "   ", "x" * 101, "tab\there"])
async def test_api_key_names_are_validated(store: Store, name: str) -> None:
    with pytest.raises(ValueError, match="API key name"):
        await store.create_api_key(name, ["*"], ["*"])


async def test_star_absorbs_other_grants(store: Store) -> None:
    await store.create_api_key("crm", ["shop-1", "*"], ["orders.get", "*"])
    (record,) = await store.list_api_keys()
    assert record.agents == ("*",)
    assert record.operations == ("*",)


def _key(agents: tuple[str, ...], operations: tuple[str, ...]) -> ApiKeyRecord:
    return ApiKeyRecord("abcdefghijkl", "k", agents, operations, T0, None)


def test_grant_wildcards() -> None:
    everything = _key(("*",), ("*",))
    assert everything.allows_agent("any")
    assert everything.allows_operation("orders.create")
    assert everything.allows_operation("ping")

    narrow = _key(("shop-1",), ("customers.*", "orders.get"))
    assert narrow.allows_agent("shop-1")
    assert not narrow.allows_agent("shop-2")
    assert not narrow.allows_agent("shop-1x")
    assert narrow.allows_operation("customers.get")
    assert narrow.allows_operation("customers.create")
    assert narrow.allows_operation("orders.get")
    assert not narrow.allows_operation("orders.create")
    assert not narrow.allows_operation("customers")
    assert not narrow.allows_operation("ping")
    assert not narrow.allows_operation("customersx.get")
    assert not narrow.allows_operation("*")

    ping_only = _key(("*",), ("ping",))
    assert ping_only.allows_operation("ping")
    assert not ping_only.allows_operation("ping.x")


# Secrets at rest


async def test_only_hashes_are_stored(store: Store) -> None:
    token = await store.create_agent("shop-1")
    token2 = await store.add_agent_token("shop-1")
    key = await store.create_api_key("crm", ["*"], ["*"])

    dumped = ""
    for table in ("agents", "agent_tokens", "api_keys"):
        dumped += repr(await _raw(store, table))
    for secret in (token, token2, key):
        assert secret.plaintext not in dumped
        assert _without_secret(secret.plaintext) not in dumped
        assert secret.public_id in dumped
    tokens = await _raw(store, "agent_tokens")
    assert all(len(row["secret_hash"]) == 64 for row in tokens)


# Call log


def _row(i: int, *, agent: str = "shop-1", at: dt.datetime | None = None) -> CallLogRow:
    return CallLogRow(
        at=at or T0 + dt.timedelta(seconds=i),
        api_key_id="abcdefghijkl" if i % 2 else None,
        agent_name=agent,
        operation="customers.get",
        status=200 if i % 3 else 504,
        code=None if i % 3 else "agent_timeout",
        duration_ms=12.5 + i,
        request_id=f"req-{i}",
    )


async def test_call_log_bulk_write_and_recent_calls(store: Store) -> None:
    rows = [_row(i) for i in range(1200)] + [_row(i, agent="shop-2") for i in range(5)]
    await store.write_call_log(rows)
    await store.write_call_log([])

    recent = await store.recent_calls("shop-1", 10)
    assert recent == sorted(rows[:1200], key=lambda r: r.at, reverse=True)[:10]
    assert recent[0].at.tzinfo is not None
    assert len(await store.recent_calls("shop-2", 100)) == 5
    assert await store.recent_calls("nobody", 10) == []
    assert await store.recent_calls("shop-1", 0) == []
    assert len(await _raw(store, "call_log")) == 1205


async def test_call_log_uses_one_executemany(store: Store) -> None:
    statements: list[tuple[str, bool]] = []

    def on_execute(*args: Any) -> None:
        statement, executemany = args[2], args[5]
        statements.append((statement, executemany))

    sa.event.listen(store.engine.sync_engine, "before_cursor_execute", on_execute)
    try:
        await store.write_call_log([_row(i) for i in range(50)])
    finally:
        sa.event.remove(store.engine.sync_engine, "before_cursor_execute", on_execute)
    inserts = [s for s in statements if s[0].lstrip().upper().startswith("INSERT")]
    assert len(inserts) == 1
    assert inserts[0][1] is True


async def test_call_log_clips_overlong_strings(store: Store) -> None:
    row = CallLogRow(
        at=T0,
        api_key_id="k" * 40,
        agent_name="a" * 300,
        operation="o" * 300,
        status=404,
        code="c" * 300,
        duration_ms=0.5,
        request_id="r" * 300,
    )
    await store.write_call_log([row, _row(1, agent="a" * 63)])
    recent = await store.recent_calls("a" * 63, 10)
    assert len(recent) == 2
    clipped = next(r for r in recent if r.status == 404)
    assert clipped.operation == "o" * 100
    assert clipped.code == "c" * 64
    assert clipped.request_id == "r" * 128
    assert clipped.api_key_id == "k" * 12


async def test_ties_in_time_come_newest_insert_first(store: Store) -> None:
    await store.write_call_log([_row(i, at=T0) for i in range(3)])
    assert [r.request_id for r in await store.recent_calls("shop-1", 3)] == [
        "req-2",
        "req-1",
        "req-0",
    ]


def test_alembic_commands_work_without_a_shared_connection(database_url: str) -> None:
    """The path a developer uses (`alembic_config(url)` with Alembic's own commands)."""
    upgrade_sync(database_url)
    config = alembic_config(database_url)
    command.check(config)  # raises if the models and the migrations disagree
    command.current(config)
