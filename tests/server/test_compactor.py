"""The background compactor merges runs' chunks one run at a time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from server.test_history import new_run, read, store
from sqlalchemy import func, select

from assay_server import history, schema
from assay_server.compactor import Compactor
from assay_server.database import Database
from assay_server.settings import Settings

BATCHES = history.COMPACT_AFTER + 6


async def chunk_count(db: Database) -> int:
    async with db.reading() as connection:
        return int(await connection.scalar(select(func.count()).select_from(schema.chunks)))


async def stored_run(db: Database) -> int:
    run_pk = await new_run(db)
    for seq in range(BATCHES):
        await store(db, run_pk, seq, [(seq, float(seq), {"x": seq * 0.5, "y": -float(seq)})])
    return run_pk


async def wait_for(condition: Callable[[], Awaitable[bool]], timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_requested_run_compacted_in_background(database: Database) -> None:
    run_pk = await stored_run(database)
    before = await read(database, run_pk)
    compactor = Compactor(database)

    compactor.request(run_pk, "r")
    compactor.request(run_pk, "r")
    queued = dict(compactor.queued)
    await wait_for(lambda: _chunks_are(database, 2))
    await compactor.close()
    sizes = await chunk_sizes(database)

    # Asked twice before the worker ran, the run was queued once.
    assert queued == {run_pk: "r"}
    assert sizes == [[70], [70]]
    assert await read(database, run_pk) == before


async def chunk_sizes(db: Database) -> list[list[int]]:
    """Return each metric's chunk sizes in id order, metrics in id order."""
    c = schema.chunks.c
    async with db.reading() as connection:
        rows = (await connection.execute(select(c.metric_id, c.count).order_by(c.id))).all()
    by_metric: dict[int, list[int]] = {}
    for row in rows:
        by_metric.setdefault(row.metric_id, []).append(row.count)
    return [by_metric[metric_id] for metric_id in sorted(by_metric)]


async def test_compact_now_merges_short_run_whole(database: Database) -> None:
    run_pk = await new_run(database)
    for seq in range(10):
        await store(database, run_pk, seq, [(seq, float(seq), {"x": seq * 0.5})])
    before = await read(database, run_pk)
    compactor = Compactor(database)

    await compactor.compact_now(run_pk, "r")
    await compactor.close()

    assert await chunk_sizes(database) == [[10]]
    assert await read(database, run_pk) == before


async def _chunks_are(db: Database, count: int) -> bool:
    return await chunk_count(db) == count


async def test_compact_now_beside_worker_keeps_points(database: Database) -> None:
    run_pk = await stored_run(database)
    before = await read(database, run_pk)
    compactor = Compactor(database)

    compactor.request(run_pk, "r")
    await asyncio.sleep(0)  # the worker starts on the run
    await compactor.compact_now(run_pk, "r")
    await compactor.close()

    assert await chunk_count(database) == 2
    assert await read(database, run_pk) == before


async def test_failed_compaction_logged_worker_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A database that was never migrated has no tables, so compacting fails.
    broken = Database(Settings(data_dir=tmp_path).resolved_database_url)
    compactor = Compactor(broken)
    caplog.set_level(logging.ERROR, logger="assay_server.compactor")

    compactor.request(1, "first")
    await wait_for(lambda: _logged(caplog, "compaction of run first failed"))
    first_worker = compactor.worker
    compactor.request(2, "second")
    await wait_for(lambda: _logged(caplog, "compaction of run second failed"))
    still_running = compactor.worker is first_worker and not first_worker.done()
    await compactor.close()
    await broken.close()

    assert first_worker is not None
    assert still_running


async def _logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in record.getMessage() for record in caplog.records)
