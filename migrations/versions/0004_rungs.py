"""Rung values of the successive-halving scheduler (``--scheduler asha``, ``--prune-at-epoch``).

One row per (trial, rung): the child's validation value when it first evaluated at or after
the rung (in epochs), and whether it was promoted (went on training) or stopped there. A
child writes its row and reads the rung's other rows in one transaction, so each decision
uses every value recorded at that rung before it (see adsearch/daemon/pruning.py).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
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
    op.create_table(
        "rungs",
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("rung", sa.Float(), nullable=False),
        sa.Column("search_id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Float(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("promoted", sa.Boolean(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("recorded_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["search_id"], ["searches.id"], name="fk_rungs_search_id_searches", ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["trial_id"], ["trials.id"], name="fk_rungs_trial_id_trials", ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("trial_id", "rung", name="pk_rungs"),
    )
    op.create_index("ix_rungs_search_id", "rungs", ["search_id", "rung"])


def downgrade() -> None:
    op.drop_index("ix_rungs_search_id", table_name="rungs")
    op.drop_table("rungs")
