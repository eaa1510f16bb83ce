"""The line-plot figure of one metric over run sets, grouped where a set has grouping keys.

An ungrouped run set draws each of its runs with the traces of ``figures.py``,
in the run set's colour; a run in several such sets is drawn once, under the
first. A grouped run set draws, per group, one aggregated line (uid
``group-RUNSET_ID.N``) and, unless the band is ``none``, a band between two
traces (``bandlow-…`` and ``band-…``, filled between them). Steps where no run
of the group has a finite value get a marker (``groupmarks-…``) so that they
are not dropped silently. ``grouping.py`` holds the rules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from assay import protocol
from assay_server import figures, grouping, smoothing
from assay_server.figures import LineSpec, RunLine

BAND_OPACITY = 0.18


@dataclass
class RunSetLines:
    """A run set's stored document and the lines of its runs, in the set's sort order."""

    runset: dict[str, Any]
    lines: list[RunLine]
    #: Members matched by the filter, before any were cut to fit the figure.
    members: int = 0
    drawn: list[str] = field(default_factory=list)

    @property
    def grouped(self) -> bool:
        return bool(self.runset["grouping"]["keys"])


def shade(colour: str, index: int, count: int) -> str:
    """Return ``colour`` (``#rrggbb``) for group 0, mixed ever more with white for later groups.

    The last of ``count`` groups is mixed half and half, so it stays visible.
    """
    if count <= 1 or index == 0:
        return colour
    mix = 0.5 * index / (count - 1)
    channels = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    mixed = [round(channel + (255 - channel) * mix) for channel in channels]
    return "#" + "".join(f"{channel:02x}" for channel in mixed)


def rgba(colour: str, alpha: float) -> str:
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red}, {green}, {blue}, {alpha})"


def gaps(values: np.ndarray) -> list[float | None]:
    """Return the values as a list with None where they are NaN, which plotly draws as a gap."""
    return [None if math.isnan(value) else float(value) for value in values.tolist()]


def group_series(lines: list[RunLine], spec: LineSpec, runset: dict[str, Any]) -> tuple[Any, int]:
    """Aggregate the lines' points; also return how many points had no drawable x."""
    steps, x, values = [], [], []
    hidden = 0
    for line in lines:
        if line.series is None or not len(line.series.steps):
            continue
        points, run_hidden = figures.run_points(line, spec)
        hidden += run_hidden
        steps.append(points.steps)
        x.append(points.x)
        # A logged null is the payload 0.0 with the null kind; it aggregates as NaN does.
        values.append(np.where(points.kinds == protocol.KIND_NULL, np.nan, points.payload))
    grouping_ = runset["grouping"]
    series = grouping.aggregate(steps, x, values, grouping_["aggregate"], grouping_["band"])
    if spec.x_key is not None:
        order = np.argsort(series.x, kind="stable")
        for name in ("steps", "x", "centre", "lower", "upper", "counts", "left_out"):
            setattr(series, name, getattr(series, name)[order])
    if spec.log_y:
        for name in ("centre", "lower", "upper"):
            column = getattr(series, name)
            column[column <= 0] = math.nan
    if spec.smoothing != smoothing.NONE:
        for name in ("centre", "lower", "upper"):
            column = getattr(series, name)
            drawable = ~np.isnan(column)
            column[drawable] = smoothing.smooth(
                spec.smoothing, spec.parameter, series.x[drawable], column[drawable]
            )
    return series, hidden


def group_traces(
    runset: dict[str, Any],
    index: int,
    group: grouping.Group,
    lines: list[RunLine],
    colour: str,
    spec: LineSpec,
) -> tuple[list[dict[str, Any]], int]:
    """Build the band, line and marks traces of one group of a run set."""
    series, hidden = group_series(lines, spec, runset)
    method = runset["grouping"]["aggregate"]
    uid = f"{runset['id']}.{index}"
    name = f"{runset['name']}: {group.label} ({len(group.runs)} runs)"
    x = series.x.tolist()
    custom = [
        [int(step), int(count), int(left)]
        for step, count, left in zip(series.steps, series.counts, series.left_out, strict=True)
    ]
    hover = (
        "<b>%{fullData.name}</b><br>step %{customdata[0]}<br>"
        + method
        + " %{y}<br>%{customdata[1]} finite values, %{customdata[2]} NaN, Inf or null "
        "left out<extra></extra>"
    )
    traces: list[dict[str, Any]] = []
    if runset["grouping"]["band"] != "none":
        band = {
            "x": x,
            "mode": "lines",
            "showlegend": False,
            "legendgroup": uid,
            "hoverinfo": "skip",
        }
        traces.append(
            {**band, "uid": f"bandlow-{uid}", "y": gaps(series.lower), "line": {"width": 0}}
        )
        traces.append(
            {
                **band,
                "uid": f"band-{uid}",
                "y": gaps(series.upper),
                "line": {"width": 0},
                "fill": "tonexty",
                "fillcolor": rgba(colour, BAND_OPACITY),
            }
        )
    traces.append(
        {
            "uid": f"group-{uid}",
            "x": x,
            "y": gaps(series.centre),
            "customdata": custom,
            "name": name,
            "legendgroup": uid,
            "mode": "lines+markers" if len(x) < figures.MARKERS_BELOW else "lines",
            "marker": {"size": 5, "color": colour},
            "line": {"color": colour, "width": 2.5},
            "hovertemplate": hover,
        }
    )
    traces.append(empty_step_marks(series, uid, name, colour, spec))
    return traces, hidden


def empty_step_marks(
    series: grouping.GroupSeries, uid: str, name: str, colour: str, spec: LineSpec
) -> dict[str, Any]:
    """Build a marker, at the previous centre, per step with only NaN, Inf or null values."""
    x: list[float] = []
    y: list[float] = []
    texts: list[list[Any]] = []
    previous: float | None = None
    for index in range(len(series.steps)):
        centre = float(series.centre[index])
        if not math.isnan(centre):
            previous = centre
            continue
        if series.left_out[index] == 0:
            continue
        x.append(float(series.x[index]))
        if previous is not None:
            y.append(previous)
        else:
            y.append(1.0 if spec.log_y else 0.0)
        texts.append(
            [
                f"no finite value: {int(series.left_out[index])} NaN, Inf or null",
                int(series.steps[index]),
            ]
        )
    return {
        "uid": f"groupmarks-{uid}",
        "x": x,
        "y": y,
        "customdata": texts,
        "mode": "markers",
        "name": name,
        "legendgroup": uid,
        "showlegend": False,
        "marker": {"symbol": "x", "size": 9, "color": colour},
        "hovertemplate": "<b>%{fullData.name}</b><br>step %{customdata[1]}<br>"
        "%{customdata[0]}<extra></extra>",
    }


def runset_figure(sets: list[RunSetLines], spec: LineSpec) -> dict[str, Any]:
    """Build the figure of ``spec.key`` over ``sets`` in order, filling each set's ``drawn``."""
    traces: list[dict[str, Any]] = []
    hidden = 0
    drawn: set[str] = set()
    for one in sets:
        colour = one.runset["colour"]
        if not one.grouped:
            for line in one.lines:
                run_id = str(line.run["id"])
                if run_id in drawn or line.series is None or not len(line.series.steps):
                    continue
                drawn.add(run_id)
                one.drawn.append(run_id)
                run_traces, run_hidden = figures.run_traces(line, spec, colour)
                traces.extend(run_traces)
                hidden += run_hidden
            continue
        by_id = {str(line.run["id"]): line for line in one.lines}
        groups = grouping.group_runs(
            [line.run for line in one.lines], one.runset["grouping"]["keys"]
        )
        for index, group in enumerate(groups):
            group_lines = [by_id[str(run["id"])] for run in group.runs]
            one.drawn.extend(str(run["id"]) for run in group.runs)
            built, group_hidden = group_traces(
                one.runset, index, group, group_lines, shade(colour, index, len(groups)), spec
            )
            traces.extend(built)
            hidden += group_hidden
    return figures.figure_document(traces, hidden, spec)
