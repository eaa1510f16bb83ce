"""Add collaborative reports: update log, snapshots and saved versions

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def report_id_column(primary_key: bool = False) -> sa.Column[str]:
    return sa.Column(
        "report_id",
        sa.String(32),
        sa.ForeignKey("reports.id", ondelete="CASCADE"),
        nullable=False,
        primary_key=primary_key,
    )


def upgrade() -> None:
    op.create_table(
        "reports",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("project_id", Id, nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("created_by", Id, nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_reports_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_reports_created_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reports")),
    )
    op.create_index("ix_reports_project_id_created_at", "reports", ["project_id", "created_at"])
    op.create_table(
        "report_updates",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        report_id_column(),
        sa.Column("update", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_updates")),
        # SQLite must never reuse the id of a row that a snapshot covers.
        sqlite_autoincrement=True,
    )
    op.create_index("ix_report_updates_report_id_id", "report_updates", ["report_id", "id"])
    op.create_table(
        "report_snapshots",
        report_id_column(primary_key=True),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        sa.Column("upto_id", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
    )
    op.create_table(
        "report_versions",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        report_id_column(),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        sa.Column("created_by", Id, nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_report_versions_created_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_versions")),
    )
    op.create_index("ix_report_versions_report_id_id", "report_versions", ["report_id", "id"])


def downgrade() -> None:
    op.drop_table("report_versions")
    op.drop_table("report_snapshots")
    op.drop_table("report_updates")
    op.drop_table("reports")
