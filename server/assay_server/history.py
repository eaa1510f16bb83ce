"""Metric history in columnar chunks: writing batches, reading and compacting.

Each batch adds one chunk per metric it carries. A chunk contains the steps,
timestamps, float64 payloads and (when needed) kind bytes of one metric, with
its count, step range, min, max and NaN, infinity and null flags beside it,
so a reader of one metric never touches another's rows. When a value is
logged twice at one step, the later one wins: chunks are read in insertion
order and the last occurrence of each step is kept.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from sqlalchemy import Double, bindparam, case, delete, func, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from assay import protocol
from assay_server import schema
from assay_server.batch import Batch, Column, Float64Array, Int64Array, UInt8Array
from assay_server.downsample import downsample, overview
from assay_server.sql import insert_or_ignore

#: A metric is compacted once it has this many chunks.
COMPACT_AFTER = 64
#: Compaction merges neighbouring chunks up to this many points.
CHUNK_TARGET = 16_384
#: While a run is written, a chunk merges with the newer chunk after it only
#: when it has at most this many times that chunk's points.
MERGE_RATIO = 2
#: Chunks smaller than this count as this size in that comparison, so that the
#: one-step chunks of a compaction merge in one group rather than in halves.
MERGE_FLOOR = 64
#: A chunk's overview keeps a few points of each bucket of this many points.
OVERVIEW_BUCKET = 32
#: Chunks of fewer points get no overview: reading them whole costs little.
OVERVIEW_MIN_POINTS = 4 * OVERVIEW_BUCKET
#: A chart of ``samples`` points reads overviews only of a metric with at least
#: this many times as many points. An overview keeps about 2 of every
#: OVERVIEW_BUCKET points, so it still has twice the points the chart keeps.
OVERVIEW_MIN_RATIO = OVERVIEW_BUCKET


class Series:
    """One metric's history, sorted by step with one value per step."""

    def __init__(
        self,
        steps: Int64Array,
        times: Float64Array,
        values: Float64Array,
        kinds: UInt8Array,
    ) -> None:
        self.steps = steps
        self.times = times
        self.values = values
        self.kinds = kinds

    @classmethod
    def from_chunks(cls, chunks: Sequence[Any], *, with_times: bool = True) -> Series:
        steps = np.concatenate([np.frombuffer(c.steps, "<i8") for c in chunks])
        if with_times:
            times = np.concatenate([np.frombuffer(c.times, "<f8") for c in chunks])
        else:
            times = np.full(len(steps), np.nan)
        values = np.concatenate([np.frombuffer(c.payload, "<f8") for c in chunks])
        kinds = np.concatenate(
            [
                np.zeros(c.points, np.uint8) if c.kinds is None else np.frombuffer(c.kinds, "u1")
                for c in chunks
            ]
        )
        if len(steps) < 2 or bool(np.all(steps[1:] > steps[:-1])):
            return cls(steps, times, values, kinds)
        # A step was logged twice or out of order. np.unique keeps the first
        # occurrence, so search the reversed arrays to keep the last value.
        _, reversed_index = np.unique(steps[::-1], return_index=True)
        keep = len(steps) - 1 - reversed_index
        return cls(steps[keep], times[keep], values[keep], kinds[keep])

    def select(self, index: Int64Array) -> Series:
        return Series(self.steps[index], self.times[index], self.values[index], self.kinds[index])

    def between(self, min_step: int | None, max_step: int | None) -> Series:
        if min_step is None and max_step is None:
            return self
        low = 0 if min_step is None else int(np.searchsorted(self.steps, min_step, "left"))
        high = (
            len(self.steps)
            if max_step is None
            else int(np.searchsorted(self.steps, max_step, "right"))
        )
        return self.select(np.arange(low, high))


def ensure_metrics(
    connection: Connection, run_pk: int, keys: Iterable[str], is_sqlite: bool
) -> dict[str, int]:
    """Return the metric ids of ``keys`` for a run, creating the missing ones."""
    wanted = list(keys)
    if not wanted:
        return {}
    connection.execute(
        insert_or_ignore(schema.metrics, is_sqlite),
        [{"run_pk": run_pk, "key": key, "count": 0, "chunk_count": 0} for key in wanted],
    )
    ids: dict[str, int] = {}
    for start in range(0, len(wanted), 1000):
        rows = connection.execute(
            _METRIC_IDS, {"run_pk": run_pk, "keys": wanted[start : start + 1000]}
        )
        ids.update({row.key: row.id for row in rows})
    return ids


_METRIC_IDS = select(schema.metrics.c.key, schema.metrics.c.id).where(
    schema.metrics.c.run_pk == bindparam("run_pk"),
    schema.metrics.c.key.in_(bindparam("keys", expanding=True)),
)


def claim_batches(
    connection: Connection, keys: Sequence[tuple[int, int, int]], is_sqlite: bool
) -> set[tuple[int, int, int]]:
    """Record ``(run_pk, session, seq)`` batch numbers in one statement.

    Returns the keys recorded now. A key stored before, or listed twice, is
    returned at most once, and its batch must be skipped.
    """
    if not keys:
        return set()
    stored_at = time.time()
    b = schema.batches.c
    # An executemany with RETURNING runs as one multi-row INSERT per chunk of
    # rows ("insertmanyvalues"), compiled once rather than for every group size.
    result = connection.execute(
        insert_or_ignore(schema.batches, is_sqlite).returning(b.run_pk, b.session, b.seq),
        [
            {"run_pk": run_pk, "session": session, "seq": seq, "stored_at": stored_at}
            for run_pk, session, seq in keys
        ],
    )
    return {(row.run_pk, row.session, row.seq) for row in result}


def write_batches(
    connection: Connection, batches: Sequence[tuple[int, Batch, dict[str, int]]]
) -> None:
    """Store claimed batches of any runs with one statement per table.

    Each entry is a run's primary key, its batch and the metric ids of the
    batch's keys. Entries are applied in order, so two batches of one metric
    fold into its summary as two writes one after the other would.
    """
    columns = [
        (metric_ids[column.key], column)
        for _, batch, metric_ids in batches
        for column in batch.columns
    ]
    if columns:
        connection.execute(
            schema.chunks.insert(), [_chunk_row(metric_id, c) for metric_id, c in columns]
        )
        connection.execute(
            _SUMMARY_UPDATE, [_summary_params(metric_id, c) for metric_id, c in columns]
        )
    next_steps = [
        {"target_pk": run_pk, "next": batch.max_step + 1}
        for run_pk, batch, _ in batches
        if batch.max_step is not None
    ]
    if next_steps:
        connection.execute(_NEXT_STEP_UPDATE, next_steps)


def _typed(name: str) -> Any:
    return bindparam(name, type_=Double())


_m = schema.metrics.c
_SUMMARY_UPDATE = (
    update(schema.metrics)
    .where(_m.id == bindparam("metric_id"))
    .values(
        count=_m.count + bindparam("n"),
        chunk_count=_m.chunk_count + 1,
        last_step=bindparam("last_step"),
        last_value=_typed("last_value"),
        last_kind=bindparam("last_kind"),
        min_value=case(
            (_typed("low").is_(None), _m.min_value),
            (_m.min_value.is_(None), _typed("low")),
            (_typed("low") < _m.min_value, _typed("low")),
            else_=_m.min_value,
        ),
        max_value=case(
            (_typed("high").is_(None), _m.max_value),
            (_m.max_value.is_(None), _typed("high")),
            (_typed("high") > _m.max_value, _typed("high")),
            else_=_m.max_value,
        ),
        has_nan=_m.has_nan | bindparam("nan"),
        has_inf=_m.has_inf | bindparam("inf"),
        has_null=_m.has_null | bindparam("null"),
    )
)


_NEXT_STEP_UPDATE = (
    update(schema.runs)
    .where(schema.runs.c.pk == bindparam("target_pk"), schema.runs.c.next_step < bindparam("next"))
    .values(next_step=bindparam("next"))
)


def _summary_params(metric_id: int, column: Column) -> dict[str, Any]:
    return {
        "metric_id": metric_id,
        "n": column.count,
        "last_step": column.last_step,
        "last_value": column.last_value,
        "last_kind": column.last_kind,
        "low": column.value_min,
        "high": column.value_max,
        "nan": column.has_nan,
        "inf": column.has_inf,
        "null": column.has_null,
    }


def overview_fields(
    steps: Int64Array, times: Float64Array, values: Float64Array, kinds: UInt8Array
) -> dict[str, Any]:
    """Return a chunk's overview columns, all null for a small chunk or a repeated step.

    A chunk with a step logged twice keeps the later value when read whole,
    which its overview could miss, so it has none.
    """
    if len(steps) < OVERVIEW_MIN_POINTS or not bool(np.all(steps[1:] > steps[:-1])):
        return {
            "overview_count": None,
            "overview_steps": None,
            "overview_values": None,
            "overview_kinds": None,
            "overview_times": None,
        }
    keep = overview(values, kinds, OVERVIEW_BUCKET)
    kept_kinds = kinds[keep]
    return {
        "overview_count": len(keep),
        "overview_steps": steps[keep].astype("<i8").tobytes(),
        "overview_values": values[keep].astype("<f8").tobytes(),
        "overview_kinds": kept_kinds.tobytes() if kept_kinds.any() else None,
        "overview_times": times[keep].astype("<f8").tobytes(),
    }


def _chunk_row(metric_id: int, column: Column) -> dict[str, Any]:
    kinds = np.zeros(column.count, np.uint8) if column.kinds is None else column.kinds
    return {
        **overview_fields(column.steps, column.times, column.values, kinds),
        "metric_id": metric_id,
        "count": column.count,
        "step_min": int(column.steps.min()),
        "step_max": int(column.steps.max()),
        "value_min": column.value_min,
        "value_max": column.value_max,
        "has_nan": column.has_nan,
        "has_inf": column.has_inf,
        "has_null": column.has_null,
        "steps": column.steps.astype("<i8").tobytes(),
        "values": column.values.astype("<f8").tobytes(),
        "kinds": None if column.kinds is None else column.kinds.tobytes(),
        "times": column.times.astype("<f8").tobytes(),
    }


async def read_series(
    connection: AsyncConnection,
    run_pk: int,
    keys: Sequence[str] | None,
    min_step: int | None = None,
    max_step: int | None = None,
) -> dict[str, Series]:
    """Read whole metrics of one run, touching only the chunks of ``keys``."""
    found = await read_runs_series(connection, [run_pk], keys, min_step, max_step)
    return found.get(run_pk, {})


async def read_runs_series(
    connection: AsyncConnection,
    run_pks: Sequence[int],
    keys: Sequence[str] | None,
    min_step: int | None = None,
    max_step: int | None = None,
    *,
    with_times: bool = True,
    samples: int | None = None,
) -> dict[int, dict[str, Series]]:
    """Read whole metrics of several runs in two queries, keyed by run pk, then metric key.

    Without ``with_times`` the wall-clock column is not read, and every
    returned time is NaN: a third less to read for charts drawn against steps.
    With ``samples``, for a chart that keeps that many points of each whole
    metric, a long metric is read from its chunks' overviews where they have
    one: only the points such a chart can keep.
    """
    if not run_pks:
        return {}
    m = schema.metrics.c
    query = select(m.id, m.key, m.run_pk, m.count.label("points"))
    query = query.where(m.run_pk.in_(list(run_pks)))
    if keys is not None:
        query = query.where(m.key.in_(list(keys)))
    metrics = {row.id: row for row in (await connection.execute(query)).all()}
    if not metrics:
        return {}
    long: set[int] = set()
    if samples is not None and min_step is None and max_step is None:
        threshold = OVERVIEW_MIN_RATIO * samples
        long = {metric_id for metric_id, row in metrics.items() if row.points >= threshold}
    read = {metric_id: metric_id in long for metric_id in metrics}
    found: dict[int, dict[str, Series]] = {}
    while read:
        rows = await _read_chunks(connection, read, min_step, max_step, with_times)
        read = {}
        for metric_id, group in itertools.groupby(rows, key=lambda row: row.metric_id):
            chunks = list(group)
            if long and metric_id in long and not _ascending(chunks):
                # A step logged in two chunks keeps the later value, which an
                # overview may miss, so this metric is read whole.
                read[metric_id] = False
                continue
            metric = metrics[metric_id]
            series = Series.from_chunks(chunks, with_times=with_times)
            found.setdefault(metric.run_pk, {})[metric.key] = series.between(min_step, max_step)
        long = set()
    return {pk: dict(sorted(by_key.items())) for pk, by_key in found.items()}


async def _read_chunks(
    connection: AsyncConnection,
    metrics: dict[int, bool],
    min_step: int | None,
    max_step: int | None,
    with_times: bool,
) -> list[Any]:
    """Read the chunks of ``metrics``, as overviews where the flag is True and one exists."""
    c = schema.chunks.c
    rows: list[Any] = []
    for use_overview in (False, True):
        chosen = [metric_id for metric_id, flag in metrics.items() if flag is use_overview]
        if not chosen:
            continue
        columns: list[Any]
        if use_overview:
            columns = [
                func.coalesce(c.overview_count, c.count).label("points"),
                func.coalesce(c.overview_steps, c.steps).label("steps"),
                func.coalesce(c.overview_values, c["values"]).label("payload"),
                case((c.overview_count.is_(None), c.kinds), else_=c.overview_kinds).label("kinds"),
            ]
            if with_times:
                columns.append(func.coalesce(c.overview_times, c.times).label("times"))
        else:
            columns = [c.count.label("points"), c.steps, c["values"].label("payload"), c.kinds]
            if with_times:
                columns.append(c.times)
        query = (
            select(c.metric_id, c.step_min, c.step_max, *columns)
            .where(c.metric_id.in_(chosen))
            .order_by(c.metric_id, c.id)
        )
        if min_step is not None:
            query = query.where(c.step_max >= min_step)
        if max_step is not None:
            query = query.where(c.step_min <= max_step)
        rows.extend((await connection.execute(query)).all())
    rows.sort(key=lambda row: row.metric_id)
    return rows


def _ascending(chunks: Sequence[Any]) -> bool:
    """Return whether each chunk's steps all come after the previous chunk's."""
    return all(later.step_min > earlier.step_max for earlier, later in itertools.pairwise(chunks))


def history_rows(series: dict[str, Series], samples: int | None) -> list[dict[str, Any]]:
    """Join metrics into rows keyed by step, as ``Run.history()`` returns them.

    A metric that was not logged at a step is absent from that row; a logged
    null is present as None. ``_timestamp`` is the latest time any of the
    row's metrics was logged.
    """
    rows: dict[int, dict[str, Any]] = {}
    for key, one in series.items():
        if samples is not None:
            one = one.select(downsample(one.values, one.kinds, samples))
        for step, timestamp, value, kind in zip(
            one.steps.tolist(),
            one.times.tolist(),
            one.values.tolist(),
            one.kinds.tolist(),
            strict=True,
        ):
            row = rows.get(step)
            if row is None:
                row = rows[step] = {"step": step, "_timestamp": timestamp}
            elif timestamp > row["_timestamp"]:
                row["_timestamp"] = timestamp
            row[key] = protocol.decode_value(value, kind)
    return [rows[step] for step in sorted(rows)]


async def compactable_metrics(
    connection: AsyncConnection, run_pk: int, min_chunks: int = COMPACT_AFTER
) -> list[int]:
    """Return the ids of the run's metrics that have at least ``min_chunks`` chunks."""
    rows = await connection.execute(
        select(schema.metrics.c.id).where(
            schema.metrics.c.run_pk == run_pk, schema.metrics.c.chunk_count >= min_chunks
        )
    )
    return [row.id for row in rows]


def compact_metric(connection: Connection, metric_id: int, complete: bool = True) -> int:
    """Merge runs of neighbouring small chunks; return how many chunks were removed.

    Only neighbours merge, and their points keep their order inside the merged
    chunk, which takes the place of the first, so "the later value wins" holds.
    With ``complete``, every run of small chunks merges up to ``CHUNK_TARGET``
    points, as suits a run that has ended. Without it, chunks merge by size
    class (see ``merge_plan``), as suits a run that is still written.
    """
    c = schema.chunks.c
    layout = connection.execute(
        select(c.id, c.count).where(c.metric_id == metric_id).order_by(c.id)
    ).all()
    groups = merge_plan([(chunk_id, count) for chunk_id, count in layout], complete)
    removed = 0
    for group in groups:
        _merge_chunks(connection, group)
        removed += len(group) - 1
    connection.execute(
        update(schema.metrics)
        .where(schema.metrics.c.id == metric_id)
        .values(chunk_count=len(layout) - removed)
    )
    return removed


def merge_plan(layout: Sequence[tuple[int, int]], complete: bool) -> list[list[int]]:
    """Return the groups of neighbouring chunk ids to merge, each in id order.

    ``layout`` lists each chunk's id and point count, in id order. A chunk of
    at least half of ``CHUNK_TARGET`` points never merges again.

    Merging every small chunk into one rewrites a growing chunk at each
    compaction of a run that is still written. Without ``complete``, two
    neighbours merge only when the older has at most ``MERGE_RATIO`` times
    the newer's points (chunks under ``MERGE_FLOOR`` points count as that
    many), so the chunks left unmerged shrink geometrically and a metric
    keeps few of them. Simulated over 20,000 one-step batches with a
    compaction every 64, a point was rewritten 5.8 times on average, against
    58 times when every small chunk merged.
    """
    if complete:
        return _merge_all(layout)
    # Each entry: the ids of a planned chunk, its points, and whether it is full.
    stack: list[tuple[list[int], int, bool]] = []
    for chunk_id, count in layout:
        stack.append(([chunk_id], count, count >= CHUNK_TARGET // 2))
        while len(stack) >= 2:
            (older_ids, older, older_full), (newer_ids, newer, newer_full) = stack[-2:]
            if older_full or newer_full:
                break
            if max(older, MERGE_FLOOR) > MERGE_RATIO * max(newer, MERGE_FLOOR):
                break
            if older + newer > CHUNK_TARGET:
                break
            merged = older + newer
            stack[-2:] = [(older_ids + newer_ids, merged, merged >= CHUNK_TARGET // 2)]
    return [ids for ids, _, _ in stack if len(ids) > 1]


def _merge_all(layout: Sequence[tuple[int, int]]) -> list[list[int]]:
    groups: list[list[int]] = []
    current: list[int] = []
    size = 0
    for chunk_id, count in layout:
        if count >= CHUNK_TARGET // 2 or size + count > CHUNK_TARGET:
            groups.append(current)
            current, size = [], 0
        if count < CHUNK_TARGET // 2:
            current.append(chunk_id)
            size += count
    groups.append(current)
    return [group for group in groups if len(group) > 1]


def _merge_chunks(connection: Connection, chunk_ids: list[int]) -> None:
    c = schema.chunks.c
    rows = connection.execute(
        select(schema.chunks).where(c.id.in_(chunk_ids)).order_by(c.id)
    ).all()
    kinds = [
        np.zeros(row._mapping["count"], np.uint8)
        if row.kinds is None
        else np.frombuffer(row.kinds, "u1")
        for row in rows
    ]
    merged_kinds = np.concatenate(kinds)
    steps = b"".join(row.steps for row in rows)
    values = b"".join(row._mapping["values"] for row in rows)
    times = b"".join(row.times for row in rows)
    summary = overview_fields(
        np.frombuffer(steps, "<i8"),
        np.frombuffer(times, "<f8"),
        np.frombuffer(values, "<f8"),
        merged_kinds,
    )
    lows = [row.value_min for row in rows if row.value_min is not None]
    highs = [row.value_max for row in rows if row.value_max is not None]
    connection.execute(
        update(schema.chunks)
        .where(c.id == chunk_ids[0])
        .values(
            **summary,
            count=sum(row._mapping["count"] for row in rows),
            step_min=min(row.step_min for row in rows),
            step_max=max(row.step_max for row in rows),
            value_min=min(lows) if lows else None,
            value_max=max(highs) if highs else None,
            has_nan=any(row.has_nan for row in rows),
            has_inf=any(row.has_inf for row in rows),
            has_null=any(row.has_null for row in rows),
            steps=steps,
            values=values,
            kinds=merged_kinds.tobytes() if merged_kinds.any() else None,
            times=times,
        )
    )
    connection.execute(delete(schema.chunks).where(c.id.in_(chunk_ids[1:])))
