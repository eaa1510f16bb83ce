"""Line figures of a report's panel grid: its run sets, grouped as the workspace groups them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pycrdt import Array, Map

import assay
from conftest import RunningServer
from reports.support import PROJECT, YClient, create_report, report_content, wait_for

BY_LR = {"keys": ["config.lr"], "aggregate": "mean", "band": "minmax"}


def run_set(runset_id: str, grouping: Any, **changes: Any) -> Map[Any]:
    fields = {
        "id": runset_id,
        "name": runset_id,
        "filter": "",
        "grouping": grouping,
        "sort": None,
        "colour": "#1f77b4",
        "active": True,
        "frozen": False,
    }
    fields.update(changes)
    return Map(fields)


def grid(*run_sets: Map[Any]) -> Map[Any]:
    panel = Map(
        {"id": "p1", "type": "line", "x": 0, "y": 0, "w": 6, "h": 4, "options": {"key": "loss"}}
    )
    return Map(
        {
            "id": "g1",
            "type": "panel_grid",
            "run_sets": Array(list(run_sets)),
            "panels": Array([panel]),
        }
    )


@pytest.fixture
def sweep(server: RunningServer, tmp_path: Path) -> dict[str, str]:
    """Log four runs, lr 0.1 and 1.0 with two seeds each; return their ids by name."""
    ids = {}
    for lr in (0.1, 1.0):
        for seed in (0, 1):
            name = f"lr{lr}-s{seed}"
            with assay.init(
                PROJECT,
                name=name,
                config={"lr": lr, "seed": seed},
                server=server.url,
                api_key=server.api_key,
                spool_dir=tmp_path,
            ) as run:
                for step in range(3):
                    run.log({"loss": lr * (step + 1) + seed})
            ids[name] = run.id
    return ids


@pytest.fixture
def report(server: RunningServer, sweep: dict[str, str]) -> Iterator[tuple[str, YClient]]:
    report_id = create_report(server)["id"]
    editor = YClient(server, report_id)
    editor.sync()
    yield report_id, editor
    editor.close()


def add(server: RunningServer, report_id: str, editor: YClient, block: Map[Any]) -> None:
    editor.edit(lambda doc: doc.get("blocks", type=Array).append(block))
    wait_for(lambda: report_content(server, report_id)["blocks"], what="the grid to be stored")


def figure(client: httpx.Client, **params: Any) -> httpx.Response:
    return client.get(f"/api/v1/projects/{PROJECT}/figure", params={"key": "loss", **params})


def traces_by_uid(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {trace["uid"]: trace for trace in body["figure"]["data"]}


@pytest.mark.parametrize(
    "grouping", [BY_LR, ["config.lr"]], ids=["workspace-model", "earlier-list"]
)
def test_grid_run_set_grouped(
    server: RunningServer, report: tuple[str, YClient], grouping: Any
) -> None:
    report_id, editor = report
    add(server, report_id, editor, grid(run_set("lrs", grouping)))

    with server.client() as client:
        response = figure(client, report=report_id, grid="g1")
    body = response.json()
    traces = traces_by_uid(body)

    assert response.status_code == 200, response.text
    assert body["runsets"]["lrs"]["grouped"] is True
    assert body["runsets"]["lrs"]["members"] == 4
    # lr=0.1: seeds give 0.1·(step+1) and 0.1·(step+1) + 1, so the mean is that + 0.5.
    assert traces["group-lrs.0"]["y"] == pytest.approx([0.6, 0.7, 0.8])
    assert traces["group-lrs.1"]["y"] == pytest.approx([1.5, 2.5, 3.5])


def test_grid_figure_limited_to_runs(
    server: RunningServer, report: tuple[str, YClient], sweep: dict[str, str]
) -> None:
    report_id, editor = report
    add(server, report_id, editor, grid(run_set("kept", [], frozen=True)))
    frozen_members = [sweep["lr0.1-s0"], sweep["lr1.0-s1"]]

    with server.client() as client:
        body = figure(client, report=report_id, grid="g1", runs=frozen_members).json()

    assert body["runsets"]["kept"]["members"] == 2
    assert sorted(body["runs"]) == sorted(frozen_members)


def test_inactive_run_set_not_drawn(server: RunningServer, report: tuple[str, YClient]) -> None:
    report_id, editor = report
    add(
        server,
        report_id,
        editor,
        grid(run_set("shown", []), run_set("hidden", BY_LR, active=False)),
    )

    with server.client() as client:
        body = figure(client, report=report_id, grid="g1").json()

    assert list(body["runsets"]) == ["shown"]


def test_bad_grouping_rejected_by_room(server: RunningServer, report: tuple[str, YClient]) -> None:
    report_id, editor = report
    bad = {"keys": ["config.lr"], "aggregate": "average", "band": "std"}

    editor.edit(lambda doc: doc.get("blocks", type=Array).append(grid(run_set("odd", bad))))
    reason = editor.next_denial()

    assert "grouping 'aggregate' must be one of mean, median, min, max" in reason
    assert report_content(server, report_id)["blocks"] == []


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"grid": "nope"}, 404, "grid_not_found"),
        ({}, 400, "bad_request"),
    ],
    ids=["unknown-grid", "missing-grid"],
)
def test_bad_grid_figure_rejected(
    server: RunningServer,
    report: tuple[str, YClient],
    params: dict[str, str],
    status: int,
    code: str,
) -> None:
    report_id, editor = report
    add(server, report_id, editor, grid(run_set("all", [])))

    with server.client() as client:
        response = figure(client, report=report_id, **params)

    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_unknown_report_figure_not_found(server: RunningServer, sweep: dict[str, str]) -> None:
    with server.client() as client:
        response = figure(client, report="no-such-report", grid="g1")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "report_not_found"


def share_token(server: RunningServer, report_id: str) -> str:
    with server.client() as client:
        response = client.post(f"/api/v1/reports/{report_id}/shares", json={"role": "view"})
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


def test_share_link_draws_only_own_grid(
    server: RunningServer, report: tuple[str, YClient]
) -> None:
    report_id, editor = report
    add(server, report_id, editor, grid(run_set("lrs", BY_LR)))
    other = create_report(server, "Other")["id"]
    token = share_token(server, report_id)

    with httpx.Client(base_url=server.url, params={"share": token}, timeout=30) as linked:
        own = figure(linked, report=report_id, grid="g1")
        elsewhere = figure(linked, report=other, grid="g1")
        hidden_metric = linked.get(
            f"/api/v1/projects/{PROJECT}/figure",
            params={"key": "secret", "report": report_id, "grid": "g1"},
        )

    assert own.status_code == 200, own.text
    assert own.json()["runsets"]["lrs"]["grouped"] is True
    assert elsewhere.status_code == 403
    assert elsewhere.json()["error"]["code"] == "outside_report"
    assert hidden_metric.status_code == 403
    assert "'secret'" in hidden_metric.json()["error"]["message"]
