"""Add a per-chunk overview of each bucket's extremes and non-finite points

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

OVERVIEW_COLUMNS = ("overview_steps", "overview_values", "overview_kinds", "overview_times")


def upgrade() -> None:
    with op.batch_alter_table("chunks") as batch:
        batch.add_column(sa.Column("overview_count", sa.Integer(), nullable=True))
        for name in OVERVIEW_COLUMNS:
            batch.add_column(sa.Column(name, sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("chunks") as batch:
        for name in ("overview_count", *OVERVIEW_COLUMNS):
            batch.drop_column(name)
