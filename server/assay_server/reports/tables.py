"""The report tables, created by migrations ``0005_reports`` and ``0006_access``.

``report_updates`` is the append-only log of accepted Yjs updates, and
``report_snapshots`` contains one compacted state per report that covers the log
rows up to ``upto_id``. Loading a report applies the snapshot, then the rows
after ``upto_id`` in id order.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Table,
)

from assay_server import schema

reports = Table(
    "reports",
    schema.metadata,
    Column("id", String(32), primary_key=True),
    Column("project_id", schema.Id, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("title", String(500), nullable=False),
    Column("created_by", schema.Id, ForeignKey("users.id"), nullable=False),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Index("ix_reports_project_id_created_at", "project_id", "created_at"),
)

report_updates = Table(
    "report_updates",
    schema.metadata,
    Column("id", schema.Id, primary_key=True, autoincrement=True),
    Column("report_id", String(32), ForeignKey("reports.id", ondelete="CASCADE"), nullable=False),
    Column("update", LargeBinary, nullable=False),
    Column("created_at", Double, nullable=False),
    Index("ix_report_updates_report_id_id", "report_id", "id"),
    # Without AUTOINCREMENT, SQLite reuses the ids of deleted rows, and a row
    # added after a compaction would get an id the snapshot already covers.
    sqlite_autoincrement=True,
)

report_snapshots = Table(
    "report_snapshots",
    schema.metadata,
    Column(
        "report_id", String(32), ForeignKey("reports.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("state", LargeBinary, nullable=False),
    Column("upto_id", BigInteger, nullable=False),
    Column("updated_at", Double, nullable=False),
)

report_versions = Table(
    "report_versions",
    schema.metadata,
    Column("id", schema.Id, primary_key=True, autoincrement=True),
    Column("report_id", String(32), ForeignKey("reports.id", ondelete="CASCADE"), nullable=False),
    Column("label", String(200), nullable=False),
    Column("title", String(500), nullable=False),
    Column("state", LargeBinary, nullable=False),
    Column("created_by", schema.Id, ForeignKey("users.id"), nullable=False),
    Column("created_at", Double, nullable=False),
    Index("ix_report_versions_report_id_id", "report_id", "id"),
)

report_shares = Table(
    "report_shares",
    schema.metadata,
    Column("id", String(32), primary_key=True),
    Column("report_id", String(32), ForeignKey("reports.id", ondelete="CASCADE"), nullable=False),
    # "view" or "edit".
    Column("role", String(8), nullable=False),
    # SHA-256 of the token, which carries 256 random bits and is never stored.
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_by", schema.Id, ForeignKey("users.id"), nullable=False),
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double),
    Column("revoked_at", Double),
    Index("ix_report_shares_report_id", "report_id"),
)
