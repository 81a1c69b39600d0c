"""Initial store: searches, trials, results, controller checkpoints.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "searches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_searches"),
        sa.UniqueConstraint("name", name="uq_searches_name"),
    )
    op.create_table(
        "trials",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("search_id", sa.Integer(), nullable=False),
        sa.Column("pattern", sa.JSON(), nullable=False),
        sa.Column("pattern_hash", sa.String(64), nullable=False),
        sa.Column("tokens", sa.JSON(), nullable=False),
        sa.Column("controller_version", sa.Integer(), nullable=False),
        sa.Column("logp", sa.Float(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("started_at", _TS, nullable=True),
        sa.Column("finished_at", _TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["search_id"], ["searches.id"], name="fk_trials_search_id_searches", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_trials"),
    )
    op.create_index("ix_trials_search_state", "trials", ["search_id", "state"])
    op.create_index("ix_trials_search_hash", "trials", ["search_id", "pattern_hash"])
    op.create_table(
        "results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("search_id", sa.Integer(), nullable=False),
        sa.Column("reward", sa.Float(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("curve", sa.JSON(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["search_id"], ["searches.id"], name="fk_results_search_id_searches", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["trial_id"], ["trials.id"], name="fk_results_trial_id_trials", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_results"),
        sa.UniqueConstraint("trial_id", name="uq_results_trial_id"),
    )
    op.create_index("ix_results_search_reward", "results", ["search_id", "reward"])
    op.create_index("ix_results_search_id", "results", ["search_id", "id"])
    op.create_table(
        "checkpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("search_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["search_id"],
            ["searches.id"],
            name="fk_checkpoints_search_id_searches",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_checkpoints"),
    )
    op.create_index("ix_checkpoints_search_version", "checkpoints", ["search_id", "version"])
    op.create_table(
        "checkpoint_trials",
        sa.Column("checkpoint_id", sa.Integer(), nullable=False),
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"],
            ["checkpoints.id"],
            name="fk_checkpoint_trials_checkpoint_id_checkpoints",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["trial_id"],
            ["trials.id"],
            name="fk_checkpoint_trials_trial_id_trials",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("checkpoint_id", "trial_id", name="pk_checkpoint_trials"),
    )
    op.create_index("ix_checkpoint_trials_trial_id", "checkpoint_trials", ["trial_id"])


def downgrade() -> None:
    op.drop_table("checkpoint_trials")
    op.drop_table("checkpoints")
    op.drop_table("results")
    op.drop_table("trials")
    op.drop_table("searches")
