"""Replica ownership: which relay replica holds an in-flight write or a running job.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29

Self-contained on purpose (plain SQLAlchemy types, no import of `relay.store.models`): a
migration must keep producing the same schema after the models move on.

With several replicas on one database, a replica that dies leaves ``in_progress`` idempotency
rows and ``running`` jobs behind, and the others may take over only those, not the ones a live
replica is still working on; the replica id on the row is what tells them apart.

Additive only, so it can run while replicas of the previous version are still serving: two
nullable columns (older code neither reads nor writes them; its rows stay NULL, which newer
replicas treat as orphaned) and an index on each table, because the recovery looks for
``in_progress`` and ``running`` rows every few seconds and must not scan tables that keep
days of history. Building the indexes holds writes to the two tables for as long as it takes
(about a second per million rows); reads of the other tables are not affected.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("idempotency_keys", sa.Column("owner", sa.String(64), nullable=True))
    op.create_index("ix_idempotency_keys_state_owner", "idempotency_keys", ["state", "owner"])
    op.add_column("jobs", sa.Column("runner", sa.String(64), nullable=True))
    op.create_index("ix_jobs_state_runner", "jobs", ["state", "runner"])


def downgrade() -> None:
    # Plain DROP COLUMN, not batch mode: SQLite (3.35+) drops an unindexed column in place,
    # whereas recreating `jobs` would cascade-delete its webhook deliveries.
    op.drop_index("ix_jobs_state_runner", table_name="jobs")
    op.drop_column("jobs", "runner")
    op.drop_index("ix_idempotency_keys_state_owner", table_name="idempotency_keys")
    op.drop_column("idempotency_keys", "owner")
