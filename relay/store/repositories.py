"""`Store`: every read and write the relay makes to its database, as async methods.

One class over one `AsyncEngine`; each method is one short transaction and returns frozen
records (`relay.store.records`), so callers never hold connections across awaits of their own.

Authentication is one indexed read by the credential's public id, then a constant-time hash
comparison. `last_used_at` is written at most once a minute per credential, so a busy CRM key
does not turn every call into a database write.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from protocol.operations.catalogue import CATALOGUE
from relay import secrets
from relay.store import models
from relay.store.db import check_schema, create_engine, stamp_once
from relay.store.errors import AlreadyExists, NotFoundError, Revoked
from relay.store.records import (
    ALL,
    AgentIdentity,
    AgentRecord,
    ApiKeyRecord,
    CallLogRow,
    NewSecret,
)

AGENT_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}", re.ASCII)
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)
_OPERATION_GROUPS = frozenset(name.partition(".")[0] for name in CATALOGUE if "." in name)

Clock = Callable[[], dt.datetime]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def validate_agent_name(name: str) -> str:
    """Return `name` if it is a valid agent name, else raise ValueError.

    Lowercase letters, digits, ``.``, ``_`` and ``-``, starting with a letter or digit, at
    most 63 characters: safe in URLs, file names, log lines and DNS labels.
    """
    if not isinstance(name, str) or AGENT_NAME_PATTERN.fullmatch(name) is None:
        raise ValueError(
            f"invalid agent name {name!r}: use 1-63 characters of a-z, 0-9, '.', '_', '-', "
            "starting with a letter or digit"
        )
    return name


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def validate_agent_grants(agents: Iterable[str]) -> tuple[str, ...]:
    """Agent names or ``*``; ``*`` absorbs everything else. Agents need not exist yet."""
    result = _unique(agents)
    if not result:
        raise ValueError("an API key needs at least one agent (or '*' for all)")
    if ALL in result:
        return (ALL,)
    for name in result:
        validate_agent_name(name)
    return result


def validate_operation_grants(operations: Iterable[str]) -> tuple[str, ...]:
    """Catalogue operation names, ``group.*`` for a known group, or ``*``.

    Checked against the catalogue so that a typo (``customer.get``) fails when the key is made
    instead of silently granting nothing.
    """
    result = _unique(operations)
    if not result:
        raise ValueError("an API key needs at least one operation (or '*' for all)")
    if ALL in result:
        return (ALL,)
    for item in result:
        group, dot, rest = item.partition(".")
        if dot and rest == "*":
            if group not in _OPERATION_GROUPS:
                known = ", ".join(sorted(_OPERATION_GROUPS))
                raise ValueError(f"unknown operation group {group!r} (known: {known})")
        elif item not in CATALOGUE:
            raise ValueError(f"unknown operation {item!r}")
    return result


def _validate_key_name(name: str) -> str:
    cleaned = name.strip()
    if not cleaned or len(cleaned) > models.KEY_NAME_MAX or not cleaned.isprintable():
        raise ValueError(f"invalid API key name: use 1-{models.KEY_NAME_MAX} printable characters")
    return cleaned


def _clip(value: str | None, limit: int) -> str | None:
    # Agent- and client-supplied strings are not trusted to fit the columns; PostgreSQL would
    # refuse the statement (SQLite would store them whole).
    return None if value is None else value[:limit]


def _agent_record(row: Any) -> AgentRecord:
    return AgentRecord(
        name=row.name,
        created_at=row.created_at,
        revoked=row.revoked_at is not None,
        last_seen_at=row.last_seen_at,
        last_version=row.last_version,
        last_connector=row.last_connector,
        last_erp=row.last_erp,
        last_address=row.last_address,
    )


def _api_key_record(row: Any) -> ApiKeyRecord:
    return ApiKeyRecord(
        public_id=row.public_id,
        name=row.name,
        agents=tuple(row.agents),
        operations=tuple(row.operations),
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
        admin=bool(row.admin),
    )


def _call_log_row(row: Any) -> CallLogRow:
    return CallLogRow(
        at=row.at,
        api_key_id=row.api_key_id,
        agent_name=row.agent_name,
        operation=row.operation,
        status=row.status,
        code=row.code,
        duration_ms=row.duration_ms,
        request_id=row.request_id,
    )


_AGENT_COLUMNS = (
    models.agents.c.name,
    models.agents.c.created_at,
    models.agents.c.revoked_at,
    models.agents.c.last_seen_at,
    models.agents.c.last_version,
    models.agents.c.last_connector,
    models.agents.c.last_erp,
    models.agents.c.last_address,
)


class Store:
    """The relay's database. Build with `Store(engine)` or `await Store.open(url)`."""

    def __init__(self, engine: AsyncEngine, *, clock: Clock = utcnow) -> None:
        self._engine = engine
        self._clock = clock

    @classmethod
    async def open(
        cls, url: str | URL, *, require_current_schema: bool = True, clock: Clock = utcnow
    ) -> Self:
        """Create the engine for `url`; by default refuse a database not migrated to head."""
        engine = create_engine(url)
        try:
            if require_current_schema:
                await check_schema(engine)
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine, clock=clock)

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    @property
    def clock(self) -> Clock:
        """The time source, shared with the stores built on the same engine."""
        return self._clock

    async def close(self) -> None:
        await self._engine.dispose()

    async def ping(self) -> None:
        """Raise if the database cannot answer a trivial query."""
        async with self._engine.connect() as connection:
            await connection.execute(sa.text("SELECT 1"))

    # Agents

    async def create_agent(self, name: str) -> NewSecret:
        """Register an agent and issue its first token. Names stay taken after revocation."""
        validate_agent_name(name)
        generated = secrets.generate(secrets.SecretKind.AGENT_TOKEN)
        now = self._clock()
        try:
            async with self._engine.begin() as connection:
                existing = await connection.scalar(
                    sa.select(models.agents.c.id).where(models.agents.c.name == name)
                )
                if existing is not None:
                    raise AlreadyExists(f"agent {name!r} already exists")
                inserted = await connection.execute(
                    models.agents.insert().values(name=name, created_at=now)
                )
                assert inserted.inserted_primary_key is not None
                agent_id = inserted.inserted_primary_key[0]
                await self._insert_token(connection, agent_id, generated, now)
        except IntegrityError as exc:
            # A concurrent create of the same name won the race.
            raise AlreadyExists(f"agent {name!r} already exists") from exc
        return NewSecret(generated.public_id, generated.plaintext)

    async def add_agent_token(self, name: str) -> NewSecret:
        """Issue another token for an agent, e.g. to rotate without downtime."""
        generated = secrets.generate(secrets.SecretKind.AGENT_TOKEN)
        now = self._clock()
        async with self._engine.begin() as connection:
            row = (
                await connection.execute(
                    sa.select(models.agents.c.id, models.agents.c.revoked_at).where(
                        models.agents.c.name == name
                    )
                )
            ).one_or_none()
            if row is None:
                raise NotFoundError(f"no agent {name!r}")
            if row.revoked_at is not None:
                raise Revoked(f"agent {name!r} is revoked")
            await self._insert_token(connection, row.id, generated, now)
        return NewSecret(generated.public_id, generated.plaintext)

    @staticmethod
    async def _insert_token(
        connection: AsyncConnection,
        agent_id: int,
        generated: secrets.GeneratedSecret,
        now: dt.datetime,
    ) -> None:
        await connection.execute(
            models.agent_tokens.insert().values(
                public_id=generated.public_id,
                agent_id=agent_id,
                secret_hash=generated.secret_hash,
                created_at=now,
            )
        )

    async def revoke_agent(self, name: str) -> None:
        """Revoke an agent and every one of its tokens. Revoking twice is not an error."""
        now = self._clock()
        async with self._engine.begin() as connection:
            agents = models.agents
            agent_id = await stamp_once(
                connection, agents.c.name, name, agents.c.revoked_at, now, "agent"
            )
            await connection.execute(
                models.agent_tokens.update()
                .where(
                    models.agent_tokens.c.agent_id == agent_id,
                    models.agent_tokens.c.revoked_at.is_(None),
                )
                .values(revoked_at=now)
            )

    async def revoke_agent_token(self, public_id: str) -> None:
        """Revoke one token; the agent and its other tokens stay valid."""
        tokens = models.agent_tokens
        async with self._engine.begin() as connection:
            await stamp_once(
                connection,
                tokens.c.public_id,
                public_id,
                tokens.c.revoked_at,
                self._clock(),
                "agent token",
            )

    async def list_agents(self) -> list[AgentRecord]:
        async with self._engine.connect() as connection:
            result = await connection.execute(
                sa.select(*_AGENT_COLUMNS).order_by(models.agents.c.name)
            )
            return [_agent_record(row) for row in result]

    async def get_agent(self, name: str) -> AgentRecord | None:
        async with self._engine.connect() as connection:
            row = (
                await connection.execute(
                    sa.select(*_AGENT_COLUMNS).where(models.agents.c.name == name)
                )
            ).one_or_none()
        return None if row is None else _agent_record(row)

    async def authenticate_agent(self, plaintext_token: str) -> AgentIdentity | None:
        """The agent behind a presented token, or None for anything not live and valid."""
        parsed = secrets.parse(plaintext_token, secrets.SecretKind.AGENT_TOKEN)
        if parsed is None:
            return None
        public_id, secret = parsed
        tokens, agents = models.agent_tokens, models.agents
        async with self._engine.connect() as connection:
            row = (
                await connection.execute(
                    sa.select(
                        tokens.c.id,
                        tokens.c.secret_hash,
                        tokens.c.revoked_at,
                        tokens.c.last_used_at,
                        agents.c.id.label("agent_id"),
                        agents.c.name.label("agent_name"),
                        agents.c.revoked_at.label("agent_revoked_at"),
                    )
                    .join(agents, agents.c.id == tokens.c.agent_id)
                    .where(tokens.c.public_id == public_id)
                )
            ).one_or_none()
        if row is None or not secrets.verify(secret, row.secret_hash):
            return None
        if row.revoked_at is not None or row.agent_revoked_at is not None:
            return None
        await self._touch(tokens, row.id, row.last_used_at)
        return AgentIdentity(
            agent_id=row.agent_id, agent_name=row.agent_name, token_public_id=public_id
        )

    async def record_agent_seen(
        self,
        name: str,
        *,
        at: dt.datetime,
        version: str | None,
        connector: str | None,
        erp: str | None,
        address: str | None,
    ) -> None:
        """Remember what an agent reported when it last connected (shown by `agents list`)."""
        async with self._engine.begin() as connection:
            result = await connection.execute(
                models.agents.update()
                .where(models.agents.c.name == name)
                .values(
                    last_seen_at=at,
                    last_version=_clip(version, models.VERSION_MAX),
                    last_connector=_clip(connector, models.CONNECTOR_MAX),
                    last_erp=_clip(erp, models.ERP_MAX),
                    last_address=_clip(address, models.ADDRESS_MAX),
                )
            )
            if result.rowcount == 0:
                raise NotFoundError(f"no agent {name!r}")

    # API keys

    async def create_api_key(
        self, name: str, agents: Iterable[str], operations: Iterable[str], *, admin: bool = False
    ) -> NewSecret:
        """Issue an API key limited to `agents` and `operations` (see `ApiKeyRecord`); an
        `admin` key may also use /v1/admin/.

        Raises ValueError for an empty grant, a bad agent name or an unknown operation.
        """
        key_name = _validate_key_name(name)
        agent_grants = validate_agent_grants(agents)
        operation_grants = validate_operation_grants(operations)
        generated = secrets.generate(secrets.SecretKind.API_KEY)
        async with self._engine.begin() as connection:
            await connection.execute(
                models.api_keys.insert().values(
                    public_id=generated.public_id,
                    name=key_name,
                    secret_hash=generated.secret_hash,
                    agents=list(agent_grants),
                    operations=list(operation_grants),
                    created_at=self._clock(),
                    admin=admin,
                )
            )
        return NewSecret(generated.public_id, generated.plaintext)

    async def list_api_keys(self) -> list[ApiKeyRecord]:
        keys = models.api_keys
        async with self._engine.connect() as connection:
            result = await connection.execute(
                sa.select(*_api_key_columns()).order_by(keys.c.created_at, keys.c.id)
            )
            return [_api_key_record(row) for row in result]

    async def api_key(self, public_id: str) -> ApiKeyRecord | None:
        """A key's grants by its public id (revoked keys too): for work done on a key's behalf
        later, such as a change-feed webhook, which must follow the key's current grants."""
        query = sa.select(*_api_key_columns()).where(models.api_keys.c.public_id == public_id)
        async with self._engine.connect() as connection:
            row = (await connection.execute(query)).one_or_none()
        return None if row is None else _api_key_record(row)

    async def revoke_api_key(self, public_id: str) -> None:
        """Revoke a key; revoking twice is not an error."""
        keys = models.api_keys
        async with self._engine.begin() as connection:
            await stamp_once(
                connection, keys.c.public_id, public_id, keys.c.revoked_at, self._clock(), "API key"
            )

    async def authenticate_api_key(self, plaintext: str) -> ApiKeyRecord | None:
        """The live key behind a presented API key, or None."""
        parsed = secrets.parse(plaintext, secrets.SecretKind.API_KEY)
        if parsed is None:
            return None
        public_id, secret = parsed
        keys = models.api_keys
        async with self._engine.connect() as connection:
            row = (
                await connection.execute(
                    sa.select(keys.c.id, keys.c.secret_hash, *_api_key_columns()).where(
                        keys.c.public_id == public_id
                    )
                )
            ).one_or_none()
        if row is None or not secrets.verify(secret, row.secret_hash):
            return None
        if row.revoked_at is not None:
            return None
        await self._touch(keys, row.id, row.last_used_at)
        return _api_key_record(row)

    async def _touch(self, table: sa.Table, row_id: int, last_used_at: dt.datetime | None) -> None:
        now = self._clock()
        if last_used_at is not None and now - last_used_at < LAST_USED_RESOLUTION:
            return
        async with self._engine.begin() as connection:
            await connection.execute(
                table.update().where(table.c.id == row_id).values(last_used_at=now)
            )

    # Call log

    async def write_call_log(self, rows: Sequence[CallLogRow]) -> None:
        """Insert a batch of call-log rows in one executemany.

        Strings are clipped to their columns: rows describe calls that may name agents or
        operations that do not exist, and one overlong name must not make PostgreSQL refuse
        the whole batch.
        """
        if not rows:
            return
        params = [
            {
                "at": row.at,
                "api_key_id": _clip(row.api_key_id, models.PUBLIC_ID_MAX),
                "agent_name": row.agent_name[: models.AGENT_NAME_MAX],
                "operation": row.operation[: models.OPERATION_MAX],
                "status": row.status,
                "code": _clip(row.code, models.CODE_MAX),
                "duration_ms": row.duration_ms,
                "request_id": row.request_id[: models.REQUEST_ID_MAX],
                "document": _clip(row.document, models.DOCUMENT_MAX),
            }
            for row in rows
        ]
        async with self._engine.begin() as connection:
            await connection.execute(models.call_log.insert(), params)

    async def recent_calls(self, agent_name: str, limit: int = 50) -> list[CallLogRow]:
        """The newest calls to one agent, newest first."""
        log = models.call_log
        async with self._engine.connect() as connection:
            result = await connection.execute(
                sa.select(
                    log.c.at,
                    log.c.api_key_id,
                    log.c.agent_name,
                    log.c.operation,
                    log.c.status,
                    log.c.code,
                    log.c.duration_ms,
                    log.c.request_id,
                )
                .where(log.c.agent_name == agent_name)
                .order_by(log.c.at.desc(), log.c.id.desc())
                .limit(max(0, limit))
            )
            return [_call_log_row(row) for row in result]


def _api_key_columns() -> tuple[sa.Column[Any], ...]:
    keys = models.api_keys
    return (
        keys.c.public_id,
        keys.c.name,
        keys.c.agents,
        keys.c.operations,
        keys.c.created_at,
        keys.c.revoked_at,
        keys.c.last_used_at,
        keys.c.admin,
    )
