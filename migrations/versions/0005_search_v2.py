"""Search v2 (issue 19): the reward the controller learned from, cache hits, trial purposes.

- ``results.learned_reward`` (FLOAT NULL): the reward the controller's update used for this
  trial (adsearch/reward.py), written with the checkpoint record of that update; NULL until
  an update consumed the trial (and on rows older than this revision).
- ``results.cache_of`` (INTEGER NULL): the trial whose stored result this trial reused (a cache
  hit: same canonical pattern, fidelity and seed); NULL when the child was trained. A plain
  integer, not a foreign key: both trials belong to one search and go together.
- ``trials.purpose`` (VARCHAR(16) NOT NULL, server default ``'search'``): why the trial exists,
  ``search`` (drawn by the controller), ``recheck`` (a re-check seed of a top pattern) or
  ``enqueued`` (given by the user); existing rows become ``search``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # ADD COLUMN (no table rebuild on SQLite): nullable columns, or NOT NULL with a default.
    op.add_column("results", sa.Column("learned_reward", sa.Float(), nullable=True))
    op.add_column("results", sa.Column("cache_of", sa.Integer(), nullable=True))
    op.add_column(
        "trials",
        sa.Column("purpose", sa.String(16), nullable=False, server_default="search"),
    )


def downgrade() -> None:
    with op.batch_alter_table("trials") as batch:
        batch.drop_column("purpose")
    with op.batch_alter_table("results") as batch:
        batch.drop_column("cache_of")
        batch.drop_column("learned_reward")
