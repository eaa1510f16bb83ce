"""Columnar history storage: reads, compaction and downsampling."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import event, func, select

from assay import protocol
from assay_server import history, runs, schema
from assay_server.auth import User
from assay_server.batch import decode_batch
from assay_server.batch_store import BatchWrite, store_batches
from assay_server.database import Database
from assay_server.downsample import MIN_SAMPLES, _bucket_points, _Classes, downsample, overview


async def new_run(db: Database) -> int:
    spec = runs.RunSpec("p", "r", None, {}, [], None, None, "never", 1)
    async with db.transaction() as connection:
        await connection.execute(
            schema.users.insert().values(id=1, name="u", is_admin=True, created_at=0.0)
        )
        return (await runs.attach_run(connection, spec, User(1, "u", True), db.is_sqlite)).pk


async def store(db: Database, run_pk: int, seq: int, rows: list[Any]) -> None:
    batch = decode_batch({"type": "batch", "seq": seq, **protocol.encode_rows(rows)})
    write = BatchWrite(run_pk, 1, batch, {}, touch=False)
    assert await db.write_sync(store_batches, [write], db.is_sqlite) != [None]


async def read(db: Database, run_pk: int, keys: list[str] | None = None) -> list[dict[str, Any]]:
    async with db.reading() as connection:
        series = await history.read_series(connection, run_pk, keys)
    return history.history_rows(series, None)


async def test_compaction_keeps_history(database: Database) -> None:
    run_pk = await new_run(database)
    for seq in range(100):
        rows = [(seq * 3 + i, float(seq), {"x": seq * 1000.0 + i}) for i in range(5)]
        await store(database, run_pk, seq, rows)
    before = await read(database, run_pk)

    async with database.reading() as connection:
        metric_ids = await history.compactable_metrics(connection, run_pk)
    removed = await database.write_sync(history.compact_metric, metric_ids[0])
    after = await read(database, run_pk)
    async with database.reading() as connection:
        chunk_count = await connection.scalar(select(func.count()).select_from(schema.chunks))

    assert removed == 99
    assert chunk_count == 1
    assert after == before
    assert after[3]["x"] == 1000.0  # batch 0 wrote step 3, then batch 1 did: the later wins


async def test_reading_one_metric_skips_others(database: Database) -> None:
    run_pk = await new_run(database)
    await store(database, run_pk, 0, [(0, 0.0, {"a": 1.0, "b": 2.0}), (1, 1.0, {"b": 3.0})])
    async with database.reading() as connection:
        ids = dict(
            (await connection.execute(select(schema.metrics.c.key, schema.metrics.c.id))).all()
        )
    statements: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        statements.append((statement, parameters))

    event.listen(database.engine.sync_engine, "before_cursor_execute", record)
    rows = await read(database, run_pk, ["a"])
    event.remove(database.engine.sync_engine, "before_cursor_execute", record)
    chunk_reads = [params for statement, params in statements if "FROM chunks" in statement]

    assert rows == [{"step": 0, "_timestamp": 0.0, "a": 1.0}]
    assert len(chunk_reads) == 1
    assert ids["a"] in tuple(chunk_reads[0])
    assert ids["b"] not in tuple(chunk_reads[0])


async def test_step_range_reads_part_of_history(database: Database) -> None:
    run_pk = await new_run(database)
    await store(database, run_pk, 0, [(step, 0.0, {"x": float(step)}) for step in range(100)])
    async with database.reading() as connection:
        series = await history.read_series(connection, run_pk, ["x"], 10, 19)

    assert series["x"].steps.tolist() == list(range(10, 20))


kinds = st.sampled_from([0, 0, 0, 0, 1, 2])
special = st.sampled_from([math.nan, math.inf, -math.inf])
values = st.one_of(st.floats(-1e6, 1e6), special)


def point_arrays(points: list[tuple[float, int]]) -> tuple[Any, Any]:
    """Return the payloads and kinds of generated points; integer payloads are whole."""
    payload = np.array([0.0 if kind == 1 else value for value, kind in points])
    kind_array = np.array([kind for _, kind in points], dtype=np.uint8)
    payload[kind_array == 2] = np.round(np.nan_to_num(payload[kind_array == 2]))
    return payload, kind_array


def assert_extremes_and_specials_kept(payload: Any, kind_array: Any, keep: Any) -> None:
    """Check that ``keep`` has the extremes and one point of each non-finite kind present."""
    ordered = ~((kind_array == 0) & np.isnan(payload)) & (kind_array != 1)
    if ordered.any():
        assert payload[keep][ordered[keep]].min() == payload[ordered].min()
        assert payload[keep][ordered[keep]].max() == payload[ordered].max()
    for mask in (
        (kind_array == 0) & np.isnan(payload),
        (kind_array == 0) & (payload == math.inf),
        (kind_array == 0) & (payload == -math.inf),
        kind_array == 1,
    ):
        assert mask[keep].any() == mask.any()


@settings(max_examples=300, deadline=None)
@given(
    points=st.lists(st.tuples(values, kinds), min_size=1, max_size=600),
    samples=st.integers(MIN_SAMPLES, 120),
)
def test_downsample_keeps_extremes_and_specials(
    points: list[tuple[float, int]], samples: int
) -> None:
    payload, kind_array = point_arrays(points)

    keep = downsample(payload, kind_array, samples)
    kept = set(keep.tolist())

    assert len(keep) <= max(samples, len(points) if len(points) <= samples else samples)
    assert keep.tolist() == sorted(kept)
    assert 0 in kept
    assert len(points) - 1 in kept
    assert_extremes_and_specials_kept(payload, kind_array, keep)


def test_buckets_keep_their_own_extremes() -> None:
    nan, inf = math.nan, math.inf
    # Four buckets of three points: [3 1 2] [5 NaN 4] [+Inf 0 0] [-Inf 7 null].
    payload = np.array([3, 1, 2, 5, nan, 4, inf, 0, 0, -inf, 7, 0.0])
    kinds = np.zeros(12, np.uint8)
    kinds[11] = protocol.KIND_NULL

    keep = _bucket_points(payload, _Classes(payload, kinds), 4)

    # min and max of each bucket, its NaN and null, and the last point; the
    # second 0 of bucket three is not kept because the first one is its min.
    assert keep.tolist() == [0, 1, 3, 4, 5, 6, 7, 9, 10, 11]


def chunk(steps: list[int], values: list[float]) -> SimpleNamespace:
    return SimpleNamespace(
        points=len(steps),
        steps=np.array(steps, "<i8").tobytes(),
        times=np.array([float(step) for step in steps], "<f8").tobytes(),
        payload=np.array(values, "<f8").tobytes(),
        kinds=None,
    )


def test_series_keeps_last_value_per_step() -> None:
    # The second chunk logs step 1 again and step 0 out of order.
    series = history.Series.from_chunks(
        [chunk([0, 1, 2], [1.0, 2.0, 3.0]), chunk([1, 0], [20.0, 10.0])]
    )

    assert series.steps.tolist() == [0, 1, 2]
    assert series.values.tolist() == [10.0, 20.0, 3.0]


def test_series_in_order_kept_whole() -> None:
    series = history.Series.from_chunks([chunk([0, 1], [1.0, math.nan]), chunk([5], [-math.inf])])

    assert series.steps.tolist() == [0, 1, 5]
    assert series.values[0] == 1.0
    assert math.isnan(series.values[1])
    assert series.values[2] == -math.inf


def test_downsample_keeps_spike_in_long_series() -> None:
    payload = np.sin(np.arange(100_000) / 1000)
    payload[54_321] = 1e9
    payload[77_777] = math.nan

    keep = downsample(payload, np.zeros(len(payload), np.uint8), 500)

    assert len(keep) <= 500
    assert 54_321 in keep
    assert 77_777 in keep


@settings(max_examples=200, deadline=None)
@given(
    points=st.lists(st.tuples(values, kinds), min_size=1, max_size=2_000),
    samples=st.integers(MIN_SAMPLES, 60),
)
def test_overview_then_downsample_keeps_extremes(
    points: list[tuple[float, int]], samples: int
) -> None:
    payload, kind_array = point_arrays(points)

    summary = overview(payload, kind_array, history.OVERVIEW_BUCKET)
    keep = summary[downsample(payload[summary], kind_array[summary], samples)]

    assert summary.tolist() == sorted(set(summary.tolist()))
    assert len(keep) <= samples or len(keep) == len(summary)
    assert keep[0] == 0
    assert keep[-1] == len(points) - 1
    assert_extremes_and_specials_kept(payload, kind_array, keep)


def long_rows(first: int, count: int) -> list[Any]:
    return [
        (step, float(step), {"loss": math.sin(step / 100)}) for step in range(first, first + count)
    ]


async def read_long(db: Database, run_pk: int, samples: int | None) -> history.Series:
    async with db.reading() as connection:
        found = await history.read_runs_series(connection, [run_pk], ["loss"], samples=samples)
    return found[run_pk]["loss"]


async def test_long_metric_read_from_overviews(database: Database) -> None:
    run_pk = await new_run(database)
    for seq in range(3):
        rows = long_rows(seq * 5_000, 5_000)
        if seq == 1:
            rows[1_234] = (6_234, 6_234.0, {"loss": 1e9})
            rows[4_321] = (9_321, 9_321.0, {"loss": math.nan})
        await store(database, run_pk, seq, rows)

    whole = await read_long(database, run_pk, None)
    summary = await read_long(database, run_pk, 100)
    short_chart = await read_long(database, run_pk, 1_000)

    assert len(whole.steps) == 15_000
    assert len(short_chart.steps) == 15_000
    assert 500 < len(summary.steps) < 1_500
    assert summary.steps[0] == 0
    assert summary.steps[-1] == 14_999
    assert summary.values[summary.steps == 6_234].tolist() == [1e9]
    assert math.isnan(summary.values[summary.steps == 9_321][0])
    assert summary.times[summary.steps == 6_234].tolist() == [6_234.0]


async def test_repeated_step_read_whole(database: Database) -> None:
    run_pk = await new_run(database)
    for seq in range(3):
        await store(database, run_pk, seq, long_rows(seq * 5_000, 5_000))
    await store(database, run_pk, 3, [(7_000, 1.0, {"loss": 123.0})])

    summary = await read_long(database, run_pk, 100)

    assert len(summary.steps) == 15_000
    assert summary.values[summary.steps == 7_000].tolist() == [123.0]


async def test_compaction_writes_overview(database: Database) -> None:
    run_pk = await new_run(database)
    for seq in range(70):
        await store(database, run_pk, seq, long_rows(seq * 100, 100))

    async def overviews() -> list[Any]:
        async with database.reading() as connection:
            rows = await connection.execute(
                select(schema.chunks.c.overview_count).order_by(schema.chunks.c.id)
            )
            return [row.overview_count for row in rows]

    before = await overviews()
    async with database.reading() as connection:
        metric_ids = await history.compactable_metrics(connection, run_pk)
    await database.write_sync(history.compact_metric, metric_ids[0])
    after = await overviews()
    summary = await read_long(database, run_pk, 50)

    assert set(before) == {None}
    assert len(after) == 1
    assert after[0] is not None
    assert after[0] < 7_000
    assert len(summary.steps) == after[0]


@pytest.mark.parametrize(
    ("layout", "groups"),
    [
        # Chunks under 64 points count as 64: 100 merges with 40, and the
        # 140 they make is more than twice the 64 that 30 counts as.
        ([(1, 100), (2, 40), (3, 30)], [[1, 2]]),
        # 20 and 20 merge, and 300 is more than twice the 64 that their 40 count as.
        ([(1, 300), (2, 20), (3, 20)], [[2, 3]]),
        ([(1, 500), (2, 100)], []),
        # A chunk of half the target or more never merges again.
        ([(1, 9000), (2, 1), (3, 1)], [[2, 3]]),
        # Two chunks merge only up to the target.
        ([(1, 8100), (2, 8100), (3, 8100)], [[1, 2]]),
        ([(1, 1)], []),
    ],
)
def test_merge_plan_by_size_class(layout: list[tuple[int, int]], groups: list[list[int]]) -> None:
    assert history.merge_plan(layout, complete=False) == groups


def test_merge_plan_complete_merges_neighbours() -> None:
    layout = [(1, 100), (2, 30), (3, 9000), (4, 1), (5, 1)]

    assert history.merge_plan(layout, complete=True) == [[1, 2], [4, 5]]


def test_merge_plan_rewrites_points_few_times() -> None:
    # 5,000 one-point chunks, planned every 64 as the compactor does.
    layout: list[tuple[int, int]] = []
    rewritten = 0
    max_chunks = 0
    for chunk_id in range(5_000):
        layout.append((chunk_id, 1))
        if chunk_id % 64 != 63:
            continue
        sizes = dict(layout)
        for group in history.merge_plan(layout, complete=False):
            merged = sum(sizes.pop(member) for member in group)
            sizes[group[0]] = merged
            rewritten += merged
        layout = sorted(sizes.items())
        max_chunks = max(max_chunks, len(layout))

    assert sum(count for _, count in layout) == 5_000
    assert rewritten / 5_000 < 8
    assert max_chunks <= 12
