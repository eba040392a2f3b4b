"""The change feed: change events from the agents, per-agent cursors, webhook subscriptions.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23

Self-contained on purpose (plain SQLAlchemy types, no import of `relay.store.models`): a
migration must keep producing the same schema after the models move on.

- ``change_events``: one row per change an agent reported (stock, prices, invoices, payments,
  order statuses), unique per (agent, stream, seq) so an event the agent sends again is stored
  once, and per (agent, cursor), the position subscribers read from.
- ``change_cursors``: one counter row per agent; the transaction storing events advances it
  under its row lock, so cursors grow in commit order (docs/change-feed.md).
- ``change_subscriptions``: webhook subscriptions to an agent's feed, with their position and
  the state of the delivery being tried.

Additive only, so it can run while replicas of the previous version are still serving: new
tables, which older code neither reads nor writes.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIGINT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _timestamp(name: str, *, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "change_events",
        sa.Column("id", _BIGINT_ID, autoincrement=True, nullable=False),
        sa.Column("agent_name", sa.String(63), nullable=False),
        sa.Column("cursor", sa.BigInteger, nullable=False),
        sa.Column("stream", sa.String(255), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        _timestamp("occurred_at", nullable=False),
        _timestamp("stored_at", nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_change_events"),
        sa.UniqueConstraint(
            "agent_name", "stream", "seq", name="uq_change_events_agent_name_stream_seq"
        ),
        sa.UniqueConstraint("agent_name", "cursor", name="uq_change_events_agent_name_cursor"),
    )
    op.create_index("ix_change_events_stored_at", "change_events", ["stored_at"])
    op.create_table(
        "change_cursors",
        sa.Column("agent_name", sa.String(63), nullable=False),
        sa.Column("last_cursor", sa.BigInteger, nullable=False),
        sa.Column("purged_through", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("agent_name", name="pk_change_cursors"),
    )
    op.create_table(
        "change_subscriptions",
        sa.Column("id", _BIGINT_ID, autoincrement=True, nullable=False),
        sa.Column("public_id", sa.String(32), nullable=False),
        sa.Column("api_key_id", sa.String(32), nullable=False),
        sa.Column("agent_name", sa.String(63), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("types", sa.JSON, nullable=True),
        _timestamp("created_at", nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("delivered", sa.BigInteger, nullable=False),
        sa.Column("failed", sa.BigInteger, nullable=False),
        sa.Column("last_delivered_cursor", sa.BigInteger, nullable=True),
        _timestamp("last_delivered_at", nullable=True),
        sa.Column("last_failed_cursor", sa.BigInteger, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        _timestamp("last_attempt_at", nullable=True),
        _timestamp("next_attempt_at", nullable=True),
        sa.Column("last_status", sa.Integer, nullable=True),
        sa.Column("last_error", sa.String(1000), nullable=True),
        sa.Column("runner", sa.String(64), nullable=True),
        _timestamp("lease_until", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_change_subscriptions"),
        sa.UniqueConstraint("public_id", name="uq_change_subscriptions_public_id"),
    )
    op.create_index("ix_change_subscriptions_agent_name", "change_subscriptions", ["agent_name"])


def downgrade() -> None:
    op.drop_index("ix_change_subscriptions_agent_name", table_name="change_subscriptions")
    op.drop_table("change_subscriptions")
    op.drop_table("change_cursors")
    op.drop_index("ix_change_events_stored_at", table_name="change_events")
    op.drop_table("change_events")
