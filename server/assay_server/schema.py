"""Table definitions, used by the queries and as the target of the Alembic migrations.

Times are float seconds since the Unix epoch, exact and comparable on every
database. Metric values never sit in a column as NaN: SQLite stores a NaN REAL
as NULL, so a ``kind`` column distinguishes a NaN from a null, and min and max
columns cover only values that are not NaN.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
Id = BigInteger().with_variant(Integer(), "sqlite")
Document = JSON().with_variant(JSONB(), "postgresql")

#: Kinds stored in ``metrics.last_kind``. ``KIND_NAN`` exists only in SQL.
SQL_KIND_FLOAT = 0
SQL_KIND_NULL = 1
SQL_KIND_INT = 2
SQL_KIND_BOOL = 3
SQL_KIND_NAN = 4

users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("is_admin", Boolean, nullable=False, default=False),
    Column("created_at", Double, nullable=False),
    # An argon2id hash; None for an account that signs in with API keys only.
    Column("password_hash", String(256)),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("created_at", Double, nullable=False),
    Column("revoked_at", Double),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
)

projects = Table(
    "projects",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("owner_id", Id, ForeignKey("users.id"), nullable=False),
    Column("created_at", Double, nullable=False),
    # "private": members only; "public": anyone, signed in or not, may view.
    Column("visibility", String(16), nullable=False, default="private"),
)

project_members = Table(
    "project_members",
    metadata,
    Column("project_id", Id, ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    # "admin", "editor" or "viewer"; the owner is an admin without a row here.
    Column("role", String(16), nullable=False),
    Column("created_at", Double, nullable=False),
    Index("ix_project_members_user_id", "user_id"),
)

runs = Table(
    "runs",
    metadata,
    Column("pk", Id, primary_key=True, autoincrement=True),
    Column("project_id", Id, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("run_id", String(64), nullable=False),
    Column("name", String(256), nullable=False),
    Column("state", String(16), nullable=False),
    Column("config", Document, nullable=False),
    Column("summary", Document, nullable=False),
    Column("tags", Document, nullable=False),
    Column("group_name", String(256)),
    Column("notes", Text),
    Column("created_at", Double, nullable=False),
    Column("heartbeat_at", Double, nullable=False),
    Column("finished_at", Double),
    Column("exit_code", BigInteger),
    Column("next_step", BigInteger, nullable=False, default=0),
    Column("session", BigInteger),
    UniqueConstraint("project_id", "run_id"),
    Index("ix_runs_state_heartbeat", "state", "heartbeat_at"),
)

batches = Table(
    "batches",
    metadata,
    Column("run_pk", Id, ForeignKey("runs.pk", ondelete="CASCADE"), primary_key=True),
    Column("session", BigInteger, primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("stored_at", Double, nullable=False),
)

metrics = Table(
    "metrics",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("run_pk", Id, ForeignKey("runs.pk", ondelete="CASCADE"), nullable=False),
    Column("key", String(256), nullable=False),
    Column("count", BigInteger, nullable=False, default=0),
    Column("last_step", BigInteger),
    Column("last_value", Double),
    Column("last_kind", SmallInteger),
    Column("min_value", Double),
    Column("max_value", Double),
    Column("has_nan", Boolean, nullable=False, default=False),
    Column("has_inf", Boolean, nullable=False, default=False),
    Column("has_null", Boolean, nullable=False, default=False),
    Column("chunk_count", Integer, nullable=False, default=0),
    UniqueConstraint("run_pk", "key"),
)

chunks = Table(
    "chunks",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("metric_id", Id, ForeignKey("metrics.id", ondelete="CASCADE"), nullable=False),
    Column("count", Integer, nullable=False),
    Column("step_min", BigInteger, nullable=False),
    Column("step_max", BigInteger, nullable=False),
    Column("value_min", Double),
    Column("value_max", Double),
    Column("has_nan", Boolean, nullable=False),
    Column("has_inf", Boolean, nullable=False),
    Column("has_null", Boolean, nullable=False),
    Column("steps", LargeBinary, nullable=False),
    Column("values", LargeBinary, nullable=False),
    Column("kinds", LargeBinary),
    Column("times", LargeBinary, nullable=False),
    # The points of each bucket of OVERVIEW_BUCKET points that a downsampled
    # chart can keep: null for a small chunk or one with a repeated step.
    Column("overview_count", Integer),
    Column("overview_steps", LargeBinary),
    Column("overview_values", LargeBinary),
    Column("overview_kinds", LargeBinary),
    Column("overview_times", LargeBinary),
    Index("ix_chunks_metric_id_id", "metric_id", "id"),
)
