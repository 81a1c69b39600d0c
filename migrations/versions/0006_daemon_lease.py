"""The daemon lease (issue 23 §2): one live daemon per search, whatever directory it runs from.

One row per search that a daemon runs: who holds it (``owner``, unique per daemon process
and start), where (``host``, ``pid``, ``ident``: the process identity, boot id and start
time, that tells a live process from one that reuses its pid), from which run directory,
and its last heartbeat (seconds since the epoch). A daemon inserts or takes over the row
when it starts (the old holder must be dead) and deletes it when it exits; a second daemon
of the same search, from a copied run directory for example, finds a live holder and
refuses to start. See adsearch/store/leases.py.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-09
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "daemon_leases",
        sa.Column("search_id", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("ident", sa.String(128), nullable=False),
        sa.Column("run_dir", sa.Text(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("heartbeat_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["search_id"], ["searches.id"], name="fk_daemon_leases_search_id_searches",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("search_id", name="pk_daemon_leases"),
    )


def downgrade() -> None:
    op.drop_table("daemon_leases")
