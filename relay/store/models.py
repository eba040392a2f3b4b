"""The relay's tables, as SQLAlchemy Core, portable between SQLite and PostgreSQL.

Core rather than the ORM: the repositories issue a handful of explicit statements (one indexed
read per authentication, one bulk insert per call-log batch) and return frozen records, so an
identity map and lazy loading would only add cost and surprises under asyncio.

The migrations in `migrations/versions` are the source of truth for the deployed schema; these
definitions must match them (`tests/integration/test_store.py` compares the two).

Secrets are never stored: tokens and keys keep a SHA-256 hash of their secret part (see
`relay.secrets`). The call log keeps who called what, when, and how it ended, never payloads.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Deterministic constraint names, so later migrations can drop or alter them on both backends."""

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

AGENT_NAME_MAX = 63
PUBLIC_ID_MAX = 12
HASH_LENGTH = 64
VERSION_MAX = 64
CONNECTOR_MAX = 64
ERP_MAX = 128
ADDRESS_MAX = 255
KEY_NAME_MAX = 100
OPERATION_MAX = 100
CODE_MAX = 64
REQUEST_ID_MAX = 128
REPLICA_ID_MAX = 64
DOCUMENT_MAX = 64


class UTCDateTime(sa.TypeDecorator[dt.datetime]):
    """A timezone-aware UTC timestamp on every backend.

    PostgreSQL keeps the zone (timestamptz) but SQLite drops it and returns naive values, which
    then fail to compare with aware ones. This type converts to UTC on the way in, refuses naive
    values (a naive `datetime.now()` is local time, silently wrong), and marks values read back
    as UTC.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime given to the store; use an aware UTC datetime")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


# SQLite autoincrements only a column declared exactly INTEGER PRIMARY KEY.
BigIntId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

agents = sa.Table(
    "agents",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(AGENT_NAME_MAX), nullable=False, unique=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
    sa.Column("last_seen_at", UTCDateTime, nullable=True),
    sa.Column("last_version", sa.String(VERSION_MAX), nullable=True),
    sa.Column("last_connector", sa.String(CONNECTOR_MAX), nullable=True),
    sa.Column("last_erp", sa.String(ERP_MAX), nullable=True),
    sa.Column("last_address", sa.String(ADDRESS_MAX), nullable=True),
)

agent_tokens = sa.Table(
    "agent_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("public_id", sa.String(PUBLIC_ID_MAX), nullable=False, unique=True),
    sa.Column(
        "agent_id",
        sa.Integer,
        sa.ForeignKey("agents.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("secret_hash", sa.String(HASH_LENGTH), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
    sa.Column("last_used_at", UTCDateTime, nullable=True),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("public_id", sa.String(PUBLIC_ID_MAX), nullable=False, unique=True),
    sa.Column("name", sa.String(KEY_NAME_MAX), nullable=False),
    sa.Column("secret_hash", sa.String(HASH_LENGTH), nullable=False),
    # Agent names, or ["*"] for every agent.
    sa.Column("agents", sa.JSON, nullable=False),
    # Operation names, "group.*" patterns, or ["*"] for every operation.
    sa.Column("operations", sa.JSON, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
    sa.Column("last_used_at", UTCDateTime, nullable=True),
    # The key may also use /v1/admin/ (operators' scripts); its grants still limit agent calls.
    sa.Column("admin", sa.Boolean, nullable=False, server_default=sa.false()),
)

call_log = sa.Table(
    "call_log",
    metadata,
    sa.Column("id", BigIntId, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False),
    # The public id of the API key that made the call. Not a foreign key: the log outlives
    # revoked keys and the hot-path insert must not depend on other rows.
    sa.Column("api_key_id", sa.String(PUBLIC_ID_MAX), nullable=True),
    sa.Column("agent_name", sa.String(AGENT_NAME_MAX), nullable=False),
    sa.Column("operation", sa.String(OPERATION_MAX), nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("code", sa.String(CODE_MAX), nullable=True),
    sa.Column("duration_ms", sa.Float, nullable=False),
    sa.Column("request_id", sa.String(REQUEST_ID_MAX), nullable=False),
    # The ERP document number a write created (e.g. "ZK 12/2026"); never a payload.
    sa.Column("document", sa.String(DOCUMENT_MAX), nullable=True),
    sa.Index("ix_call_log_agent_name_at", "agent_name", "at"),
    sa.Index("ix_call_log_at", "at"),
)

# Idempotency keys of writes (relay/idempotency.py). One row per (API key, Idempotency-Key):
# the request's fingerprint and, once the outcome is definite, the exact response to replay.
IDEMPOTENCY_KEY_MAX = 255
IDEMPOTENCY_STATE_MAX = 16
CONTENT_TYPE_MAX = 100

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("id", BigIntId, primary_key=True, autoincrement=True),
    sa.Column("api_key_id", sa.String(32), nullable=False),
    sa.Column("key", sa.String(IDEMPOTENCY_KEY_MAX), nullable=False),
    sa.Column("agent_name", sa.String(AGENT_NAME_MAX), nullable=False),
    sa.Column("operation", sa.String(OPERATION_MAX), nullable=False),
    sa.Column("fingerprint", sa.String(HASH_LENGTH), nullable=False),
    # 'in_progress' | 'done' | 'unknown'
    sa.Column("state", sa.String(IDEMPOTENCY_STATE_MAX), nullable=False),
    sa.Column("status", sa.Integer, nullable=True),
    sa.Column("content_type", sa.String(CONTENT_TYPE_MAX), nullable=True),
    sa.Column("response", sa.LargeBinary, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    # The replica forwarding an ``in_progress`` row; NULL for rows of relays older than 0004.
    # Another replica marks the row unknown once this one is no longer alive.
    sa.Column("owner", sa.String(REPLICA_ID_MAX), nullable=True),
    sa.UniqueConstraint("api_key_id", "key"),
    sa.Index("ix_idempotency_keys_expires_at", "expires_at"),
    sa.Index("ix_idempotency_keys_state_owner", "state", "owner"),
)

# Durable jobs (relay/jobs.py). `id` is the order of acceptance; `args` and `result` are
# cleared when the job ends and after the retention period respectively: payloads are not kept.
JOB_PUBLIC_ID_MAX = 32
JOB_STATE_MAX = 16
WEBHOOK_URL_MAX = 2000
ERROR_MESSAGE_MAX = 1000

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", BigIntId, primary_key=True, autoincrement=True),
    sa.Column("public_id", sa.String(JOB_PUBLIC_ID_MAX), nullable=False, unique=True),
    sa.Column("api_key_id", sa.String(32), nullable=False),
    sa.Column("agent_name", sa.String(AGENT_NAME_MAX), nullable=False),
    sa.Column("operation", sa.String(OPERATION_MAX), nullable=False),
    sa.Column("args", sa.LargeBinary, nullable=True),
    sa.Column("idempotency_key", sa.String(255), nullable=True),
    sa.Column("state", sa.String(JOB_STATE_MAX), nullable=False),
    sa.Column("result", sa.LargeBinary, nullable=True),
    sa.Column("error_code", sa.String(CODE_MAX), nullable=True),
    sa.Column("error_message", sa.String(ERROR_MESSAGE_MAX), nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("not_before", UTCDateTime, nullable=True),
    sa.Column("started_at", UTCDateTime, nullable=True),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.Column("webhook_url", sa.String(WEBHOOK_URL_MAX), nullable=True),
    # The replica delivering a ``running`` job (kept after it ends, for the record). Another
    # replica puts the job back to pending once this one is no longer alive.
    sa.Column("runner", sa.String(REPLICA_ID_MAX), nullable=True),
    sa.Index("ix_jobs_agent_name_state_id", "agent_name", "state", "id"),
    sa.Index("ix_jobs_api_key_id_agent_name_id", "api_key_id", "agent_name", "id"),
    sa.Index("ix_jobs_state_runner", "state", "runner"),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", BigIntId, primary_key=True, autoincrement=True),
    sa.Column(
        "job_id",
        BigIntId,
        sa.ForeignKey("jobs.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("url", sa.String(WEBHOOK_URL_MAX), nullable=False),
    sa.Column("state", sa.String(JOB_STATE_MAX), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", UTCDateTime, nullable=True),
    sa.Column("last_status", sa.Integer, nullable=True),
    sa.Column("last_error", sa.String(ERROR_MESSAGE_MAX), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_webhook_deliveries_state_next_attempt_at", "state", "next_attempt_at"),
)

# The operations console (migration 0005): people who sign in to the dashboard, their browser
# sessions, the audit log of admin actions, and the event log behind GET /v1/events.
USERNAME_MAX = 64
PASSWORD_HASH_MAX = 255
ROLE_MAX = 16
ACTOR_MAX = 100
ACTION_MAX = 64
TARGET_MAX = 255
EVENT_KIND_MAX = 64

operators = sa.Table(
    "operators",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("username", sa.String(USERNAME_MAX), nullable=False, unique=True),
    # Argon2id, parameters and salt included (relay.console.passwords); never the password.
    sa.Column("password_hash", sa.String(PASSWORD_HASH_MAX), nullable=False),
    # 'viewer' | 'admin'
    sa.Column("role", sa.String(ROLE_MAX), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("disabled_at", UTCDateTime, nullable=True),
    sa.Column("last_login_at", UTCDateTime, nullable=True),
)

operator_sessions = sa.Table(
    "operator_sessions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # SHA-256 of the cookie's secret: a copy of the database opens no session.
    sa.Column("token_hash", sa.String(HASH_LENGTH), nullable=False, unique=True),
    sa.Column(
        "operator_id",
        sa.Integer,
        sa.ForeignKey("operators.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False, index=True),
    sa.Column("last_seen_at", UTCDateTime, nullable=False),
    sa.Column("address", sa.String(ADDRESS_MAX), nullable=True),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", BigIntId, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False, index=True),
    # "operator:<username>" or "api_key:<public id>"
    sa.Column("actor", sa.String(ACTOR_MAX), nullable=False),
    # e.g. "agent.create", "agent_token.rotate", "api_key.revoke", "connection.disconnect"
    sa.Column("action", sa.String(ACTION_MAX), nullable=False),
    sa.Column("target", sa.String(TARGET_MAX), nullable=True),
    # What was changed (grants, roles), never a secret.
    sa.Column("details", sa.JSON, nullable=True),
    sa.Column("address", sa.String(ADDRESS_MAX), nullable=True),
    sa.Column("request_id", sa.String(REQUEST_ID_MAX), nullable=True),
)

events = sa.Table(
    "events",
    metadata,
    # The event id of GET /v1/events: resuming with Last-Event-ID works on any replica.
    sa.Column("id", BigIntId, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False, index=True),
    # "agent.connected" | "agent.disconnected" | "agent.degraded" | "agent.recovered" |
    # "job.finished" ...
    sa.Column("kind", sa.String(EVENT_KIND_MAX), nullable=False),
    sa.Column("agent_name", sa.String(AGENT_NAME_MAX), nullable=True),
    # Ids, states, reasons, versions; never a payload or personal data.
    sa.Column("data", sa.JSON, nullable=True),
    sa.Index("ix_events_agent_name_id", "agent_name", "id"),
)

# The change feed (migration 0006, relay/changefeed/): changes the agents found in their ERP,
# the per-agent cursor counter, and webhook subscriptions to the feed.
STREAM_MAX = 255
CHANGE_TYPE_MAX = 64
SUBSCRIPTION_ID_MAX = 32

change_events = sa.Table(
    "change_events",
    metadata,
    sa.Column("id", BigIntId, primary_key=True, autoincrement=True),
    sa.Column("agent_name", sa.String(AGENT_NAME_MAX), nullable=False),
    # The subscriber's position: per agent, allocated from change_cursors under its row lock,
    # so it grows in commit order (relay/changefeed/store.py).
    sa.Column("cursor", sa.BigInteger, nullable=False),
    # The agent's outbox and the event's number in it: an event sent again is stored once.
    sa.Column("stream", sa.String(STREAM_MAX), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("type", sa.String(CHANGE_TYPE_MAX), nullable=False),
    sa.Column("occurred_at", UTCDateTime, nullable=False),
    sa.Column("stored_at", UTCDateTime, nullable=False, index=True),
    # The change as protocol/changes.py validated it (ERP data the subscribers asked for).
    sa.Column("data", sa.JSON, nullable=False),
    sa.UniqueConstraint("agent_name", "stream", "seq"),
    sa.UniqueConstraint("agent_name", "cursor"),
)

change_cursors = sa.Table(
    "change_cursors",
    metadata,
    sa.Column("agent_name", sa.String(AGENT_NAME_MAX), primary_key=True),
    # The last cursor handed out; the row is locked by the UPDATE that advances it.
    sa.Column("last_cursor", sa.BigInteger, nullable=False),
    # The newest cursor deleted by retention: reading after an older one missed events.
    sa.Column("purged_through", sa.BigInteger, nullable=False),
)

change_subscriptions = sa.Table(
    "change_subscriptions",
    metadata,
    sa.Column("id", BigIntId, primary_key=True, autoincrement=True),
    sa.Column("public_id", sa.String(SUBSCRIPTION_ID_MAX), nullable=False, unique=True),
    sa.Column("api_key_id", sa.String(32), nullable=False),
    sa.Column("agent_name", sa.String(AGENT_NAME_MAX), nullable=False),
    sa.Column("url", sa.String(WEBHOOK_URL_MAX), nullable=False),
    # Change types to send, or NULL for every type the key may read.
    sa.Column("types", sa.JSON, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    # Every event up to this cursor was delivered or given up on.
    sa.Column("position", sa.BigInteger, nullable=False),
    # How many events were delivered and given up on, and the last of each.
    sa.Column("delivered", sa.BigInteger, nullable=False),
    sa.Column("failed", sa.BigInteger, nullable=False),
    sa.Column("last_delivered_cursor", sa.BigInteger, nullable=True),
    sa.Column("last_delivered_at", UTCDateTime, nullable=True),
    sa.Column("last_failed_cursor", sa.BigInteger, nullable=True),
    # The event after `position` being tried: failed attempts so far, the last one, the next.
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_attempt_at", UTCDateTime, nullable=True),
    sa.Column("next_attempt_at", UTCDateTime, nullable=True),
    sa.Column("last_status", sa.Integer, nullable=True),
    sa.Column("last_error", sa.String(ERROR_MESSAGE_MAX), nullable=True),
    # The replica delivering it, until `lease_until`: one sender per subscription.
    sa.Column("runner", sa.String(REPLICA_ID_MAX), nullable=True),
    sa.Column("lease_until", UTCDateTime, nullable=True),
    sa.Index("ix_change_subscriptions_agent_name", "agent_name"),
)
