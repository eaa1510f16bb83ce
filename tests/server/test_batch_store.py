"""A writer group's batches stored with one statement per table."""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import event, select

from assay import protocol
from assay_server import history, runs, schema
from assay_server.auth import User
from assay_server.batch import decode_batch
from assay_server.batch_store import BatchWrite, StoredBatch, store_batches
from assay_server.database import Database

SESSION = 1


async def new_runs(db: Database, count: int) -> list[int]:
    user = User(1, "u", True)
    async with db.transaction() as connection:
        await connection.execute(
            schema.users.insert().values(id=1, name="u", is_admin=True, created_at=0.0)
        )
        pks = []
        for index in range(count):
            spec = runs.RunSpec("p", f"r{index}", None, {}, [], None, None, "never", SESSION)
            pks.append((await runs.attach_run(connection, spec, user, db.is_sqlite)).pk)
    return pks


def write(
    run_pk: int,
    seq: int,
    rows: list[Any],
    metric_ids: dict[str, int] | None = None,
    touch: bool = False,
    **documents: Any,
) -> BatchWrite:
    message = {"type": "batch", "seq": seq, **protocol.encode_rows(rows), **documents}
    return BatchWrite(run_pk, SESSION, decode_batch(message), metric_ids or {}, touch)


async def store(db: Database, writes: list[BatchWrite]) -> list[StoredBatch | None]:
    return await db.write_sync(store_batches, writes, db.is_sqlite)


async def metric_rows(db: Database, run_pk: int) -> dict[str, Any]:
    async with db.reading() as connection:
        rows = await connection.execute(
            select(schema.metrics).where(schema.metrics.c.run_pk == run_pk)
        )
        return {row.key: row for row in rows}


async def run_row(db: Database, run_pk: int) -> Any:
    async with db.reading() as connection:
        return (
            await connection.execute(select(schema.runs).where(schema.runs.c.pk == run_pk))
        ).one()


async def test_group_stores_each_run_history(database: Database) -> None:
    first, second = await new_runs(database, 2)

    outcomes = await store(
        database,
        [
            write(first, 0, [(0, 1.0, {"loss": 0.5})]),
            write(second, 0, [(0, 1.0, {"loss": math.nan, "acc": 0.1})]),
            write(first, 1, [(1, 2.0, {"loss": 0.25})]),
        ],
    )
    async with database.reading() as connection:
        first_history = history.history_rows(
            await history.read_series(connection, first, None), None
        )
    first_metrics = await metric_rows(database, first)
    second_metrics = await metric_rows(database, second)

    assert all(outcome is not None for outcome in outcomes)
    assert [row["loss"] for row in first_history] == [0.5, 0.25]
    # Two batches of one metric in one group fold in order: the later one is last.
    assert first_metrics["loss"].count == 2
    assert first_metrics["loss"].last_value == 0.25
    assert first_metrics["loss"].min_value == 0.25
    assert first_metrics["loss"].max_value == 0.5
    assert second_metrics["loss"].has_nan
    assert second_metrics["loss"].min_value is None
    assert set(second_metrics) == {"loss", "acc"}
    assert (await run_row(database, first)).next_step == 2
    assert (await run_row(database, second)).next_step == 1


async def test_stored_batch_number_skipped(database: Database) -> None:
    (run_pk,) = await new_runs(database, 1)
    await store(database, [write(run_pk, 0, [(0, 1.0, {"x": 1.0})])])

    outcomes = await store(
        database,
        [
            write(run_pk, 0, [(0, 1.0, {"x": 99.0})]),
            write(run_pk, 1, [(1, 2.0, {"x": 2.0})]),
            write(run_pk, 1, [(1, 2.0, {"x": 77.0})]),
        ],
    )
    stored = await metric_rows(database, run_pk)

    # A batch stored by an earlier group, and a repeat within the group, are skipped.
    assert outcomes[0] is None
    assert outcomes[1] is not None
    assert outcomes[2] is None
    assert stored["x"].count == 2
    assert stored["x"].last_value == 2.0


async def test_metric_ids_returned_and_reused(database: Database) -> None:
    (run_pk,) = await new_runs(database, 1)
    (first,) = await store(database, [write(run_pk, 0, [(0, 1.0, {"x": 1.0})])])
    assert first is not None

    (second,) = await store(
        database, [write(run_pk, 1, [(1, 2.0, {"x": 2.0, "y": 3.0})], first.metric_ids)]
    )
    stored = await metric_rows(database, run_pk)

    assert second is not None
    assert second.metric_ids == {"x": stored["x"].id, "y": stored["y"].id}
    assert first.metric_ids == {"x": stored["x"].id}


async def test_config_and_summary_merged(database: Database) -> None:
    (run_pk,) = await new_runs(database, 1)

    await store(
        database,
        [
            write(run_pk, 0, [], config={"lr": 0.1}, summary={"best": math.inf}),
            write(run_pk, 1, [(0, 1.0, {"x": 1.0})], config={"batch": 32}),
        ],
    )
    row = await run_row(database, run_pk)

    assert row.config == {"lr": 0.1, "batch": 32}
    assert protocol.untag_floats(row.summary) == {"best": math.inf}


async def test_crashed_run_revived_once(database: Database) -> None:
    crashed, running = await new_runs(database, 2)
    async with database.transaction() as connection:
        await connection.execute(
            schema.runs.update()
            .where(schema.runs.c.pk == crashed)
            .values(state=runs.CRASHED, heartbeat_at=0.0)
        )

    outcomes = await store(
        database,
        [
            write(crashed, 0, [(0, 1.0, {"x": 1.0})], touch=True),
            write(running, 0, [(0, 1.0, {"x": 1.0})], touch=True),
            write(crashed, 1, [(1, 2.0, {"x": 2.0})], touch=True),
        ],
    )
    revived_row = await run_row(database, crashed)

    assert [outcome.revived if outcome else "skipped" for outcome in outcomes] == [
        runs.CRASHED,
        None,
        None,
    ]
    assert revived_row.state == runs.RUNNING
    assert revived_row.heartbeat_at > 0.0


async def test_untouched_run_keeps_heartbeat(database: Database) -> None:
    (run_pk,) = await new_runs(database, 1)
    before = (await run_row(database, run_pk)).heartbeat_at

    await store(database, [write(run_pk, 0, [(0, 1.0, {"x": 1.0})], touch=False)])

    assert (await run_row(database, run_pk)).heartbeat_at == before


async def test_group_statement_count_is_fixed(database: Database) -> None:
    pks = await new_runs(database, 50)
    known = []
    for pk in pks:
        (outcome,) = await store(database, [write(pk, 0, [(0, 1.0, {"loss": 1.0, "acc": 0.0})])])
        assert outcome is not None
        known.append(outcome.metric_ids)
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    # On SQLite, groups are written through the engine of the writer thread.
    engine = database.sync_engine if database.is_sqlite else database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        outcomes = await store(
            database,
            [
                write(pk, 1, [(1, 2.0, {"loss": 0.5, "acc": 0.5})], ids, touch=True)
                for pk, ids in zip(pks, known, strict=True)
            ],
        )
    finally:
        event.remove(engine, "before_cursor_execute", record)

    assert all(outcome is not None for outcome in outcomes)
    # Claim, chunks, metric summaries, next steps, revival and heartbeats:
    # six statements for fifty batches.
    assert len(statements) == 6, statements
