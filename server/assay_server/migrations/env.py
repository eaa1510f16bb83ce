"""Alembic environment: runs on the connection that ``assay_server.database`` passes in."""

from __future__ import annotations

from alembic import context

from assay_server.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run migrations with `assay db upgrade`, which passes the database connection in"
    )

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
