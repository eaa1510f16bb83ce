"""Line-plot figures over run sets: per-run lines in the set's colour, and grouped lines."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import assay
from assay_server.figures import LineSpec, RunLine
from assay_server.history import Series
from assay_server.runset_figures import RunSetLines, runset_figure, shade
from conftest import RunningServer

NAN = math.nan


def series(steps: list[int], values: list[float | None]) -> Series:
    kinds = np.array([1 if v is None else 0 for v in values], np.uint8)
    payload = np.array([0.0 if v is None else v for v in values], np.float64)
    times = 1000.0 + np.array(steps, np.float64)
    return Series(np.array(steps, np.int64), times, payload, kinds)


def line(run_id: str, values: list[float | None], **config: Any) -> RunLine:
    run = {
        "id": run_id,
        "name": run_id,
        "state": "finished",
        "created_at": 1000.0,
        "config": config,
        "summary": {},
    }
    return RunLine(run, series(list(range(len(values))), values))


def runset(
    runset_id: str, keys: list[str] | None = None, band: str = "minmax", colour: str = "#d62728"
) -> dict[str, Any]:
    return {
        "id": runset_id,
        "name": f"set {runset_id}",
        "filter": "",
        "grouping": {"keys": keys or [], "aggregate": "mean", "band": band},
        "sort": {"field": "created_at", "direction": "desc"},
        "colour": colour,
        "active": True,
    }


def traces_by_uid(figure: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {trace["uid"]: trace for trace in figure["data"]}


def test_ungrouped_set_draws_runs_in_its_colour() -> None:
    lines = [line("a", [1.0, 2.0]), line("b", [3.0, 4.0])]

    figure = runset_figure([RunSetLines(runset("s1"), lines)], LineSpec("loss"))
    traces = traces_by_uid(figure)

    assert traces["line-a"]["line"]["color"] == "#d62728"
    assert traces["line-b"]["line"]["color"] == "#d62728"
    assert list(traces["line-b"]["y"]) == [3.0, 4.0]


def test_run_in_two_sets_is_drawn_once() -> None:
    first = RunSetLines(runset("s1", colour="#111111"), [line("a", [1.0])])
    second = RunSetLines(runset("s2", colour="#222222"), [line("a", [1.0]), line("b", [2.0])])

    figure = runset_figure([first, second], LineSpec("loss"))
    uids = [trace["uid"] for trace in figure["data"]]

    assert uids.count("line-a") == 1
    assert traces_by_uid(figure)["line-a"]["line"]["color"] == "#111111"
    assert first.drawn == ["a"]
    assert second.drawn == ["b"]


def test_grouped_set_draws_line_and_band() -> None:
    lines = [
        line("a", [1.0, 2.0, NAN], lr=0.1),
        line("b", [3.0, 6.0, math.inf], lr=0.1),
        line("c", [10.0, 10.0, 10.0], lr=1.0),
    ]
    one = RunSetLines(runset("s1", ["config.lr"]), lines)

    figure = runset_figure([one], LineSpec("loss"))
    traces = traces_by_uid(figure)

    low = traces["group-s1.0"]
    assert list(low["y"]) == [2.0, 4.0, None]
    assert low["name"] == "set s1: config.lr=0.1 (2 runs)"
    assert [list(row) for row in low["customdata"]] == [[0, 2, 0], [1, 2, 0], [2, 0, 2]]
    assert list(traces["bandlow-s1.0"]["y"]) == [1.0, 2.0, None]
    assert list(traces["band-s1.0"]["y"]) == [3.0, 6.0, None]
    assert traces["band-s1.0"]["fill"] == "tonexty"
    assert list(traces["group-s1.1"]["y"]) == [10.0, 10.0, 10.0]
    assert sorted(one.drawn) == ["a", "b", "c"]


def test_step_with_no_finite_value_is_marked() -> None:
    lines = [line("a", [1.0, 2.0, NAN], lr=0.1), line("b", [3.0, 6.0, None], lr=0.1)]

    figure = runset_figure([RunSetLines(runset("s1", ["config.lr"]), lines)], LineSpec("loss"))
    marks = traces_by_uid(figure)["groupmarks-s1.0"]

    assert list(marks["x"]) == [2.0]
    assert list(marks["y"]) == [4.0]
    assert marks["customdata"][0][0] == "no finite value: 2 NaN, Inf or null"


def test_band_none_draws_only_line() -> None:
    lines = [line("a", [1.0], lr=1), line("b", [3.0], lr=1)]

    figure = runset_figure(
        [RunSetLines(runset("s1", ["config.lr"], band="none"), lines)], LineSpec("loss")
    )
    uids = sorted(trace["uid"] for trace in figure["data"])

    assert uids == ["group-s1.0", "groupmarks-s1.0"]


def test_groups_get_shades_of_set_colour() -> None:
    assert shade("#d62728", 0, 3) == "#d62728"
    # Half way to white: 0xd6 + (255 - 0xd6) / 2 = 234.5, rounded to 234 = 0xea.
    assert shade("#d62728", 2, 3) == "#ea9394"
    assert shade("#000000", 1, 3) == "#404040"


def test_log_y_drops_nonpositive_aggregate() -> None:
    lines = [line("a", [-1.0, 1.0], lr=1), line("b", [-3.0, 3.0], lr=1)]

    figure = runset_figure(
        [RunSetLines(runset("s1", ["config.lr"]), lines)], LineSpec("loss", log_y=True)
    )

    assert list(traces_by_uid(figure)["group-s1.0"]["y"]) == [None, 2.0]


# The /figure endpoint with stored run sets, on both databases.

PROJECT = "runset-figures"


@pytest.fixture
def sweep(server: RunningServer, tmp_path: Path) -> Iterator[httpx.Client]:
    """Log four runs: lr 0.1 and 1.0, two seeds each; the lr=1.0 seed-1 run ends in NaN."""
    for lr in (0.1, 1.0):
        for seed in (0, 1):
            with assay.init(
                PROJECT,
                name=f"lr{lr}-s{seed}",
                config={"lr": lr, "seed": seed},
                server=server.url,
                api_key=server.api_key,
                spool_dir=tmp_path,
            ) as run:
                for step in range(3):
                    diverged = lr == 1.0 and seed == 1 and step == 2
                    run.log({"loss": math.nan if diverged else lr * (step + 1) + seed})
    with server.client() as client:
        yield client


def create(client: httpx.Client, **fields: Any) -> dict[str, Any]:
    response = client.post(f"/api/v1/projects/{PROJECT}/runsets", json=fields)
    assert response.status_code == 201, response.text
    return dict(response.json())


def figure(client: httpx.Client, runset_ids: list[str]) -> dict[str, Any]:
    response = client.get(
        f"/api/v1/projects/{PROJECT}/figure", params={"key": "loss", "runsets": runset_ids}
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_figure_groups_stored_runset(sweep: httpx.Client) -> None:
    grouped = create(
        sweep,
        name="by lr",
        grouping={"keys": ["config.lr"], "aggregate": "mean", "band": "minmax"},
    )

    body = figure(sweep, [grouped["id"]])
    traces = traces_by_uid(body["figure"])

    # lr=0.1: seeds give 0.1·(step+1) and 0.1·(step+1) + 1, so the mean is that + 0.5.
    assert traces[f"group-{grouped['id']}.0"]["y"] == pytest.approx([0.6, 0.7, 0.8])
    # lr=1.0: steps 0 and 1 average (1, 2) and (2, 3); step 2 keeps only 3.0, NaN left out.
    assert traces[f"group-{grouped['id']}.1"]["y"] == pytest.approx([1.5, 2.5, 3.0])
    assert traces[f"group-{grouped['id']}.1"]["customdata"][2] == [2, 1, 1]
    assert body["runsets"][grouped["id"]]["members"] == 4
    assert body["runsets"][grouped["id"]]["grouped"] is True


def test_figure_filters_and_sorts_runs(sweep: httpx.Client) -> None:
    chosen = create(
        sweep,
        name="high lr",
        filter="config.lr >= 1",
        sort={"field": "config.seed", "direction": "desc"},
        colour="#2ca02c",
    )

    body = figure(sweep, [chosen["id"]])
    lines = [trace for trace in body["figure"]["data"] if trace["uid"].startswith("line-")]

    assert [trace["name"] for trace in lines] == ["lr1.0-s1", "lr1.0-s0"]
    assert {trace["line"]["color"] for trace in lines} == {"#2ca02c"}
    assert body["runsets"][chosen["id"]]["members"] == 2
    assert len(body["runs"]) == 2


def test_figure_unknown_runset_is_404(sweep: httpx.Client) -> None:
    response = sweep.get(
        f"/api/v1/projects/{PROJECT}/figure", params={"key": "loss", "runsets": "nope"}
    )

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "runset_not_found"


def test_grouped_set_keeps_full_resolution(
    server: RunningServer, project_runs: httpx.Client
) -> None:
    runs_set = create(project_runs, name="each run")
    grouped = create(
        project_runs,
        name="by seed",
        grouping={"keys": ["config.seed"], "aggregate": "mean", "band": "none"},
    )

    response = project_runs.get(
        f"/api/v1/projects/{PROJECT}/figure",
        params={"key": "loss", "runsets": [runs_set["id"], grouped["id"]], "samples": 8},
    )
    traces = traces_by_uid(response.json()["figure"])

    assert response.status_code == 200
    assert len(traces[f"group-{grouped['id']}.0"]["x"]) == 100
    assert len(traces["line-long"]["x"]) < 100


@pytest.fixture
def project_runs(server: RunningServer, tmp_path: Path) -> Iterator[httpx.Client]:
    """One run of 100 steps, which a figure of 8 samples per run must downsample."""
    with assay.init(
        PROJECT,
        id="long",
        config={"seed": 0},
        server=server.url,
        api_key=server.api_key,
        spool_dir=tmp_path,
    ) as run:
        for step in range(100):
            run.log({"loss": float(step % 7)})
    with server.client() as client:
        yield client
