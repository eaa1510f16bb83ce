"""Smoothing, line-plot figures, the bulk series endpoint and stored layouts."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgpack
import numpy as np
import plotly.graph_objects as go
import pytest

import assay
from assay_server import figures, smoothing
from assay_server.history import Series
from conftest import RunningServer

# Smoothing, with expected values worked out by hand.


def test_ema_debiases_first_points() -> None:
    # weight 0.5: last = 0.5, 1.25, 2.625; debiased by 1 - 0.5**n = 0.5, 0.75, 0.875.
    smoothed = smoothing.ema(np.array([1.0, 2.0, 4.0]), 0.5)

    assert smoothed.tolist() == pytest.approx([1.0, 1.25 / 0.75, 3.0])


def test_ema_weight_zero_is_identity() -> None:
    values = np.array([3.0, -1.0, 7.5])

    assert smoothing.ema(values, 0.0).tolist() == [3.0, -1.0, 7.5]


def test_ema_constant_stays_constant() -> None:
    assert smoothing.ema(np.full(5, 2.0), 0.9).tolist() == pytest.approx([2.0] * 5)


def test_ema_rejects_weight_one() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        smoothing.ema(np.array([1.0]), 1.0)


def test_running_average_cuts_window_at_ends() -> None:
    # half width 1: (1+2)/2, (1+2+6)/3, (2+6+3)/3, (6+3)/2
    smoothed = smoothing.running_average(np.array([1.0, 2.0, 6.0, 3.0]), 1)

    assert smoothed.tolist() == pytest.approx([1.5, 3.0, 11 / 3, 4.5])


def test_running_average_zero_width_is_identity() -> None:
    assert smoothing.running_average(np.array([1.0, 5.0]), 0).tolist() == [1.0, 5.0]


def test_gaussian_weights_neighbours_by_distance() -> None:
    # sigma 1 at x = 0, 1, 2: the middle point's neighbours weigh exp(-1/2) each.
    w = math.exp(-0.5)
    far = math.exp(-2.0)
    x = np.array([0.0, 1.0, 2.0])
    values = np.array([0.0, 3.0, 6.0])

    smoothed = smoothing.gaussian(x, values, 1.0)

    assert smoothed[1] == pytest.approx((w * 0 + 3 + w * 6) / (1 + 2 * w))
    assert smoothed[0] == pytest.approx((0 + w * 3 + far * 6) / (1 + w + far))


def test_gaussian_skips_points_beyond_cutoff() -> None:
    x = np.array([0.0, 10.0])

    smoothed = smoothing.gaussian(x, np.array([1.0, 100.0]), 1.0)

    assert smoothed.tolist() == [1.0, 100.0]


def test_gaussian_uses_x_spacing() -> None:
    # The far point at x = 2 gets weight exp(-2) in x units, not exp(-1/2) as a neighbour.
    smoothed = smoothing.gaussian(np.array([0.0, 2.0]), np.array([0.0, 1.0]), 1.0)

    far = math.exp(-2.0)
    assert smoothed[0] == pytest.approx(far / (1 + far))


def test_unknown_smoothing_method_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown smoothing method"):
        smoothing.check_parameter("median", 1.0)


# Figures built from series, without a server.


def series(steps: list[int], values: list[float | None]) -> Series:
    kinds = np.array([1 if v is None else 0 for v in values], np.uint8)
    payload = np.array([0.0 if v is None else v for v in values], np.float64)
    times = 1000.0 + np.array(steps, np.float64)
    return Series(np.array(steps, np.int64), times, payload, kinds)


def run_doc(run_id: str = "abc", state: str = "finished") -> dict[str, Any]:
    return {"id": run_id, "name": f"run {run_id}", "state": state, "created_at": 1000.0}


def traces_by_uid(figure: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {trace["uid"]: trace for trace in figure["data"]}


def test_run_colour_is_stable() -> None:
    assert figures.run_colour("abc") == figures.run_colour("abc")
    assert figures.run_colour("abc") != figures.run_colour("abd")
    assert figures.run_colour("abc").startswith("hsl(")


def test_nonfinite_values_are_marked() -> None:
    line = figures.RunLine(
        run_doc(), series([0, 1, 2, 3, 4], [1.0, math.nan, math.inf, None, 2.0])
    )

    figure = figures.line_figure([line], figures.LineSpec("loss"))
    traces = traces_by_uid(figure)
    marks = traces["marks-abc"]

    assert traces["line-abc"]["y"] == [1.0, None, None, None, 2.0]
    assert marks["x"] == [1.0, 2.0, 3.0]
    assert marks["y"] == [1.0, 1.0, 1.0]
    assert marks["marker"]["symbol"] == ["x", "triangle-up", "circle-open"]
    assert marks["customdata"][0][0].startswith("NaN")
    assert marks["customdata"][2] == ["null, drawn at the previous drawable value", 3]


def test_leading_nan_is_marked_at_first_value() -> None:
    line = figures.RunLine(run_doc(), series([0, 1], [-math.inf, 5.0]))

    marks = traces_by_uid(figures.line_figure([line], figures.LineSpec("loss")))["marks-abc"]

    assert marks["y"] == [5.0]
    assert marks["marker"]["symbol"] == ["triangle-down"]


def test_log_y_marks_nonpositive_values() -> None:
    line = figures.RunLine(run_doc(), series([0, 1, 2], [1.0, 0.0, -2.0]))

    figure = figures.line_figure([line], figures.LineSpec("loss", log_y=True))
    traces = traces_by_uid(figure)

    assert figure["layout"]["yaxis"]["type"] == "log"
    assert traces["line-abc"]["y"] == [1.0, None, None]
    assert traces["marks-abc"]["marker"]["symbol"] == ["diamond-open", "diamond-open"]
    assert "zero or negative" in traces["marks-abc"]["customdata"][1][0]


def test_log_x_reports_hidden_step_zero() -> None:
    line = figures.RunLine(run_doc(), series([0, 1, 10], [1.0, 2.0, 3.0]))

    figure = figures.line_figure([line], figures.LineSpec("loss", log_x=True))

    assert traces_by_uid(figure)["line-abc"]["x"] == [1.0, 10.0]
    assert figure["layout"]["annotations"][0]["text"].startswith("1 points not drawn")


def test_smoothing_keeps_faint_raw_line() -> None:
    line = figures.RunLine(run_doc(), series([0, 1, 2], [1.0, math.nan, 3.0]))

    spec = figures.LineSpec("loss", smoothing="ema", parameter=0.5)
    traces = traces_by_uid(figures.line_figure([line], spec))

    assert traces["raw-abc"]["y"] == [1.0, None, 3.0]
    assert traces["raw-abc"]["opacity"] < 1
    # EMA over the drawable 1.0, 3.0 only: (0.25 + 1.5) / 0.75.
    assert traces["line-abc"]["y"] == pytest.approx([1.0, None, 1.75 / 0.75])


def test_failed_and_crashed_runs_are_dashed() -> None:
    lines = [
        figures.RunLine(run_doc("a", "failed"), series([0], [1.0])),
        figures.RunLine(run_doc("b", "crashed"), series([0], [1.0])),
        figures.RunLine(run_doc("c", "running"), series([0], [1.0])),
    ]

    traces = traces_by_uid(figures.line_figure(lines, figures.LineSpec("loss")))

    assert traces["line-a"]["line"]["dash"] == "dash"
    assert traces["line-b"]["line"]["dash"] == "dot"
    assert traces["line-c"]["line"]["dash"] == "solid"
    assert traces["line-a"]["name"] == "run a (failed)"
    assert traces["line-c"]["name"] == "run c (running)"


def test_relative_time_counts_from_start() -> None:
    line = figures.RunLine(run_doc(), series([0, 5], [1.0, 2.0]))

    figure = figures.line_figure([line], figures.LineSpec("loss", x="relative"))

    assert traces_by_uid(figure)["line-abc"]["x"] == [0.0, 5.0]


def test_metric_x_joins_on_step() -> None:
    line = figures.RunLine(
        run_doc(), series([0, 1, 2], [1.0, 2.0, 3.0]), series([0, 2], [0.5, 0.1])
    )

    figure = figures.line_figure([line], figures.LineSpec("loss", x="metric:lr"))
    trace = traces_by_uid(figure)["line-abc"]

    assert trace["x"] == [0.1, 0.5]
    assert trace["y"] == [3.0, 1.0]
    assert trace["customdata"] == [2, 0]


FIGURE_SPECS = [
    figures.LineSpec("loss"),
    figures.LineSpec("loss", smoothing="ema", parameter=0.5),
    figures.LineSpec("loss", smoothing="gaussian", parameter=1.0, log_y=True),
    figures.LineSpec("loss", x="time", log_x=True),
    figures.LineSpec("loss", x="relative"),
    figures.LineSpec("loss", x="metric:lr"),
]


@pytest.mark.parametrize("spec", FIGURE_SPECS, ids=lambda spec: f"{spec.x}-{spec.smoothing}")
def test_figure_passes_plotly_validation(spec: figures.LineSpec) -> None:
    # The traces are built as plain dicts; plotly's own classes must accept them as they are.
    lines = [
        figures.RunLine(
            run_doc("a", "running"),
            series([0, 1, 2, 3, 4], [1.0, math.nan, math.inf, None, -2.0]),
            series([0, 1, 2, 3, 4], [0.5, 0.4, 0.3, 0.2, 0.1]),
        ),
        figures.RunLine(run_doc("b", "crashed"), series([0, 1], [2.0, 3.0])),
    ]
    document = figures.line_figure(lines, spec)

    validated = go.Figure(document).to_plotly_json()

    assert validated["data"] == document["data"]
    assert validated["layout"] == document["layout"]


# Endpoints on a real server.


@pytest.fixture
def logged(server: RunningServer, tmp_path: Path) -> Iterator[tuple[RunningServer, list[str]]]:
    ids = []
    for index in range(2):
        with assay.init(
            "charts", server=server.url, api_key=server.api_key, spool_dir=tmp_path
        ) as run:
            for step in range(100):
                run.log({"loss": math.nan if step == 40 else float(step + index), "acc": 0.5})
            ids.append(run.id)
    yield server, ids


def test_series_returns_runs_and_keys(logged: tuple[RunningServer, list[str]]) -> None:
    server, ids = logged
    with server.client() as client:
        body = client.get(
            "/api/v1/projects/charts/series",
            params={"keys": ["loss", "acc"], "runs": ids},
            headers={"Accept": "application/msgpack"},
        )
    series_by_run = unpack(body)["series"]

    assert set(series_by_run) == set(ids)
    assert set(series_by_run[ids[0]]) == {"loss", "acc"}
    assert series_by_run[ids[1]]["loss"]["steps"] == list(range(100))
    assert math.isnan(series_by_run[ids[0]]["loss"]["values"][40])


def unpack(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return msgpack.unpackb(response.content)  # type: ignore[no-any-return]


def test_series_downsampling_keeps_nan(logged: tuple[RunningServer, list[str]]) -> None:
    server, ids = logged
    with server.client() as client:
        body = client.get(
            "/api/v1/projects/charts/series",
            params={"keys": "loss", "runs": ids[0], "samples": 10},
        ).json()
    loss = body["series"][ids[0]]["loss"]

    assert len(loss["steps"]) <= 10
    assert 40 in loss["steps"]
    assert {"$float": "NaN"} in loss["values"]
    assert loss["steps"][-1] == 99


def test_series_step_range_is_full_resolution(logged: tuple[RunningServer, list[str]]) -> None:
    server, ids = logged
    with server.client() as client:
        body = client.get(
            "/api/v1/projects/charts/series",
            params={"keys": "loss", "runs": ids[0], "samples": 10, "min_step": 10, "max_step": 14},
        ).json()

    assert body["series"][ids[0]]["loss"]["steps"] == [10, 11, 12, 13, 14]


def test_series_rejects_reversed_range(logged: tuple[RunningServer, list[str]]) -> None:
    server, _ = logged
    with server.client() as client:
        response = client.get(
            "/api/v1/projects/charts/series", params={"keys": "loss", "min_step": 5, "max_step": 1}
        )

    assert response.status_code == 400
    assert "greater than max_step" in response.json()["error"]["message"]


def test_series_unknown_run_is_not_found(logged: tuple[RunningServer, list[str]]) -> None:
    server, _ = logged
    with server.client() as client:
        response = client.get(
            "/api/v1/projects/charts/series", params={"keys": "loss", "runs": "nope"}
        )

    assert response.status_code == 404


def test_keys_lists_project_metrics(logged: tuple[RunningServer, list[str]]) -> None:
    server, _ = logged
    with server.client() as client:
        assert client.get("/api/v1/projects/charts/keys").json() == {"keys": ["acc", "loss"]}


def test_figure_endpoint_returns_plotly_json(logged: tuple[RunningServer, list[str]]) -> None:
    server, ids = logged
    with server.client() as client:
        response = client.get(
            "/api/v1/projects/charts/figure",
            params={"key": "loss", "smoothing": "gaussian", "parameter": 2, "runs": ids},
        )
    constants: list[str] = []
    body = json.loads(response.text, parse_constant=constants.append)
    uids = [trace["uid"] for trace in body["figure"]["data"]]

    assert response.status_code == 200
    assert constants == []
    assert uids == [f"{role}-{run_id}" for run_id in ids for role in ("raw", "line", "marks")]
    assert body["runs"][ids[0]]["colour"] == figures.run_colour(ids[0])


def test_figure_endpoint_x_axes(logged: tuple[RunningServer, list[str]]) -> None:
    server, ids = logged
    lines = {}
    with server.client() as client:
        for x in ("step", "time", "relative", "metric:acc"):
            response = client.get(
                "/api/v1/projects/charts/figure", params={"key": "loss", "x": x, "runs": ids}
            )
            assert response.status_code == 200, response.text
            lines[x] = traces_by_uid(response.json()["figure"])[f"line-{ids[1]}"]["x"]

    assert lines["step"] == [float(step) for step in range(100)]
    # Wall time is in milliseconds since the epoch, as plotly.js reads dates.
    assert all(x > 1e12 for x in lines["time"])
    assert lines["time"] == sorted(lines["time"])
    assert all(0 <= x < 600 for x in lines["relative"])
    assert lines["metric:acc"] == [0.5] * 100


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "'key' is required"),
        ({"key": "loss", "x": "sideways"}, "'x' must be"),
        ({"key": "loss", "smoothing": "median"}, "'smoothing' must be"),
        ({"key": "loss", "smoothing": "ema", "parameter": "1.5"}, "[0, 1)"),
        ({"key": "loss", "parameter": "nan"}, "must be finite"),
        ({"key": "loss", "log_y": "maybe"}, "'log_y' must be 1, true, 0 or false, got 'maybe'"),
        ({"key": "loss", "log_x": "yes"}, "'log_x' must be 1, true, 0 or false"),
    ],
)
def test_figure_rejects_bad_parameters(
    logged: tuple[RunningServer, list[str]], params: dict[str, str], message: str
) -> None:
    server, _ = logged
    with server.client() as client:
        response = client.get("/api/v1/projects/charts/figure", params=params)

    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


LAYOUT = {
    "auto": False,
    "columns": ["config.lr"],
    "panels": [{"id": "p1", "type": "line", "x": 0, "y": 0, "w": 6, "h": 4, "options": {}}],
}


def test_layout_round_trips_per_user(logged: tuple[RunningServer, list[str]]) -> None:
    server, _ = logged
    with server.client() as client:
        empty = client.get("/api/v1/projects/charts/layout").json()
        stored = client.put("/api/v1/projects/charts/layout", json=LAYOUT)
        replaced = client.put("/api/v1/projects/charts/layout", json={**LAYOUT, "columns": []})
        read = client.get("/api/v1/projects/charts/layout").json()

    assert empty == {"layout": None}
    assert stored.status_code == 200
    assert replaced.status_code == 200
    assert read["layout"]["columns"] == []
    assert read["layout"]["panels"] == LAYOUT["panels"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"panels": "all"}, "'panels' must be a list"),
        ({"panels": [{**LAYOUT["panels"][0], "type": "pie"}]}, "'type' must be one of"),  # type: ignore[dict-item]
        ({"panels": [{**LAYOUT["panels"][0], "x": 8}]}, "reaches past"),  # type: ignore[dict-item]
        ({"panels": [LAYOUT["panels"][0]] * 2}, "unique string 'id'"),  # type: ignore[index]
    ],
)
def test_invalid_layout_is_rejected(
    logged: tuple[RunningServer, list[str]], change: dict[str, Any], message: str
) -> None:
    server, _ = logged
    with server.client() as client:
        response = client.put("/api/v1/projects/charts/layout", json={**LAYOUT, **change})

    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


def test_layout_not_json_is_rejected(logged: tuple[RunningServer, list[str]]) -> None:
    server, _ = logged
    with server.client() as client:
        response = client.put("/api/v1/projects/charts/layout", content=b"{panels")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
    assert response.json()["error"]["message"] == "layout must be valid JSON"


def test_layout_needs_authentication(logged: tuple[RunningServer, list[str]]) -> None:
    server, _ = logged

    response = httpx.put(server.url + "/api/v1/projects/charts/layout", json=LAYOUT)

    assert response.status_code == 401
