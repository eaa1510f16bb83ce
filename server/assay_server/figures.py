"""The line-plot figure of one metric across runs, specified with plotly.

The workspace draws exactly this figure with plotly.js, and a later export can
render it with plotly, so both agree. Each run gets up to three traces,
identified by their ``uid``, ``ROLE-RUN_ID``. The separator is a hyphen because
plotly.js puts uids in CSS selectors, where a colon would break them:

- ``raw``: the logged values, faint, only when smoothing is on;
- ``line``: the smoothed values, or the logged ones without smoothing;
- ``marks``: one marker per value that a line cannot show (NaN, +Inf, -Inf,
  null, and zero or negative values on a log y axis), drawn at the previous
  drawable value, with a hover text that names the value.

Lines break (``None`` in ``y``) where such a value was logged, so a metric that
is mostly NaN does not look like a clean line.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import plotly.graph_objects as go

from assay import protocol
from assay_server import smoothing
from assay_server.batch import Float64Array, Int64Array, UInt8Array
from assay_server.history import Series

X_STEP = "step"
X_TIME = "time"
X_RELATIVE = "relative"
#: ``x=metric:KEY`` plots against the value of metric KEY logged at the same step.
X_METRIC_PREFIX = "metric:"

#: Line dash per run state, so that failed and crashed runs stand out in grey print too.
DASH = {"running": "solid", "finished": "solid", "failed": "dash", "crashed": "dot"}

#: Marker symbol of each kind of value that a line cannot show.
SYMBOLS = {
    "NaN": "x",
    "+Inf": "triangle-up",
    "-Inf": "triangle-down",
    "null": "circle-open",
    "nonpositive": "diamond-open",
}

RAW_OPACITY = 0.25
#: Lines with fewer drawable points than this also get a marker per point, so
#: that a run with a single point is visible at all.
MARKERS_BELOW = 30
LIGHTNESS = (35, 45, 55)


def run_colour(run_id: str) -> str:
    """Derive a run's colour from its id alone, so it is the same in every panel and session.

    The hue is the 32-bit FNV-1a hash of the id's UTF-8 bytes modulo 360, and
    one of three lightnesses comes from the hash's higher bits, so that close
    hues still differ. ``client/web/src/colours.ts`` computes the same.
    """
    digest = 0x811C9DC5
    for byte in run_id.encode():
        digest = ((digest ^ byte) * 0x01000193) & 0xFFFFFFFF
    return f"hsl({digest % 360}, 65%, {LIGHTNESS[(digest >> 16) % 3]}%)"


@dataclass(frozen=True)
class LineSpec:
    """The metric, x axis, smoothing and scales that a line-plot panel requests."""

    key: str
    x: str = X_STEP
    smoothing: str = smoothing.NONE
    parameter: float = 0.0
    log_x: bool = False
    log_y: bool = False

    @property
    def x_key(self) -> str | None:
        return self.x.removeprefix(X_METRIC_PREFIX) if self.x.startswith(X_METRIC_PREFIX) else None


@dataclass
class RunLine:
    """One run's data for a panel: its run document, its series and the x metric's."""

    run: dict[str, Any]
    series: Series | None
    x_series: Series | None = None


#: Label codes of the values a line cannot show, in the order of ``LABELS``.
DRAWABLE, NAN, POS_INF, NEG_INF, NULL, NONPOSITIVE = range(6)
LABELS = (None, "NaN", "+Inf", "-Inf", "null", "nonpositive")


@dataclass
class Points:
    """One run's points in plot order, before they are split into traces."""

    steps: Int64Array
    x: Float64Array
    payload: Float64Array
    kinds: UInt8Array
    labels: npt.NDArray[np.int8]  # DRAWABLE, or why the value cannot sit on the line

    def take(self, index: npt.NDArray[np.intp]) -> Points:
        return Points(
            self.steps[index],
            self.x[index],
            self.payload[index],
            self.kinds[index],
            self.labels[index],
        )

    def value(self, i: int) -> float | int | bool | None:
        return protocol.decode_value(float(self.payload[i]), int(self.kinds[i]))


def point_labels(payload: Float64Array, kinds: UInt8Array, log_y: bool) -> npt.NDArray[np.int8]:
    """Label every point: drawable, or the reason it cannot sit on the line."""
    labels = np.full(len(payload), DRAWABLE, dtype=np.int8)
    nulls = kinds == protocol.KIND_NULL
    if log_y:
        labels[~nulls & (payload <= 0)] = NONPOSITIVE
    labels[np.isnan(payload)] = NAN
    labels[payload == np.inf] = POS_INF
    labels[payload == -np.inf] = NEG_INF
    labels[nulls] = NULL
    return labels


def run_points(line: RunLine, spec: LineSpec) -> tuple[Points, int]:
    """Return the run's points with their x values, and how many had no drawable x."""
    series = line.series
    assert series is not None
    if spec.x == X_STEP:
        x = series.steps.astype(np.float64)
    elif spec.x == X_TIME:
        x = series.times * 1000  # plotly reads numbers on date axes as milliseconds
    elif spec.x == X_RELATIVE:
        x = series.times - float(line.run["created_at"])
    else:
        x = _metric_x(series, line.x_series)
    keep = np.isfinite(x)
    if spec.log_x:
        keep &= x > 0
    points = Points(
        series.steps,
        x,
        series.values,
        series.kinds,
        point_labels(series.values, series.kinds, spec.log_y),
    )
    return points.take(np.flatnonzero(keep)), int(len(x) - np.count_nonzero(keep))


def _metric_x(series: Series, x_series: Series | None) -> Float64Array:
    """Look up the x metric's value at each of the series' steps, NaN where it was not logged."""
    x = np.full(len(series.steps), np.nan)
    if x_series is None or not len(x_series.steps):
        return x
    positions = np.searchsorted(x_series.steps, series.steps)
    positions = np.minimum(positions, len(x_series.steps) - 1)
    found = x_series.steps[positions] == series.steps
    ordered = x_series.kinds[positions] != protocol.KIND_NULL
    x[found & ordered] = x_series.values[positions][found & ordered]
    return x


def sort_by_x(points: Points) -> Points:
    return points.take(np.lexsort((points.steps, points.x)))


def x_hover(spec: LineSpec) -> str:
    if spec.x == X_TIME:
        return "%{x|%Y-%m-%d %H:%M:%S}"
    if spec.x == X_RELATIVE:
        return "%{x:.3~f} s since start"
    if spec.x_key is not None:
        return f"{spec.x_key} %{{x}}"
    return ""


def mark_text(label: str, value: float | int | bool | None) -> str:
    if label == "nonpositive":
        return f"{value} (zero or negative: not drawable on a log y axis)"
    return f"{label}, drawn at the previous drawable value"


def trace_name(run: dict[str, Any]) -> str:
    name = str(run["name"])
    return name if run["state"] == "finished" else f"{name} ({run['state']})"


def with_gaps(values: Float64Array, drawable: npt.NDArray[np.bool_]) -> list[float | None]:
    """List ``values`` with None where a point is not drawable, as plotly.js breaks a line."""
    column = values.astype(object)
    column[~drawable] = None
    listed: list[float | None] = column.tolist()
    return listed


def run_traces(
    line: RunLine, spec: LineSpec, colour: str | None = None
) -> tuple[list[dict[str, Any]], int]:
    """Build the raw, line and marks traces of one run; also return its points without an x.

    The run's own colour (``run_colour``) is used unless ``colour`` is given.
    """
    points, hidden = run_points(line, spec)
    if spec.x_key is not None:
        points = sort_by_x(points)
    run = line.run
    run_id = str(run["id"])
    colour = colour or run_colour(run_id)
    name = trace_name(run)
    at_x = x_hover(spec)
    at_x = f"{at_x}<br>" if at_x else ""
    hover = f"<b>%{{fullData.name}}</b><br>step %{{customdata}}<br>{at_x}"

    drawable = points.labels == DRAWABLE
    raw_y = with_gaps(points.payload, drawable)
    common = {
        "x": points.x.tolist(),
        "customdata": points.steps.tolist(),
        "legendgroup": run_id,
        "name": name,
    }
    traces: list[dict[str, Any]] = []
    line_y = raw_y
    if spec.smoothing != smoothing.NONE:
        traces.append(
            {
                **common,
                "uid": f"raw-{run_id}",
                "y": raw_y,
                "mode": "lines",
                "opacity": RAW_OPACITY,
                "line": {"color": colour, "width": 1, "dash": DASH.get(run["state"], "solid")},
                "showlegend": False,
                "hovertemplate": hover + "value %{y}<extra></extra>",
            }
        )
        smoothed = np.zeros(len(points.x))
        smoothed[drawable] = smoothing.smooth(
            spec.smoothing, spec.parameter, points.x[drawable], points.payload[drawable]
        )
        line_y = with_gaps(smoothed, drawable)
    traces.append(
        {
            **common,
            "uid": f"line-{run_id}",
            "y": line_y,
            "mode": "lines+markers" if np.count_nonzero(drawable) < MARKERS_BELOW else "lines",
            "marker": {"size": 5, "color": colour},
            "line": {"color": colour, "width": 2, "dash": DASH.get(run["state"], "solid")},
            "hovertemplate": hover
            + ("smoothed " if spec.smoothing != smoothing.NONE else "value ")
            + "%{y}<extra></extra>",
        }
    )
    traces.append(marks_trace(points, drawable, spec, run_id, name, colour))
    return traces, hidden


def marks_trace(
    points: Points,
    drawable: npt.NDArray[np.bool_],
    spec: LineSpec,
    run_id: str,
    name: str,
    colour: str,
) -> dict[str, Any]:
    """Build one marker per undrawable value, at the previous drawable value (else the next)."""
    marked = np.flatnonzero(~drawable)
    # The position of the last drawable point at or before each point, -1 before the first.
    previous = np.maximum.accumulate(np.where(drawable, np.arange(len(drawable)), -1))
    first_drawable = np.flatnonzero(drawable)
    anchors = previous[marked]
    if len(first_drawable):
        anchors[anchors < 0] = first_drawable[0]
    fallback = 1.0 if spec.log_y else 0.0
    y = np.where(anchors >= 0, points.payload[np.maximum(anchors, 0)], fallback).tolist()
    labels = [LABELS[code] for code in points.labels[marked].tolist()]
    symbols = [SYMBOLS[label] for label in labels if label is not None]
    steps = points.steps[marked].tolist()
    texts: list[list[Any]] = [
        [
            mark_text(label, points.value(i) if label == "nonpositive" else None),
            step,
        ]
        for label, i, step in zip(labels, marked.tolist(), steps, strict=True)
        if label is not None
    ]
    return {
        "uid": f"marks-{run_id}",
        "x": points.x[marked].tolist(),
        "y": y,
        "customdata": texts,
        "mode": "markers",
        "name": name,
        "legendgroup": run_id,
        "showlegend": False,
        "marker": {
            "symbol": symbols,
            "size": 9,
            "color": colour,
            "line": {"width": 2, "color": colour},
        },
        "hovertemplate": "<b>%{fullData.name}</b><br>step %{customdata[1]}<br>"
        "%{customdata[0]}<extra></extra>",
    }


def x_axis_title(spec: LineSpec) -> str:
    if spec.x == X_TIME:
        return "wall time"
    if spec.x == X_RELATIVE:
        return "seconds since the run started"
    return spec.x_key or "step"


def line_figure(lines: list[RunLine], spec: LineSpec) -> dict[str, Any]:
    """Build the figure of ``spec.key`` for ``lines``, as the JSON-ready dict plotly.js takes."""
    traces: list[dict[str, Any]] = []
    hidden = 0
    for line in lines:
        if line.series is None or not len(line.series.steps):
            continue
        run_traces_, run_hidden = run_traces(line, spec)
        traces.extend(run_traces_)
        hidden += run_hidden
    return figure_document(traces, hidden, spec)


def figure_document(traces: list[dict[str, Any]], hidden: int, spec: LineSpec) -> dict[str, Any]:
    """Lay out ``traces``; ``hidden`` counts the points left out for want of a drawable x."""
    annotations = []
    if hidden:
        reason = "zero or negative x on a log x axis" if spec.log_x else "no finite x value"
        annotations.append(
            {
                "text": f"{hidden} points not drawn: {reason}",
                "xref": "paper",
                "yref": "paper",
                "x": 1,
                "y": 1.08,
                "showarrow": False,
                "xanchor": "right",
                "font": {"size": 11, "color": "#a33"},
            }
        )
    layout = go.Layout(
        title={"text": spec.key, "font": {"size": 14}},
        xaxis={
            "title": {"text": x_axis_title(spec)},
            "type": "date" if spec.x == X_TIME else ("log" if spec.log_x else "linear"),
        },
        yaxis={"type": "log" if spec.log_y else "linear"},
        margin={"l": 50, "r": 10, "t": 40, "b": 40},
        hovermode="closest",
        showlegend=True,
        legend={"orientation": "h", "y": -0.2},
        uirevision=spec.key,
        annotations=annotations,
    )
    # The traces skip go.Scatter: validating every point of 100 runs took a
    # third of the request. They use only attributes that go.Scatter accepts,
    # which the chart tests check by building go.Figure from the result.
    styled: dict[str, Any] = layout.to_plotly_json()
    styled["template"] = default_template()
    return {"data": [{"type": "scatter", **trace} for trace in traces], "layout": styled}


@functools.cache
def default_template() -> dict[str, Any]:
    """Return plotly's default template, which ``go.Figure`` would add to every layout."""
    template: dict[str, Any] = go.Figure().to_plotly_json()["layout"]["template"]
    return template
