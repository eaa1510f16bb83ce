"""What the in-memory filter predicate needs of each run of a project, kept up to date.

``load_project`` reads every run of a project with its metric statistics in
two queries. Run events then update the copy: ``run.config`` and
``run.summary`` are merged from the event itself, while ``run.created`` and
``run.state`` read the run's row again, because their events do not carry
``created_at`` or ``finished_at``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from assay_server import runs, schema


@dataclass
class CachedRun:
    """A run as ``runs.get_run`` returns it, its metric statistics and its primary key."""

    pk: int
    run: dict[str, Any]
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)


async def load_project(connection: AsyncConnection, project_id: int) -> dict[str, CachedRun]:
    """Return every run of the project by run id, with statistics."""
    rows = (
        await connection.execute(select(schema.runs).where(schema.runs.c.project_id == project_id))
    ).all()
    metric_rows = await connection.execute(
        select(schema.metrics)
        .join(schema.runs, schema.runs.c.pk == schema.metrics.c.run_pk)
        .where(schema.runs.c.project_id == project_id)
    )
    logged: dict[int, dict[str, Any]] = {}
    stats: dict[int, dict[str, dict[str, Any]]] = {}
    for metric in metric_rows:
        logged.setdefault(metric.run_pk, {})[metric.key] = runs.sql_value(
            metric.last_value, metric.last_kind
        )
        stats.setdefault(metric.run_pk, {})[metric.key] = statistics(metric)
    return {
        row.run_id: CachedRun(
            row.pk, runs.run_dict("", row, logged.get(row.pk, {})), stats.get(row.pk, {})
        )
        for row in rows
    }


async def load_run(connection: AsyncConnection, project_id: int, run_id: str) -> CachedRun | None:
    """Return one run with statistics, or None when it does not exist."""
    row = (
        await connection.execute(
            select(schema.runs).where(
                schema.runs.c.project_id == project_id, schema.runs.c.run_id == run_id
            )
        )
    ).first()
    if row is None:
        return None
    found = await load_stats(connection, row.pk)
    logged = {key: value["last"] for key, value in found.items()}
    return CachedRun(row.pk, runs.run_dict("", row, logged), found)


async def load_stats(connection: AsyncConnection, run_pk: int) -> dict[str, dict[str, Any]]:
    rows = await connection.execute(
        select(schema.metrics).where(schema.metrics.c.run_pk == run_pk)
    )
    return {row.key: statistics(row) for row in rows}


def statistics(row: Any) -> dict[str, Any]:
    return {
        "last": runs.sql_value(row.last_value, row.last_kind),
        "min": row.min_value,
        "max": row.max_value,
        "has_nan": row.has_nan,
        "has_inf": row.has_inf,
        "has_null": row.has_null,
    }


def merge_config(cached: CachedRun, config: dict[str, Any]) -> None:
    """Apply a ``run.config`` event key by key, as ``runs.merge_documents`` stores it."""
    cached.run["config"] = {**cached.run["config"], **config}


def merge_summary(cached: CachedRun, summary: dict[str, Any]) -> None:
    """Apply a ``run.summary`` event: the batch's last values and summary keys set.

    NOTE: the event does not say which keys were set through ``run.summary``,
    so a later logged value replaces an earlier ``run.summary`` value here,
    while the database keeps the ``run.summary`` value. A reload fixes it.
    """
    cached.run["summary"] = {**cached.run["summary"], **summary}
