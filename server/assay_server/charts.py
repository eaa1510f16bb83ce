"""Chart data for the workspace: metric keys, bulk history and line-plot figures.

``/series`` returns several metrics of many runs in one request, downsampled
on the server as ``/history`` is (per bucket, its extremes and first NaN,
+Inf, -Inf and null). ``min_step`` and ``max_step`` narrow the range, so a
zoomed-in chart can ask again and get full resolution. ``/figure`` returns the
plotly figure that a line-plot panel draws (see ``figures.py``).
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from pycrdt import Array
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from assay import protocol
from assay.protocol import MAX_STEP
from assay_server import (
    access,
    figures,
    grouping,
    history,
    runs,
    runset_figures,
    runsets,
    schema,
    smoothing,
)
from assay_server.api import MAX_PAGE, context, int_param, respond
from assay_server.downsample import MIN_SAMPLES, downsample
from assay_server.errors import BadRequest, Forbidden, NotFound
from assay_server.filters.tree import SummaryField
from assay_server.history import Series
from assay_server.reports import store as report_store
from assay_server.reports.document import runset_spec

#: At most this many runs per request; a chart with more lines is unreadable anyway.
MAX_RUNS = 100
#: At most this many metrics per ``/series`` request.
MAX_KEYS = 20
DEFAULT_RUNS = 20
DEFAULT_SAMPLES = 1000
MAX_SAMPLES = 100_000


async def project_keys(request: Request) -> Response:
    """Return every metric key logged in the project, sorted."""
    project_id = (await access.project_access(request)).project_id
    async with context(request).db.reading() as db:
        rows = await db.execute(
            select(schema.metrics.c.key)
            .distinct()
            .join(schema.runs, schema.runs.c.pk == schema.metrics.c.run_pk)
            .where(schema.runs.c.project_id == project_id)
            .order_by(schema.metrics.c.key)
        )
        return respond(request, {"keys": [row.key for row in rows]})


async def chosen_runs(
    db: AsyncConnection, project: str, run_ids: list[str], default_count: int
) -> list[dict[str, Any]]:
    """Return the runs named in ``run_ids`` in that order, or the newest ``default_count``."""
    if len(run_ids) > MAX_RUNS:
        raise BadRequest(f"at most {MAX_RUNS} runs per request, got {len(run_ids)}")
    found = await runs.list_runs(db, project, MAX_RUNS if run_ids else default_count, 0)
    if not run_ids:
        return found
    by_id = {run["id"]: run for run in found}
    missing = [run_id for run_id in run_ids if run_id not in by_id]
    for run_id in missing:
        by_id[run_id] = await runs.get_run(db, project, run_id)
    return [by_id[run_id] for run_id in dict.fromkeys(run_ids)]


async def check_shared_runs(
    request: Request, scope: access.ReportScope, spec: figures.LineSpec
) -> None:
    """Raise ``Forbidden`` unless a share link's report draws the metrics and runs requested."""
    check_shared_keys(scope, spec)
    run_ids = set(request.query_params.getlist("runs"))
    if not run_ids:
        raise BadRequest("a share link's figure needs 'runs': the ids of the runs to draw")
    limit = context(request).settings.max_filter_length
    async with context(request).db.reading() as db:
        project_id = await runs.project_id(db, request.path_params["project"])
        members = await runs.scope_run_ids(db, project_id, scope.filters, limit)
    outside = sorted(run_ids - members)
    if outside:
        raise Forbidden(
            f"this share link shows only the runs of its report's run sets, not {outside[0]!r}",
            code="outside_report",
        )


def check_shared_keys(scope: access.ReportScope, spec: figures.LineSpec) -> None:
    """Raise ``Forbidden`` unless a share link's report draws the figure's metrics."""
    for key in (spec.key, spec.x_key):
        if key is not None and not scope.allows_key(key):
            raise Forbidden(
                f"this share link shows only the metrics its report draws, not {key!r}",
                code="outside_report",
            )


async def run_pks(db: AsyncConnection, project: str, run_ids: list[str]) -> dict[str, int]:
    project_id = await runs.project_id(db, project)
    rows = await db.execute(
        select(schema.runs.c.run_id, schema.runs.c.pk).where(
            schema.runs.c.project_id == project_id, schema.runs.c.run_id.in_(run_ids)
        )
    )
    return {row.run_id: row.pk for row in rows}


def sampled(series: Series, samples: int | None) -> Series:
    if samples is None:
        return series
    return series.select(downsample(series.values, series.kinds, samples))


def series_document(series: Series) -> dict[str, list[Any]]:
    return {
        "steps": series.steps.tolist(),
        "times": series.times.tolist(),
        "values": [
            protocol.decode_value(v, k)
            for v, k in zip(series.values.tolist(), series.kinds.tolist(), strict=True)
        ],
    }


def step_range(request: Request) -> tuple[int | None, int | None]:
    min_step = int_param(request, "min_step", None, 0, MAX_STEP)
    max_step = int_param(request, "max_step", None, 0, MAX_STEP)
    if min_step is not None and max_step is not None and min_step > max_step:
        raise BadRequest(f"min_step {min_step} is greater than max_step {max_step}")
    return min_step, max_step


async def bulk_series(request: Request) -> Response:
    """Return several metrics of many runs as ``{"series": {RUN: {KEY: {steps, times, values}}}}``.

    Query parameters: ``runs`` and ``keys`` (repeatable; runs default to the
    newest ``DEFAULT_RUNS``), ``samples`` (points per metric and run, default
    ``DEFAULT_SAMPLES``), ``min_step`` and ``max_step``.
    """
    await access.project_access(request)
    project = request.path_params["project"]
    keys = request.query_params.getlist("keys")
    if not keys:
        raise BadRequest("query parameter 'keys' is required, e.g. ?keys=loss")
    if len(keys) > MAX_KEYS:
        raise BadRequest(f"at most {MAX_KEYS} keys per request, got {len(keys)}")
    samples = int_param(request, "samples", DEFAULT_SAMPLES, MIN_SAMPLES, MAX_SAMPLES)
    min_step, max_step = step_range(request)
    result: dict[str, dict[str, Any]] = {}
    async with context(request).db.reading() as db:
        chosen = await chosen_runs(db, project, request.query_params.getlist("runs"), DEFAULT_RUNS)
        pks = await run_pks(db, project, [run["id"] for run in chosen])
        for run in chosen:
            found = await history.read_series(db, pks[run["id"]], keys, min_step, max_step)
            result[run["id"]] = {
                key: series_document(sampled(one, samples)) for key, one in found.items()
            }
    return respond(request, {"series": result})


def line_spec(request: Request) -> figures.LineSpec:
    params = request.query_params
    key = params.get("key")
    if not key:
        raise BadRequest("query parameter 'key' is required, e.g. ?key=loss")
    x = params.get("x", figures.X_STEP)
    fixed = (figures.X_STEP, figures.X_TIME, figures.X_RELATIVE)
    if x not in fixed and not (x.startswith(figures.X_METRIC_PREFIX) and len(x) > 7):
        raise BadRequest(
            f"query parameter 'x' must be step, time, relative or metric:KEY, got {x!r}"
        )
    method = params.get("smoothing", smoothing.NONE)
    if method not in smoothing.METHODS:
        raise BadRequest(
            f"query parameter 'smoothing' must be one of {', '.join(smoothing.METHODS)}, "
            f"got {method!r}"
        )
    parameter = float_param(request, "parameter", 0.0)
    try:
        smoothing.check_parameter(method, parameter)
    except ValueError as exc:
        raise BadRequest(f"query parameter 'parameter': {exc}") from None
    return figures.LineSpec(
        key=key,
        x=x,
        smoothing=method,
        parameter=parameter,
        log_x=flag_param(request, "log_x"),
        log_y=flag_param(request, "log_y"),
    )


#: The values a true or false query parameter takes.
FLAG_VALUES = {"1": True, "true": True, "0": False, "false": False}


def flag_param(request: Request, name: str) -> bool:
    """Return a true or false query parameter, false when it is absent."""
    raw = request.query_params.get(name)
    if raw is None:
        return False
    if raw not in FLAG_VALUES:
        raise BadRequest(f"query parameter {name!r} must be 1, true, 0 or false, got {raw!r:.40}")
    return FLAG_VALUES[raw]


def float_param(request: Request, name: str, default: float) -> float:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"query parameter {name!r} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise BadRequest(f"query parameter {name!r} must be finite, got {raw!r}")
    return value


async def line_figure(request: Request) -> Response:
    """Return the line-plot figure of one metric, with what the page needs to extend it live.

    Query parameters: ``key``; ``x`` (``step``, ``time``, ``relative`` or
    ``metric:KEY``); ``smoothing`` (``none``, ``ema``, ``average``,
    ``gaussian``) and its ``parameter``; ``log_x`` and ``log_y`` (``1``);
    ``runs``, ``samples``, ``min_step`` and ``max_step`` as for ``/series``.
    ``runsets`` (repeatable) draws those stored run sets instead of ``runs``.
    """
    granted = await access.project_access(request, allow_share=True)
    project = request.path_params["project"]
    spec = line_spec(request)
    if request.query_params.get("report") is not None:
        return await report_line_figure(request, granted, spec)
    if request.query_params.getlist("runsets"):
        if granted.scope is not None:
            raise Forbidden(
                "a share link draws its report's run sets by run id; "
                "'runsets' names the project's stored run sets",
                code="outside_report",
            )
        return await runset_line_figure(request, project, spec)
    if granted.scope is not None:
        await check_shared_runs(request, granted.scope, spec)
    samples = int_param(request, "samples", DEFAULT_SAMPLES, MIN_SAMPLES, MAX_SAMPLES)
    min_step, max_step = step_range(request)
    keys = [spec.key] if spec.x_key is None else [spec.key, spec.x_key]
    async with context(request).db.reading() as db:
        chosen = await chosen_runs(db, project, request.query_params.getlist("runs"), DEFAULT_RUNS)
        pks = await run_pks(db, project, [run["id"] for run in chosen])
        with_times = spec.x in (figures.X_TIME, figures.X_RELATIVE)
        every_run = await history.read_runs_series(
            db,
            list(pks.values()),
            keys,
            min_step,
            max_step,
            with_times=with_times,
            samples=overview_samples(spec, samples),
        )
        lines = [run_line(run, every_run.get(pks[run["id"]], {}), spec, samples) for run in chosen]
    document = {
        "figure": figures.line_figure(lines, spec),
        "runs": {
            line.run["id"]: {
                "name": line.run["name"],
                "state": line.run["state"],
                "created_at": line.run["created_at"],
                "colour": figures.run_colour(line.run["id"]),
            }
            for line in lines
        },
    }
    # orjson writes a stray NaN or infinity as null; the figure itself has none.
    return Response(orjson.dumps(document), media_type="application/json")


#: Runs drawn per ungrouped run set, from the top of its sort order.
LINES_PER_RUNSET = DEFAULT_RUNS
#: Runs aggregated per grouped run set, from the top of its sort order.
GROUPED_RUNS = MAX_RUNS


async def runset_line_figure(request: Request, project: str, spec: figures.LineSpec) -> Response:
    """Return the figure of ``spec.key`` over the run sets named by ``runsets``, in that order."""
    runset_ids = list(dict.fromkeys(request.query_params.getlist("runsets")))
    if len(runset_ids) > runsets.MAX_RUNSETS:
        raise BadRequest(
            f"at most {runsets.MAX_RUNSETS} run sets per figure, got {len(runset_ids)}"
        )
    async with context(request).db.reading() as db:
        project_id = await runs.project_id(db, project)
        documents = [
            runsets.runset_document(await runsets.get_runset(db, project_id, runset_id))
            for runset_id in runset_ids
        ]
    return await draw_runsets(request, project, spec, documents, None)


async def report_line_figure(
    request: Request, granted: access.ProjectAccess, spec: figures.LineSpec
) -> Response:
    """Return the figure of ``spec.key`` over the active run sets of one panel grid of a report.

    ``report`` and ``grid`` (the grid block's id) name the grid. ``runs``,
    when given, limits each run set to those runs, as the page draws them: a
    frozen run set's members are the runs it kept.
    """
    report_id = request.query_params["report"]
    grid_id = request.query_params.get("grid")
    if not grid_id:
        raise BadRequest("a report figure needs 'grid': the id of the panel-grid block")
    if granted.scope is not None:
        if report_id != granted.scope.report_id:
            raise Forbidden(
                f"this share link draws only its own report, not {report_id!r}",
                code="outside_report",
            )
        check_shared_keys(granted.scope, spec)
    async with context(request).db.reading() as db:
        await report_store.find_report(db, report_id, granted.project_id)
    doc = await request.app.state.reports.read_document(report_id)
    block = next(
        (
            item
            for item in doc.get("blocks", type=Array).to_py() or []
            if isinstance(item, dict)
            and item.get("type") == "panel_grid"
            and item.get("id") == grid_id
        ),
        None,
    )
    if block is None:
        raise NotFound(
            f"report {report_id!r} has no panel grid {grid_id!r}", code="grid_not_found"
        )
    documents = [
        runset_spec(run_set) for run_set in block.get("run_sets") or [] if run_set.get("active")
    ]
    chosen = request.query_params.getlist("runs")
    return await draw_runsets(
        request, granted.project, spec, documents, set(chosen) if chosen else None
    )


async def draw_runsets(
    request: Request,
    project: str,
    spec: figures.LineSpec,
    documents: list[dict[str, Any]],
    allowed: set[str] | None,
) -> Response:
    """Return the figure of ``spec.key`` over run-set ``documents``, limited to ``allowed``."""
    samples = int_param(request, "samples", DEFAULT_SAMPLES, MIN_SAMPLES, MAX_SAMPLES)
    min_step, max_step = step_range(request)
    keys = [spec.key] if spec.x_key is None else [spec.key, spec.x_key]
    sets: list[runset_figures.RunSetLines] = []
    # Each run's series is read once, even when several sets draw it.
    read: dict[str, tuple[dict[str, Any], dict[str, Series]]] = {}
    with_times = spec.x in (figures.X_TIME, figures.X_RELATIVE)
    # A run read once serves every set that draws it, and a grouped set
    # aggregates every point, so overviews serve only figures without one.
    any_grouped = any(document["grouping"]["keys"] for document in documents)
    overview = None if any_grouped else overview_samples(spec, samples)
    async with context(request).db.reading() as db:
        for document in documents:
            members = await runset_members(db, project, document)
            if allowed is not None:
                members = [run for run in members if run["id"] in allowed]
            grouped = bool(document["grouping"]["keys"])
            chosen = members[: GROUPED_RUNS if grouped else LINES_PER_RUNSET]
            unread = [run for run in chosen if run["id"] not in read]
            pks = await run_pks(db, project, [run["id"] for run in unread])
            every_run = await history.read_runs_series(
                db,
                list(pks.values()),
                keys,
                min_step,
                max_step,
                with_times=with_times,
                samples=overview,
            )
            for run in unread:
                read[run["id"]] = (run, every_run.get(pks[run["id"]], {}))
            # Grouped sets aggregate by step, so their runs keep every point in range.
            # NOTE: that is up to 100 runs at full resolution in memory at once.
            keep = None if grouped else samples
            lines = [run_line(*read[run["id"]], spec, keep) for run in chosen]
            sets.append(runset_figures.RunSetLines(document, lines, len(members)))
    figure = runset_figures.runset_figure(sets, spec)
    drawn_runs = {run_id for one in sets for run_id in one.drawn}
    document = {
        "figure": figure,
        "runs": {
            run_id: {
                "name": run["name"],
                "state": run["state"],
                "created_at": run["created_at"],
                "colour": figures.run_colour(run_id),
            }
            for run_id, (run, _) in read.items()
            if run_id in drawn_runs
        },
        "runsets": {
            one.runset["id"]: {
                "members": one.members,
                "drawn": one.drawn,
                "grouped": one.grouped,
            }
            for one in sets
        },
    }
    return Response(orjson.dumps(document), media_type="application/json")


def overview_samples(spec: figures.LineSpec, samples: int) -> int | None:
    """Return ``samples`` when a figure may read chunk overviews, else None.

    A metric on the x axis is looked up at each step of the drawn metric, so
    both must be read whole.
    """
    return samples if spec.x_key is None else None


def run_line(
    run: dict[str, Any], found: dict[str, Series], spec: figures.LineSpec, samples: int | None
) -> figures.RunLine:
    """Return a run's line for ``spec``, its main series downsampled to ``samples`` if given."""
    main = found.get(spec.key)
    return figures.RunLine(
        run,
        None if main is None else sampled(main, samples),
        None if spec.x_key is None else found.get(spec.x_key),
    )


async def runset_members(
    db: AsyncConnection, project: str, runset: dict[str, Any]
) -> list[dict[str, Any]]:
    """Return the runs the run set's filter selects, in the run set's sort order.

    NOTE: only the newest ``MAX_PAGE`` runs that the filter selects are sorted,
    so a sort over a larger set sees only those.
    """
    node = runsets.parse_stored_filter(runset["filter"])
    found = await runs.list_runs(db, project, MAX_PAGE, 0, node)
    sort = runset["sort"]
    stats: dict[str, dict[str, Any]] = {}
    sort_field = grouping.parse_field(sort["field"])
    if isinstance(sort_field, SummaryField) and sort_field.statistic is not None:
        pks = await run_pks(db, project, [run["id"] for run in found])
        for run in found:
            stats[run["id"]] = await runs.metric_stats(db, pks[run["id"]])
    return grouping.sort_runs(found, sort["field"], sort["direction"], stats)


routes = [
    Route("/api/v1/projects/{project}/keys", project_keys),
    Route("/api/v1/projects/{project}/series", bulk_series),
    Route("/api/v1/projects/{project}/figure", line_figure),
]
