"""The operations console: operators, their sessions, the audit log and the event log.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23

Self-contained on purpose (plain SQLAlchemy types, no import of `relay.store.models`): a
migration must keep producing the same schema after the models move on.

- ``operators``: people who sign in to the dashboard (viewer or admin); the password is kept
  only as an Argon2id hash.
- ``operator_sessions``: a signed-in browser; only a SHA-256 hash of the cookie's secret is
  stored, so a copy of the database opens no session.
- ``audit_log``: every admin action, by whom (operator or admin API key), from where, on what.
- ``events``: what happened to agents and jobs (connected, disconnected with the reason,
  degraded, job finished). Its id is the event id of ``GET /v1/events``, so a client resumes
  with ``Last-Event-ID`` on any replica; the dashboard's connection history reads it too.
- ``api_keys.admin``: a key for ``/v1/admin/`` instead of agent calls.
- ``call_log.document``: the ERP document number a write created (no payload, no personal
  data).

Additive only, so it can run while replicas of the previous version are still serving: new
tables, a nullable column and a column with a server default, which older code neither reads
nor writes.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIGINT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "operators",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_operators"),
        sa.UniqueConstraint("username", name="uq_operators_username"),
    )
    op.create_table(
        "operator_sessions",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("operator_id", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("address", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_operator_sessions"),
        sa.UniqueConstraint("token_hash", name="uq_operator_sessions_token_hash"),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["operators.id"],
            name="fk_operator_sessions_operator_id_operators",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_operator_sessions_operator_id", "operator_sessions", ["operator_id"])
    op.create_index("ix_operator_sessions_expires_at", "operator_sessions", ["expires_at"])
    op.create_table(
        "audit_log",
        sa.Column("id", _BIGINT_ID, autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(255), nullable=True),
        sa.Column("details", sa.JSON, nullable=True),
        sa.Column("address", sa.String(255), nullable=True),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_table(
        "events",
        sa.Column("id", _BIGINT_ID, autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("agent_name", sa.String(63), nullable=True),
        sa.Column("data", sa.JSON, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
    )
    op.create_index("ix_events_agent_name_id", "events", ["agent_name", "id"])
    op.create_index("ix_events_at", "events", ["at"])
    op.add_column(
        "api_keys",
        sa.Column("admin", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.add_column("call_log", sa.Column("document", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("call_log", "document")
    op.drop_column("api_keys", "admin")
    op.drop_index("ix_events_at", table_name="events")
    op.drop_index("ix_events_agent_name_id", table_name="events")
    op.drop_table("events")
    op.drop_index("ix_audit_log_at", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index("ix_operator_sessions_expires_at", table_name="operator_sessions")
    op.drop_index("ix_operator_sessions_operator_id", table_name="operator_sessions")
    op.drop_table("operator_sessions")
    op.drop_table("operators")
