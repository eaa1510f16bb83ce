"""Store runs through the server's storage functions and select them with both evaluators."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete

from assay import protocol
from assay_server import filters, runs, schema
from assay_server.auth import User
from assay_server.batch import decode_batch
from assay_server.batch_store import BatchWrite, store_batches
from assay_server.database import Database
from assay_server.settings import Settings

PROJECT = "filters"
OWNER_ID = 1
OWNER = User(OWNER_ID, "owner", True)


@dataclass
class StoredRun:
    """A run to create: its metadata, config, summary keys and logged metric values."""

    run_id: str
    name: str = "run"
    state: str = runs.RUNNING
    config: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    group: str | None = None
    created_at: float = 1.7e9
    #: Per metric, the values logged at steps 0, 1, 2, … in batches of ``batch_size``.
    metrics: dict[str, list[Any]] = field(default_factory=dict)
    batch_size: int = 2
    #: Keys set through ``run.summary``.
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class Store:
    """A migrated database and the event loop that its engine belongs to."""

    runner: asyncio.Runner
    db: Database

    def run(self, coroutine: Any) -> Any:
        return self.runner.run(coroutine)


@pytest.fixture(params=["sqlite", "postgres"], name="store")
def store_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A database on SQLite, then on PostgreSQL, driven from synchronous tests."""
    if request.param == "sqlite":
        url = Settings(data_dir=tmp_path).resolved_database_url
    else:
        url = Settings(database_url=request.getfixturevalue("postgres_url")).resolved_database_url
    with asyncio.Runner() as runner:
        db = Database(url)
        runner.run(db.upgrade())
        runner.run(_add_owner(db))
        yield Store(runner, db)
        runner.run(db.close())


async def _add_owner(db: Database) -> None:
    async with db.transaction() as connection:
        await connection.execute(
            schema.users.insert().values(id=OWNER_ID, name="owner", is_admin=True, created_at=0.0)
        )


async def clear(db: Database) -> None:
    """Delete every project; runs, metrics and chunks go with them."""
    async with db.transaction() as connection:
        await connection.execute(delete(schema.projects))


async def store_runs(db: Database, stored: Sequence[StoredRun]) -> None:
    """Create the runs as the ingest path does: hello, batches, summary updates, end state.

    Runs meant to be crashed are created first and then marked by
    ``runs.mark_crashed``, before any other run exists.
    """
    ordered = sorted(stored, key=lambda run: run.state != runs.CRASHED)
    crashed_marked = False
    for run in ordered:
        if run.state != runs.CRASHED and not crashed_marked:
            await _mark_all_crashed(db)
            crashed_marked = True
        await _store_run(db, run)
    if not crashed_marked:
        await _mark_all_crashed(db)


async def _mark_all_crashed(db: Database) -> None:
    async with db.transaction() as connection:
        # A negative timeout selects every running run, whatever its heartbeat.
        await runs.mark_crashed(connection, -3600.0)


async def _store_run(db: Database, run: StoredRun) -> None:
    spec = runs.RunSpec(
        PROJECT,
        run.run_id,
        run.name,
        run.config,
        run.tags,
        run.group,
        None,
        "never",
        1,
        created_at=run.created_at,
    )
    async with db.transaction() as connection:
        attached = await runs.attach_run(connection, spec, OWNER, db.is_sqlite)
    steps = max((len(values) for values in run.metrics.values()), default=0)
    for seq, start in enumerate(range(0, steps, run.batch_size)):
        rows = []
        for step in range(start, min(start + run.batch_size, steps)):
            values = {
                key: logged[step] for key, logged in run.metrics.items() if step < len(logged)
            }
            rows.append((step, 1.7e9 + step, values))
        batch = decode_batch({"type": "batch", "seq": seq, **protocol.encode_rows(rows)})
        write = BatchWrite(attached.pk, 1, batch, {}, touch=False)
        assert await db.write_sync(store_batches, [write], db.is_sqlite) != [None]
    if run.summary:
        await db.write_sync(runs.merge_documents, attached.pk, None, run.summary)
    async with db.transaction() as connection:
        if run.state in (runs.FINISHED, runs.FAILED):
            await runs.finish_run(connection, attached.pk, 0 if run.state == runs.FINISHED else 1)


async def select_with_sql(db: Database, node: filters.Node) -> list[str]:
    async with db.reading() as connection:
        found = await runs.list_runs(connection, PROJECT, 10_000, 0, node)
    return sorted(run["id"] for run in found)


async def read_runs(db: Database) -> list[tuple[dict[str, Any], dict[str, dict[str, Any]]]]:
    """Read every run as ``runs.get_run`` returns it, with its ``runs.metric_stats``."""
    async with db.reading() as connection:
        listed = await runs.list_runs(connection, PROJECT, 10_000, 0)
        result = []
        for summary in listed:
            run = await runs.get_run(connection, PROJECT, summary["id"])
            row = await runs.run_row(connection, PROJECT, summary["id"])
            result.append((run, await runs.metric_stats(connection, row.pk)))
    return result


def select_in_memory(
    node: filters.Node, stored: list[tuple[dict[str, Any], dict[str, dict[str, Any]]]]
) -> list[str]:
    return sorted(run["id"] for run, stats in stored if filters.evaluate(node, run, stats))
