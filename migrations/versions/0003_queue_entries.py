"""Queue entries as rows: the multi-host trial queue (PostgreSQL ``FOR UPDATE SKIP LOCKED``).

One row per queued or leased trial. ``owner`` is NULL while the trial waits; a claim sets
``owner``, ``slot``, ``pid``, ``claimed_at`` and ``heartbeat_at`` (seconds since the epoch,
the claiming host's clock). Claim order is ``(priority, enqueued_ns)``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "queue_entries",
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("search_id", sa.Integer(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("enqueued_ns", sa.BigInteger(), nullable=False),
        sa.Column("owner", sa.String(255), nullable=True),
        sa.Column("slot", sa.String(64), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("claimed_at", sa.Float(), nullable=True),
        sa.Column("heartbeat_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["search_id"], ["searches.id"], name="fk_queue_entries_search_id_searches",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["trial_id"], ["trials.id"], name="fk_queue_entries_trial_id_trials",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("trial_id", name="pk_queue_entries"),
    )
    op.create_index(
        "ix_queue_entries_claim", "queue_entries", ["search_id", "owner", "priority", "enqueued_ns"]
    )


def downgrade() -> None:
    op.drop_index("ix_queue_entries_claim", table_name="queue_entries")
    op.drop_table("queue_entries")
