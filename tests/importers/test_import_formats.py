"""How each format maps to runs, and importing twice, on logs written in tmp_path."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import assay
from assay._credentials import Credentials
from assay.importers import import_paths, run_id_for
from conftest import RunningServer
from import_support import (
    hparams_summary,
    import_cli,
    module_server,
    open_api,
    runs_by_name,
    series,
    write_events,
)


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with module_server(tmp_path_factory) as server:
        yield server


@pytest.fixture(scope="module")
def api(shared_server: RunningServer) -> Iterator[assay.Api]:
    with open_api(shared_server) as client:
        yield client


def write_mlflow_run(
    root: Path,
    run_id: str,
    status: int,
    metrics: dict[str, str],
    start: int = 1_700_000_000_000,
    end: int | None = 1_700_000_060_000,
    params: dict[str, str] | None = None,
) -> Path:
    """Write one run of an MLflow file store under ``root/mlruns/0``."""
    experiment = root / "mlruns" / "0"
    experiment.mkdir(parents=True, exist_ok=True)
    (experiment / "meta.yaml").write_text("experiment_id: '0'\nname: sweep\n")
    run = experiment / run_id
    for part in ("metrics", "params", "tags"):
        (run / part).mkdir(parents=True, exist_ok=True)
    end_line = "null" if end is None else str(end)
    (run / "meta.yaml").write_text(
        f"run_id: {run_id}\nrun_name: {run_id}-name\nexperiment_id: '0'\n"
        f"status: {status}\nstart_time: {start}\nend_time: {end_line}\n"
        "lifecycle_stage: active\nuser_id: someone\n"
    )
    for name, text in metrics.items():
        (run / "metrics" / name).write_text(text)
    for name, value in (params or {}).items():
        (run / "params" / name).write_text(value)
    (run / "tags" / "team").write_text("vision")
    return run


def write_mixed_tree(root: Path) -> None:
    """A JSONL run, a TensorBoard run and an MLflow run side by side."""
    jsonl = root / "jsonl_run"
    jsonl.mkdir(parents=True)
    (jsonl / "config.json").write_text(json.dumps({"lr": 0.1}))
    (jsonl / "metrics.jsonl").write_text(
        '{"step": 0, "loss": 2.0}\n{"step": 1, "loss": NaN}\n{"step": 2, "loss": 1.0}\n'
    )
    write_events(root / "tb_run", [(0, 1.7e9, "loss", 3.0), (1, 1.7e9 + 1, "loss", 2.5)])
    write_mlflow_run(root, "abc123", 3, {"acc": "1700000000000 0.5 0\n1700000001000 0.75 1\n"})


def test_reimport_creates_no_duplicates(server: RunningServer, tmp_path: Path) -> None:
    write_mixed_tree(tmp_path / "logs")

    first = import_cli(server, tmp_path / "logs", "--project", "twice")
    with open_api(server) as client:
        before = {
            name: (run.history(), run.metrics())
            for name, run in runs_by_name(client, "twice").items()
        }
    second = import_cli(server, tmp_path / "logs", "--project", "twice")
    with open_api(server) as client:
        runs = runs_by_name(client, "twice")
        after = {name: (run.history(), run.metrics()) for name, run in runs.items()}

    assert first.exit_code == 0, first.stderr
    assert second.exit_code == 0, second.stderr
    assert "3 new, 0 updated" in first.stdout
    assert "0 new, 3 updated" in second.stdout
    assert len(runs) == 3
    assert {name: stats for name, (_, stats) in after.items()} == {
        name: stats for name, (_, stats) in before.items()
    }
    assert [row["step"] for row in after["jsonl_run"][0]] == [0, 1, 2]
    assert math.isnan(after["jsonl_run"][0][1]["loss"])


def test_large_run_splits_into_batches(
    shared_server: RunningServer, api: assay.Api, tmp_path: Path
) -> None:
    lines = "".join(json.dumps({"step": step, "loss": step / 2}) + "\n" for step in range(25_000))
    (tmp_path / "big").mkdir()
    (tmp_path / "big" / "metrics.jsonl").write_text(lines)
    credentials = Credentials(shared_server.url, shared_server.api_key)

    first = import_paths([tmp_path / "big"], "big", credentials)
    second = import_paths([tmp_path / "big"], "big", credentials)
    stats = runs_by_name(api, "big")["big"].metrics()["loss"]

    assert first.runs[0].batches == 3
    assert second.runs[0].created is False
    assert stats["count"] == 25_000
    assert stats["last_step"] == 24_999
    assert stats["last"] == 12_499.5


def test_grown_log_adds_new_rows(
    shared_server: RunningServer, api: assay.Api, tmp_path: Path
) -> None:
    log = tmp_path / "grows" / "metrics.jsonl"
    log.parent.mkdir()
    log.write_text("".join(json.dumps({"step": s, "loss": float(s)}) + "\n" for s in range(5)))
    import_cli(shared_server, log.parent, "--project", "grows")
    with log.open("a") as handle:
        handle.write(
            "".join(json.dumps({"step": s, "loss": float(s)}) + "\n" for s in range(5, 8))
        )

    result = import_cli(shared_server, log.parent, "--project", "grows")
    rows = runs_by_name(api, "grows")["grows"].history()

    assert result.exit_code == 0, result.stderr
    assert series(rows, "loss") == [(step, float(step)) for step in range(8)]


def test_mlflow_states_map_to_run_states(server: RunningServer, tmp_path: Path) -> None:
    points = {"loss": "1700000000000 1.5 0\n"}
    write_mlflow_run(tmp_path, "finished", 3, points)
    write_mlflow_run(tmp_path, "failed", 4, points)
    write_mlflow_run(tmp_path, "running", 1, points, end=None)
    write_mlflow_run(tmp_path, "killed", 5, points)

    result = import_cli(server, tmp_path / "mlruns", "--project", "states")
    with open_api(server) as client:
        runs = runs_by_name(client, "states")

    assert result.exit_code == 0, result.stderr
    assert runs["finished-name"].state == "finished"
    assert runs["finished-name"].exit_code == 0
    assert runs["failed-name"].state == "failed"
    assert runs["failed-name"].exit_code == 1
    assert runs["killed-name"].state == "failed"
    assert runs["killed-name"].config["mlflow"]["status"] == "KILLED"
    assert runs["running-name"].state == "running"
    assert runs["running-name"].finished_at is None
    assert runs["finished-name"].created_at == 1_700_000_000.0
    assert runs["finished-name"].finished_at == 1_700_000_060.0
    assert runs["finished-name"].group == "sweep"
    assert runs["finished-name"].tags == ["team=vision"]


def test_special_values_survive_each_format(
    shared_server: RunningServer, api: assay.Api, tmp_path: Path
) -> None:
    root = tmp_path / "special"
    write_mlflow_run(
        root, "mf", 3, {"x": "1700000000000 nan 0\n1700000000001 inf 1\n1700000000002 -inf 2\n"}
    )
    (root / "jl").mkdir()
    (root / "jl" / "metrics.jsonl").write_text(
        '{"step": 0, "x": NaN}\n{"step": 1, "x": Infinity}\n{"step": 2, "x": -Infinity}\n'
    )
    (root / "table.csv").write_text("step,x\n0,nan\n1,inf\n2,-inf\n")
    (root / "keras").mkdir()
    (root / "keras" / "history.json").write_text('{"x": [NaN, Infinity, -Infinity]}')
    write_events(
        root / "tb",
        [(0, 1.7e9, "x", math.nan), (1, 1.7e9 + 1, "x", math.inf), (2, 1.7e9 + 2, "x", -math.inf)],
    )

    result = import_cli(shared_server, root, "--project", "special")
    runs = runs_by_name(api, "special")

    assert result.exit_code == 0, result.stderr
    assert len(runs) == 5
    for name, run in runs.items():
        values = [value for _, value in series(run.history(), "x")]

        assert len(values) == 3, name
        assert math.isnan(values[0]), name
        assert values[1] == math.inf, name
        assert values[2] == -math.inf, name


def test_reserved_metric_names_are_renamed(
    shared_server: RunningServer, api: assay.Api, tmp_path: Path
) -> None:
    write_mlflow_run(tmp_path, "reserved", 3, {"step": "1700000000000 7 0\n"})

    result = import_cli(shared_server, tmp_path / "mlruns", "--project", "reserved")
    run = runs_by_name(api, "reserved")["reserved-name"]

    assert result.exit_code == 0, result.stderr
    assert series(run.history(), "step (logged)") == [(0, 7.0)]
    assert "Renamed metric 'step' to 'step (logged)' in 1 runs." in result.stdout
    assert "metric 'step' is stored as 'step (logged)'" in result.stderr


def test_tensorboard_hparams_and_failure_status(
    shared_server: RunningServer, api: assay.Api, tmp_path: Path
) -> None:
    write_events(
        tmp_path / "tb",
        [(5, 1.7e9, "loss", 0.25)],
        hparams=hparams_summary({"lr": 0.01, "optimizer": "adam", "nesterov": True}, status=2),
    )

    result = import_cli(shared_server, tmp_path / "tb", "--project", "tb-status")
    run = runs_by_name(api, "tb-status")["tb"]

    assert result.exit_code == 0, result.stderr
    assert run.state == "failed"
    assert run.config == {"lr": 0.01, "optimizer": "adam", "nesterov": True}
    assert series(run.history(), "loss") == [(5, 0.25)]


def test_tensorboard_running_status_stays_running(
    shared_server: RunningServer, api: assay.Api, tmp_path: Path
) -> None:
    write_events(
        tmp_path / "live", [(0, 1.7e9, "loss", 1.0)], hparams=hparams_summary({}, status=3)
    )

    import_cli(shared_server, tmp_path / "live", "--project", "tb-running")
    run = runs_by_name(api, "tb-running")["live"]

    assert run.state == "running"
    assert run.finished_at is None


def test_csv_time_column_sets_wall_times(
    shared_server: RunningServer, api: assay.Api, tmp_path: Path
) -> None:
    (tmp_path / "timed.csv").write_text(
        "_step,_timestamp,loss\n0,1700000000.5,1.0\n1,1700000010.25,0.5\n"
    )

    import_cli(shared_server, tmp_path / "timed.csv", "--project", "timed")
    run = runs_by_name(api, "timed")["timed"]
    rows = run.history()

    assert run.created_at == 1700000000.5
    assert run.finished_at == 1700000010.25
    assert [row["_timestamp"] for row in rows] == [1700000000.5, 1700000010.25]
    assert [row["step"] for row in rows] == [0, 1]
    assert set(rows[0]) == {"step", "_timestamp", "loss"}


def test_forced_format_reads_only_that_format(
    shared_server: RunningServer, api: assay.Api, tmp_path: Path
) -> None:
    run = tmp_path / "version_0"
    run.mkdir()
    (run / "metrics.csv").write_text("step,loss\n0,1.0\n1,0.5\n")
    (run / "hparams.yaml").write_text("lr: 0.1\n")
    (run / "history.json").write_text('{"loss": [1.0]}')

    result = import_cli(shared_server, run, "--project", "forced", "--format", "csv")
    runs = runs_by_name(api, "forced")

    assert result.exit_code == 0, result.stderr
    assert list(runs) == ["metrics"]
    assert runs["metrics"].config == {}
    assert "not part of the csv format (--format csv): 1" in result.stdout
    assert "a config file with no metrics beside it: 1" in result.stdout


def test_detection_mixes_formats_in_one_tree(
    shared_server: RunningServer, api: assay.Api, tmp_path: Path
) -> None:
    write_mixed_tree(tmp_path / "mixed")

    result = import_cli(shared_server, tmp_path / "mixed", "--project", "mixed")
    runs = runs_by_name(api, "mixed")

    assert result.exit_code == 0, result.stderr
    assert sorted(runs) == ["abc123-name", "jsonl_run", "tb_run"]
    assert runs["jsonl_run"].config == {"lr": 0.1}
    assert "Formats: 1 jsonl, 1 mlflow, 1 tensorboard." in result.stdout


def test_run_ids_are_stable_and_valid() -> None:
    first = run_id_for("project", "logs/version_0")
    again = run_id_for("project", "logs/version_0")
    other_project = run_id_for("other", "logs/version_0")
    other_path = run_id_for("project", "logs/version_1")

    assert first == again
    assert first != other_project
    assert first != other_path
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", first)


def test_missing_path_is_an_error(shared_server: RunningServer, tmp_path: Path) -> None:
    result = import_cli(shared_server, tmp_path / "absent", "--project", "absent")

    assert result.exit_code == 1
    assert "does not exist" in result.stderr


def test_directory_without_logs_finds_no_runs(
    shared_server: RunningServer, tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("nothing to see")

    result = import_cli(shared_server, tmp_path, "--project", "nothing")

    assert result.exit_code == 1
    assert "no runs found" in result.stderr
    assert "not a recognized training log format: 1" in result.stdout


def test_invalid_project_stops_the_import(shared_server: RunningServer, tmp_path: Path) -> None:
    write_mixed_tree(tmp_path / "logs")

    result = import_cli(shared_server, tmp_path / "logs", "--project", "no spaces allowed")

    assert result.exit_code == 1
    assert "project name" in result.stderr
