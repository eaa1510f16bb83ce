"""Filtered run lists through the HTTP API and ``assay.Api().runs(project, filter=…)``."""

from __future__ import annotations

import http.client
import json
import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

import assay
from conftest import RunningServer

PROJECT = "runsets"
RUNS_PATH = f"/api/v1/projects/{PROJECT}/runs"


def log_run(server: RunningServer, tmp_path: Path, run_id: str, **kwargs: Any) -> assay.Run:
    return assay.init(
        PROJECT,
        id=run_id,
        server=server.url,
        api_key=server.api_key,
        spool_dir=tmp_path / "spool",
        **kwargs,
    )


def log_losses(
    server: RunningServer, tmp_path: Path, run_id: str, losses: list[float | None]
) -> None:
    run = log_run(server, tmp_path, run_id)
    for step, loss in enumerate(losses):
        run.log({"loss": loss}, step=step)
    run.finish()


@pytest.fixture
def reader(server: RunningServer) -> Iterator[assay.Api]:
    with assay.Api(server=server.url, api_key=server.api_key) as client:
        yield client


@pytest.fixture
def client(server: RunningServer) -> Iterator[httpx.Client]:
    with server.client() as authorized:
        yield authorized


def selected(reader: assay.Api, text: str) -> list[str]:
    return sorted(run.id for run in reader.runs(PROJECT, filter=text))


def test_nan_or_null_excludes_infinity(
    server: RunningServer, tmp_path: Path, reader: assay.Api
) -> None:
    log_losses(server, tmp_path, "last-nan", [0.5, math.nan])
    log_losses(server, tmp_path, "last-null", [0.5, None])
    log_losses(server, tmp_path, "last-inf", [math.nan, None, math.inf])
    log_losses(server, tmp_path, "last-finite", [math.nan, 0.25])

    found = reader.runs(PROJECT, filter="summary.loss is nan or summary.loss is null")

    assert sorted(run.id for run in found) == ["last-nan", "last-null"]
    by_id = {run.id: run for run in found}
    assert math.isnan(by_id["last-nan"].summary["loss"])
    assert by_id["last-null"].summary["loss"] is None


def test_missing_metric_is_null_not_existing(
    server: RunningServer, tmp_path: Path, reader: assay.Api
) -> None:
    log_losses(server, tmp_path, "with-loss", [None])
    log_run(server, tmp_path, "without-loss").finish()

    assert selected(reader, "summary.loss is null") == ["with-loss", "without-loss"]
    assert selected(reader, "summary.loss exists") == ["with-loss"]


def test_comparisons_skip_nan_and_infinity_compares(
    server: RunningServer, tmp_path: Path, reader: assay.Api
) -> None:
    log_losses(server, tmp_path, "nan", [math.nan])
    log_losses(server, tmp_path, "inf", [math.inf])
    log_losses(server, tmp_path, "small", [0.05])

    assert selected(reader, "summary.loss < 0.1") == ["small"]
    assert selected(reader, "summary.loss > 1e308") == ["inf"]
    assert selected(reader, "summary.loss != 0.05") == ["inf"]
    assert selected(reader, "not summary.loss < 0.1") == ["inf", "nan"]
    assert selected(reader, "summary.loss.has_nan = true") == ["nan"]


def test_summary_override_wins_over_last_value(
    server: RunningServer, tmp_path: Path, reader: assay.Api
) -> None:
    run = log_run(server, tmp_path, "override")
    run.log({"loss": math.nan})
    run.summary["loss"] = 0.01
    run.finish()

    assert selected(reader, "summary.loss < 0.1") == ["override"]
    assert selected(reader, "summary.loss is nan") == []
    assert selected(reader, "summary.loss.has_nan = true") == ["override"]


def test_metadata_fields_select_runs(
    server: RunningServer, tmp_path: Path, reader: assay.Api
) -> None:
    log_run(server, tmp_path, "a", name="sweep-1", tags=["baseline"]).finish()
    # The server stamped run a before the SDK received its welcome.
    after_a = datetime.fromtimestamp(time.time(), UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    log_run(server, tmp_path, "b", name="sweep-2", group="g").finish(1)
    log_run(server, tmp_path, "c", name="other", tags=["x"]).finish()

    assert selected(reader, 'tags contains "baseline"') == ["a"]
    assert selected(reader, 'name ~ "^sweep-"') == ["a", "b"]
    assert selected(reader, "state in (crashed, failed)") == ["b"]
    assert selected(reader, f"created_at <= {after_a}") == ["a"]
    assert selected(reader, f"created_at > {after_a}") == ["b", "c"]
    assert selected(reader, "group is null") == ["a", "c"]
    assert selected(reader, "id = c or group = g") == ["b", "c"]
    assert selected(reader, "finished_at is not null") == ["a", "b", "c"]


def test_config_types_compare_separately(
    server: RunningServer, tmp_path: Path, reader: assay.Api
) -> None:
    configs: dict[str, dict[str, Any]] = {
        "number": {"lr": 0.1, "batch_size": 16, "optimizer": {"name": "adam"}},
        "string": {"lr": "0.1", "a.b": True, "layers": [64, "wide"]},
        "boolean": {"lr": True, "batch_size": 64, "layers": [1.0, math.inf]},
    }
    for run_id, config in configs.items():
        log_run(server, tmp_path, run_id, config=config).finish()

    assert selected(reader, "config.lr >= 0.1 and config.batch_size < 32") == ["number"]
    assert selected(reader, 'config.lr = "0.1"') == ["string"]
    assert selected(reader, "config.lr = true") == ["boolean"]
    assert selected(reader, "config.lr = 1") == []
    assert selected(reader, "config.optimizer.name = adam") == ["number"]
    assert selected(reader, 'config."a.b" = true') == ["string"]
    assert selected(reader, "config.layers contains 64") == ["string"]
    assert selected(reader, "config.layers contains inf") == ["boolean"]
    assert selected(reader, 'config.layers ~ "^w"') == ["string"]


def test_blank_filter_selects_every_run(
    server: RunningServer, tmp_path: Path, client: httpx.Client
) -> None:
    log_run(server, tmp_path, "only").finish()

    response = client.get(RUNS_PATH, params={"filter": "  "})

    assert response.status_code == 200
    assert [run["id"] for run in response.json()["runs"]] == ["only"]


def test_linear_regex_on_long_text(
    server: RunningServer, tmp_path: Path, reader: assay.Api
) -> None:
    # Patterns like this one backtrack exponentially in Python's re; both
    # PostgreSQL's engine and RE2 finish in time linear in the text.
    log_run(server, tmp_path, "long", config={"text": "a" * 100_000 + "!"}).finish()

    assert selected(reader, 'config.text ~ "(a+)+$"') == []
    assert selected(reader, 'config.text ~ "(a+)+!$"') == ["long"]


@pytest.mark.parametrize(
    ("text", "code", "message"),
    [
        ("config.lr >", "invalid_filter", "at column 12: expected a value"),
        ("name < 3", "filter_type_mismatch", "name is text and cannot be compared with a number"),
        ("foo.bar = 1", "unknown_field", "unknown field 'foo' at column 1"),
        (r'name ~ "(a+)+\1"', "invalid_regex", r"unsupported escape \1"),
        ('name ~ "(?=a)"', "invalid_regex", "lookaround and flags are rejected"),
        ('name = "\\u0000"', "invalid_filter", "NUL"),
        ("name = a\x00", "invalid_filter", "unexpected character"),
    ],
)
def test_bad_filter_is_400_with_message(
    server: RunningServer, tmp_path: Path, client: httpx.Client, text: str, code: str, message: str
) -> None:
    log_run(server, tmp_path, "present").finish()

    response = client.get(RUNS_PATH, params={"filter": text})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == code
    assert message in error["message"]
    assert error["message"].startswith("invalid filter: ")


def test_sdk_raises_server_error(server: RunningServer, tmp_path: Path, reader: assay.Api) -> None:
    log_run(server, tmp_path, "present").finish()

    with pytest.raises(assay.ServerError) as caught:
        reader.runs(PROJECT, filter="state = runing")

    assert caught.value.status == 400
    assert caught.value.code == "filter_type_mismatch"
    assert "unknown state 'runing'" in caught.value.message


def test_20_kb_filter_is_json_400(
    server: RunningServer, tmp_path: Path, client: httpx.Client
) -> None:
    log_run(server, tmp_path, "present").finish()

    response = client.get(RUNS_PATH, params={"filter": "name = " + "x" * 20_000})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "filter_too_long"
    assert "filter of 20,007 characters is too long" in error["message"]
    assert "at most 10,000 characters" in error["message"]


def test_100_kb_filter_is_400(server: RunningServer, tmp_path: Path) -> None:
    log_run(server, tmp_path, "present").finish()
    # httpx refuses URLs over 64 KiB, so this request goes through http.client.
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request(
        "GET",
        f"{RUNS_PATH}?filter={quote('name = ' + 'x' * 100_000)}",
        headers={"Authorization": f"Bearer {server.api_key}"},
    )
    response = connection.getresponse()
    body = response.read()
    connection.close()

    assert response.status == 400
    assert json.loads(body)["error"]["code"] == "filter_too_long"


def test_echoed_input_is_shortened(
    server: RunningServer, tmp_path: Path, client: httpx.Client
) -> None:
    log_run(server, tmp_path, "present").finish()

    response = client.get(RUNS_PATH, params={"filter": "x" * 9_000 + " = 1"})

    assert response.status_code == 400
    assert len(response.json()["error"]["message"]) < 300
