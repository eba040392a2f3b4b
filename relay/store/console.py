"""`ConsoleStore`: operators, their sessions, the audit log and the event log.

Like `Store`, every method is one short transaction returning frozen records. Password hashes
leave this module only through `operator_for_sign_in`, which the sign-in check alone calls;
sessions are found by the SHA-256 of their cookie secret, never by the secret.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from relay.store import models
from relay.store.db import stamp_once
from relay.store.errors import AlreadyExists

Clock = Callable[[], dt.datetime]
JSONObject = Mapping[str, Any]

ROLES = ("viewer", "admin")
USERNAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._@-]{0,63}", re.ASCII)
_EXPORT_BATCH = 500


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def validate_username(username: str) -> str:
    if USERNAME_PATTERN.fullmatch(username) is None:
        raise ValueError(
            f"invalid username {username!r}: use 1-64 characters of a-z, 0-9, '.', '_', '@', "
            "'-', starting with a letter or digit"
        )
    return username


def validate_role(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"invalid role {role!r}: use one of {', '.join(ROLES)}")
    return role


@dataclass(frozen=True, slots=True)
class OperatorRecord:
    id: int
    username: str
    role: str
    created_at: dt.datetime
    disabled_at: dt.datetime | None
    last_login_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A signed-in operator's session, as found by its cookie's hash."""

    operator_id: int
    username: str
    role: str
    operator_disabled: bool
    created_at: dt.datetime
    expires_at: dt.datetime
    last_seen_at: dt.datetime


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: dt.datetime
    actor: str
    action: str
    target: str | None
    details: dict[str, Any] | None
    address: str | None
    request_id: str | None


@dataclass(frozen=True, slots=True)
class EventRecord:
    id: int
    at: dt.datetime
    kind: str
    agent: str | None
    data: dict[str, Any]


def _clip(value: str | None, limit: int) -> str | None:
    return None if value is None else value[:limit]


def _operator(row: Any) -> OperatorRecord:
    return OperatorRecord(
        id=row.id,
        username=row.username,
        role=row.role,
        created_at=row.created_at,
        disabled_at=row.disabled_at,
        last_login_at=row.last_login_at,
    )


def _audit(row: Any) -> AuditEntry:
    return AuditEntry(
        id=row.id,
        at=row.at,
        actor=row.actor,
        action=row.action,
        target=row.target,
        details=row.details,
        address=row.address,
        request_id=row.request_id,
    )


def _event(row: Any) -> EventRecord:
    return EventRecord(
        id=row.id, at=row.at, kind=row.kind, agent=row.agent_name, data=row.data or {}
    )


_OPERATOR_COLUMNS = (
    models.operators.c.id,
    models.operators.c.username,
    models.operators.c.role,
    models.operators.c.created_at,
    models.operators.c.disabled_at,
    models.operators.c.last_login_at,
)


class ConsoleStore:
    def __init__(self, engine: AsyncEngine, *, clock: Clock = utcnow) -> None:
        self._engine = engine
        self._clock = clock

    def now(self) -> dt.datetime:
        return self._clock()

    # Operators

    async def create_operator(self, username: str, password_hash: str, role: str) -> None:
        validate_username(username)
        validate_role(role)
        try:
            async with self._engine.begin() as connection:
                await connection.execute(
                    models.operators.insert().values(
                        username=username,
                        password_hash=password_hash,
                        role=role,
                        created_at=self._clock(),
                    )
                )
        except IntegrityError as exc:
            raise AlreadyExists(f"operator {username!r} already exists") from exc

    async def list_operators(self) -> list[OperatorRecord]:
        async with self._engine.connect() as connection:
            result = await connection.execute(
                sa.select(*_OPERATOR_COLUMNS).order_by(models.operators.c.username)
            )
            return [_operator(row) for row in result]

    async def disable_operator(self, username: str) -> None:
        """Disable an operator and end their sessions; disabling twice is not an error."""
        operators = models.operators
        async with self._engine.begin() as connection:
            operator_id = await stamp_once(
                connection,
                operators.c.username,
                username,
                operators.c.disabled_at,
                self._clock(),
                "operator",
            )
            await connection.execute(
                models.operator_sessions.delete().where(
                    models.operator_sessions.c.operator_id == operator_id
                )
            )

    async def operator_for_sign_in(self, username: str) -> tuple[OperatorRecord, str] | None:
        """An enabled operator and their password hash, for the sign-in check only."""
        operators = models.operators
        async with self._engine.connect() as connection:
            row = (
                await connection.execute(
                    sa.select(*_OPERATOR_COLUMNS, operators.c.password_hash).where(
                        operators.c.username == username, operators.c.disabled_at.is_(None)
                    )
                )
            ).one_or_none()
        return None if row is None else (_operator(row), row.password_hash)

    async def signed_in(self, operator_id: int, *, new_password_hash: str | None = None) -> None:
        """Record a sign-in, replacing the hash when its parameters were outdated."""
        values: dict[str, Any] = {"last_login_at": self._clock()}
        if new_password_hash is not None:
            values["password_hash"] = new_password_hash
        async with self._engine.begin() as connection:
            await connection.execute(
                models.operators.update().where(models.operators.c.id == operator_id).values(values)
            )

    # Sessions

    async def create_session(
        self,
        operator_id: int,
        token_hash: str,
        *,
        created_at: dt.datetime,
        expires_at: dt.datetime,
        address: str | None,
    ) -> None:
        async with self._engine.begin() as connection:
            await connection.execute(
                models.operator_sessions.insert().values(
                    token_hash=token_hash,
                    operator_id=operator_id,
                    created_at=created_at,
                    expires_at=expires_at,
                    last_seen_at=created_at,
                    address=_clip(address, models.ADDRESS_MAX),
                )
            )

    async def session(self, token_hash: str) -> SessionRecord | None:
        sessions, operators = models.operator_sessions, models.operators
        async with self._engine.connect() as connection:
            row = (
                await connection.execute(
                    sa.select(
                        sessions.c.operator_id,
                        operators.c.username,
                        operators.c.role,
                        operators.c.disabled_at,
                        sessions.c.created_at,
                        sessions.c.expires_at,
                        sessions.c.last_seen_at,
                    )
                    .join(operators, operators.c.id == sessions.c.operator_id)
                    .where(sessions.c.token_hash == token_hash)
                )
            ).one_or_none()
        if row is None:
            return None
        return SessionRecord(
            operator_id=row.operator_id,
            username=row.username,
            role=row.role,
            operator_disabled=row.disabled_at is not None,
            created_at=row.created_at,
            expires_at=row.expires_at,
            last_seen_at=row.last_seen_at,
        )

    async def touch_session(self, token_hash: str, at: dt.datetime) -> None:
        sessions = models.operator_sessions
        async with self._engine.begin() as connection:
            await connection.execute(
                sessions.update().where(sessions.c.token_hash == token_hash).values(last_seen_at=at)
            )

    async def delete_session(self, token_hash: str) -> None:
        sessions = models.operator_sessions
        async with self._engine.begin() as connection:
            await connection.execute(sessions.delete().where(sessions.c.token_hash == token_hash))

    async def purge_sessions(self, *, expired_before: dt.datetime, idle_since: dt.datetime) -> int:
        sessions = models.operator_sessions
        async with self._engine.begin() as connection:
            result = await connection.execute(
                sessions.delete().where(
                    sa.or_(
                        sessions.c.expires_at <= expired_before,
                        sessions.c.last_seen_at <= idle_since,
                    )
                )
            )
            return result.rowcount

    # Audit log

    async def append_audit(
        self,
        *,
        actor: str,
        action: str,
        target: str | None,
        details: JSONObject | None,
        address: str | None,
        request_id: str | None,
    ) -> None:
        async with self._engine.begin() as connection:
            await connection.execute(
                models.audit_log.insert().values(
                    at=self._clock(),
                    actor=actor[: models.ACTOR_MAX],
                    action=action[: models.ACTION_MAX],
                    target=_clip(target, models.TARGET_MAX),
                    details=dict(details) if details is not None else None,
                    address=_clip(address, models.ADDRESS_MAX),
                    request_id=_clip(request_id, models.REQUEST_ID_MAX),
                )
            )

    async def audit_page(self, *, limit: int, before: int | None = None) -> list[AuditEntry]:
        """Newest first."""
        audit = models.audit_log
        query = sa.select(audit).order_by(audit.c.id.desc()).limit(max(0, limit))
        if before is not None:
            query = query.where(audit.c.id < before)
        async with self._engine.connect() as connection:
            return [_audit(row) for row in await connection.execute(query)]

    async def audit_since(self, since: dt.datetime | None) -> AsyncIterator[AuditEntry]:
        """The whole log (from `since`), oldest first, read in batches so an export of a big
        log holds neither a connection nor all rows at once."""
        audit = models.audit_log
        after = 0
        while True:
            query = (
                sa.select(audit).where(audit.c.id > after).order_by(audit.c.id).limit(_EXPORT_BATCH)
            )
            if since is not None:
                query = query.where(audit.c.at >= since)
            async with self._engine.connect() as connection:
                rows = [_audit(row) for row in await connection.execute(query)]
            for entry in rows:
                yield entry
            if len(rows) < _EXPORT_BATCH:
                return
            after = rows[-1].id

    # Events

    async def append_events(
        self, events: Sequence[tuple[dt.datetime, str, str | None, JSONObject]]
    ) -> list[EventRecord]:
        """Insert (at, kind, agent, data) rows in order and return them with their ids."""
        inserted: list[EventRecord] = []
        async with self._engine.begin() as connection:
            for at, kind, agent, data in events:
                # One statement per row, so ids follow the order the events happened in.
                result = await connection.execute(
                    models.events.insert().values(
                        at=at,
                        kind=kind[: models.EVENT_KIND_MAX],
                        agent_name=_clip(agent, models.AGENT_NAME_MAX),
                        data=dict(data),
                    )
                )
                assert result.inserted_primary_key is not None
                inserted.append(
                    EventRecord(
                        id=int(result.inserted_primary_key[0]),
                        at=at,
                        kind=kind,
                        agent=agent,
                        data=dict(data),
                    )
                )
        return inserted

    async def events_by_id(self, ids: list[int]) -> list[EventRecord]:
        """The rows among `ids` that exist now (gaps a slower transaction may have filled)."""
        if not ids:
            return []
        events = models.events
        query = sa.select(events).where(events.c.id.in_(ids)).order_by(events.c.id)
        async with self._engine.connect() as connection:
            return [_event(row) for row in await connection.execute(query)]

    async def events_after(self, after: int, *, limit: int) -> list[EventRecord]:
        events = models.events
        query = sa.select(events).where(events.c.id > after).order_by(events.c.id).limit(limit)
        async with self._engine.connect() as connection:
            return [_event(row) for row in await connection.execute(query)]

    async def last_event_id(self) -> int:
        async with self._engine.connect() as connection:
            value = await connection.scalar(sa.select(sa.func.max(models.events.c.id)))
        return int(value or 0)

    async def agent_events(
        self, agent: str, *, limit: int, before: int | None = None
    ) -> list[EventRecord]:
        """An agent's ``agent.*`` events, newest first."""
        events = models.events
        query = (
            sa.select(events)
            .where(events.c.agent_name == agent, events.c.kind.like("agent.%"))
            .order_by(events.c.id.desc())
            .limit(max(0, limit))
        )
        if before is not None:
            query = query.where(events.c.id < before)
        async with self._engine.connect() as connection:
            return [_event(row) for row in await connection.execute(query)]

    async def purge_events(self, before: dt.datetime) -> int:
        async with self._engine.begin() as connection:
            result = await connection.execute(
                models.events.delete().where(models.events.c.at < before)
            )
            return result.rowcount
