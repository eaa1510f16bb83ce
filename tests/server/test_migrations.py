"""The Alembic migrations build exactly the tables that ``schema`` declares."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from assay_server import schema
from assay_server.database import Database, _alembic_config

# Importing these modules adds their tables to ``schema.metadata``.
from assay_server.layouts import panel_layouts  # noqa: F401
from assay_server.reports.tables import reports  # noqa: F401
from assay_server.runsets import runsets  # noqa: F401


def differences(connection: Any) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": False}
    )
    return list(compare_metadata(context, schema.metadata))


async def test_migrations_match_schema(database: Database) -> None:
    async with database.reading() as connection:
        found = await connection.run_sync(differences)
    assert found == []


async def test_downgrade_then_upgrade(database: Database) -> None:
    def downgrade(connection: Any) -> None:
        command.downgrade(_alembic_config(connection), "0005")

    async with database.exclusive() as connection:
        await connection.run_sync(downgrade)
    assert await database.revision() == "0005"
    await database.upgrade()
    assert await database.revision() == "0007"
