"""Broken input: each problem is a warning naming the file and place, and the rest is imported."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import assay
from conftest import RunningServer
from import_support import (
    find_real_data,
    import_cli,
    module_server,
    open_api,
    record_offsets,
    runs_by_name,
    series,
    write_events,
)

#: Five scalar events; with the file_version record first they are records 2 to 6.
POINTS = [(step, 1.7e9 + step, "loss", float(step)) for step in range(5)]


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with module_server(tmp_path_factory) as server:
        yield server


@pytest.fixture(scope="module")
def api(shared_server: RunningServer) -> Iterator[assay.Api]:
    with open_api(shared_server) as client:
        yield client


def loss_steps(api: assay.Api, project: str, name: str) -> list[int]:
    return [step for step, _ in series(runs_by_name(api, project)[name].history(), "loss")]


def test_truncated_event_file_keeps_earlier_records(
    shared_server: RunningServer, api: assay.Api, tmp_path: Path
) -> None:
    events = write_events(tmp_path / "cut", POINTS)
    last = record_offsets(events)[-1]
    events.write_bytes(events.read_bytes()[:-7])

    result = import_cli(shared_server, tmp_path / "cut", "--project", "truncated")

    assert result.exit_code == 0, result.stderr
    assert f"{events.name}: record 6 at byte {last}: the file ends inside the record" in (
        result.stderr
    )
    assert loss_steps(api, "truncated", "cut") == [0, 1, 2, 3]


def test_bad_data_checksum_skips_one_record(
    shared_server: RunningServer, api: assay.Api, tmp_path: Path
) -> None:
    events = write_events(tmp_path / "flipped", POINTS)
    data = bytearray(events.read_bytes())
    third = record_offsets(events)[2]
    data[third + 12 + 3] ^= 0xFF
    events.write_bytes(bytes(data))

    result = import_cli(shared_server, tmp_path / "flipped", "--project", "checksum")

    assert result.exit_code == 0, result.stderr
    assert f"record 3 at byte {third}: the data checksum does not match; record skipped" in (
        result.stderr
    )
    assert loss_steps(api, "checksum", "flipped") == [0, 2, 3, 4]


def test_bad_length_checksum_stops_the_file(
    shared_server: RunningServer, api: assay.Api, tmp_path: Path
) -> None:
    events = write_events(tmp_path / "length", POINTS)
    data = bytearray(events.read_bytes())
    fourth = record_offsets(events)[3]
    data[fourth + 8] ^= 0xFF
    events.write_bytes(bytes(data))

    result = import_cli(shared_server, tmp_path / "length", "--project", "length")

    assert result.exit_code == 0, result.stderr
    assert f"record 4 at byte {fourth}: the length checksum does not match" in result.stderr
    assert loss_steps(api, "length", "length") == [0, 1]


def test_corrupted_copy_of_real_event_file(
    shared_server: RunningServer, api: assay.Api, tmp_path: Path
) -> None:
    source = find_real_data() / "nbeats_tfevents" / "lightning_logs" / "version_10"
    (original,) = source.glob("events.out.tfevents.*")
    copy = tmp_path / "version_10" / original.name
    copy.parent.mkdir()
    data = bytearray(original.read_bytes())
    offsets = record_offsets(original)
    data[offsets[10] + 12] ^= 0x01
    copy.write_bytes(bytes(data[: offsets[-1] + 5]))

    result = import_cli(shared_server, copy.parent, "--project", "real-corrupted")
    rows = runs_by_name(api, "real-corrupted")["version_10"].history()

    assert result.exit_code == 0, result.stderr
    assert f"record 11 at byte {offsets[10]}: the data checksum does not match" in result.stderr
    assert f"record {len(offsets)} at byte {offsets[-1]}: the file ends inside" in result.stderr
    assert len(rows) == 30
    assert series(rows, "train_loss_epoch")[0] == (0, 6.843942165374756)


def test_zero_byte_event_file_warns(shared_server: RunningServer, tmp_path: Path) -> None:
    run = tmp_path / "empty_tb"
    run.mkdir()
    (run / "events.out.tfevents.1700000000.host").write_bytes(b"")

    result = import_cli(shared_server, run, "--project", "zero-bytes")

    assert result.exit_code == 0, result.stderr
    assert "events.out.tfevents.1700000000.host: is empty (0 bytes)" in result.stderr


def test_empty_mlflow_metric_file_warns(
    shared_server: RunningServer, api: assay.Api, tmp_path: Path
) -> None:
    real = find_real_data() / "mlflow_mnist_lightning" / "mlruns"
    copy = tmp_path / "mlruns"
    shutil.copytree(real, copy)
    run = copy / "0" / "00e2ba8f3b404a6abced114ac6b51ff8"
    (run / "metrics" / "acc_step").write_text("")

    result = import_cli(shared_server, copy, "--project", "empty-metric")
    stats = runs_by_name(api, "empty-metric")["spiffy-snail-442"].metrics()

    assert result.exit_code == 0, result.stderr
    assert "metrics/acc_step: is empty; the metric has no points" in result.stderr
    assert "acc_step" not in stats
    assert stats["acc"]["count"] == 10


def test_mlflow_missing_files_warn(
    shared_server: RunningServer, api: assay.Api, tmp_path: Path
) -> None:
    real = find_real_data() / "mlflow_mnist_lightning" / "mlruns"
    copy = tmp_path / "mlruns"
    shutil.copytree(real, copy)
    run = copy / "0" / "24005fa4a9124421b61899b4a82e6510"
    (run / "meta.yaml").unlink()
    (copy / "0" / "meta.yaml").unlink()

    result = import_cli(shared_server, copy, "--project", "missing-meta")
    runs = runs_by_name(api, "missing-meta")
    headless = runs["bright-elk-944"]

    assert result.exit_code == 0, result.stderr
    assert re.search(r"24005fa4a9124421b61899b4a82e6510/meta\.yaml: is missing", result.stderr)
    assert re.search(r"mlruns/0/meta\.yaml: is missing", result.stderr)
    assert len(runs) == 6
    assert headless.state == "finished"
    assert headless.group == "0"
    assert headless.metrics()["acc"]["count"] == 5
    assert headless.created_at == 1708382026.921


def test_mlflow_bad_metric_line_warns(
    shared_server: RunningServer, api: assay.Api, tmp_path: Path
) -> None:
    run = tmp_path / "mlruns" / "0" / "r1"
    for part in ("metrics", "params", "tags"):
        (run / part).mkdir(parents=True)
    (tmp_path / "mlruns" / "0" / "meta.yaml").write_text("name: exp\n")
    (run / "meta.yaml").write_text("run_id: r1\nstatus: 3\nstart_time: 1700000000000\n")
    (run / "metrics" / "loss").write_text(
        "1700000000000 1.0 0\nnot a number\n1700000002000 0.5 2\n"
    )

    result = import_cli(shared_server, tmp_path / "mlruns", "--project", "bad-line")
    rows = runs_by_name(api, "bad-line")["r1"].history()

    assert result.exit_code == 0, result.stderr
    assert "metrics/loss: line 2: expected 'timestamp value step'" in result.stderr
    assert series(rows, "loss") == [(0, 1.0), (2, 0.5)]


def test_ragged_csv_rows_warn_by_line(
    shared_server: RunningServer, api: assay.Api, tmp_path: Path
) -> None:
    (tmp_path / "ragged.csv").write_text(
        "step,loss,acc\n0,1.0,0.1\n1,0.9\n2,0.8,0.3,extra\n3,0.7,0.4\n"
    )

    result = import_cli(shared_server, tmp_path / "ragged.csv", "--project", "ragged")
    rows = runs_by_name(api, "ragged")["ragged"].history()

    assert result.exit_code == 0, result.stderr
    assert "ragged.csv: line 3: the row has 2 cells but the header has 3" in result.stderr
    assert "ragged.csv: line 4: the row has 4 cells but the header has 3; row skipped" in (
        result.stderr
    )
    assert series(rows, "loss") == [(0, 1.0), (1, 0.9), (3, 0.7)]
    assert series(rows, "acc") == [(0, 0.1), (3, 0.4)]


def test_non_numeric_cells_warn_by_line(
    shared_server: RunningServer, api: assay.Api, tmp_path: Path
) -> None:
    (tmp_path / "cells.csv").write_text("step,loss,acc\n0,1.0,0.1\n1,oops,0.2\n2,0.8,0.3\n")

    result = import_cli(shared_server, tmp_path / "cells.csv", "--project", "cells")
    rows = runs_by_name(api, "cells")["cells"].history()

    assert result.exit_code == 0, result.stderr
    assert "cells.csv: line 3: 'loss' is 'oops', not a number; cell skipped" in result.stderr
    assert series(rows, "loss") == [(0, 1.0), (2, 0.8)]
    assert series(rows, "acc") == [(0, 0.1), (1, 0.2), (2, 0.3)]


def test_long_directory_names_with_separators(
    shared_server: RunningServer, api: assay.Api, tmp_path: Path
) -> None:
    name = "Trainable_7_" + ",".join(f"param_{n}=0.{n:03d}" for n in range(16))
    name = (name + "_x" * 100)[:200]
    write_events(tmp_path / "sweep" / name, [(1, 1.7e9, "reward", -60.0)])

    result = import_cli(shared_server, tmp_path / "sweep", "--project", "long-names")
    runs = runs_by_name(api, "long-names")

    assert result.exit_code == 0, result.stderr
    assert len(name) == 200
    assert list(runs) == [name]
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", runs[name].id)
    assert series(runs[name].history(), "reward") == [(1, -60.0)]


def test_hparams_yaml_tags_never_execute(
    shared_server: RunningServer, api: assay.Api, tmp_path: Path
) -> None:
    marker = tmp_path / "executed"
    run = tmp_path / "version_0"
    run.mkdir()
    (run / "metrics.csv").write_text("epoch,step,loss\n0,9,1.5\n")
    (run / "hparams.yaml").write_text(
        "lr: 0.001\n"
        f"hook: !!python/object/apply:os.system ['touch {marker}']\n"
        "loss: !!python/object:neuralforecast.losses.pytorch.DistributionLoss\n"
        "  distribution: Poisson\n"
        "betas: !!python/tuple\n- 0.9\n- 0.999\n"
        "weights: !!binary |\n  gAKKCmz8nEb5IGqoUBku\n"
        "kind: !!python/name:torch.distributions.poisson.Poisson ''\n"
    )

    result = import_cli(shared_server, run, "--project", "yaml-tags")
    config = runs_by_name(api, "yaml-tags")["version_0"].config

    assert result.exit_code == 0, result.stderr
    assert not marker.exists()
    assert config["lr"] == 0.001
    assert config["betas"] == [0.9, 0.999]
    assert config["hook"] == "!!python/object/apply:os.system"
    assert config["loss"] == "!!python/object:neuralforecast.losses.pytorch.DistributionLoss"
    assert config["weights"].startswith("!!binary")
    assert config["kind"] == "!!python/name:torch.distributions.poisson.Poisson"
    assert "hparams.yaml: hook holds a !!python/object/apply:os.system value" in result.stderr
    assert "hparams.yaml: weights holds a !!binary value" in result.stderr


def test_real_hparams_yaml_loads_safely(
    shared_server: RunningServer, api: assay.Api, tmp_path: Path
) -> None:
    source = find_real_data() / "nbeats_tfevents" / "lightning_logs" / "version_0"
    run = tmp_path / "version_0"
    run.mkdir()
    shutil.copy(source / "hparams.yaml", run / "hparams.yaml")
    (run / "metrics.csv").write_text("step,loss\n0,1.0\n")

    result = import_cli(shared_server, run, "--project", "real-yaml")
    config = runs_by_name(api, "real-yaml")["version_0"].config

    assert result.exit_code == 0, result.stderr
    assert config["learning_rate"] == 0.001
    assert config["h"] == 12
    assert config["loss"].startswith("!!python/object:neuralforecast.losses.pytorch")
    assert "hparams.yaml: loss holds a !!python/object" in result.stderr


def test_jsonl_bad_lines_warn(
    shared_server: RunningServer, api: assay.Api, tmp_path: Path
) -> None:
    run = tmp_path / "jsonl"
    run.mkdir()
    (run / "metrics.jsonl").write_text(
        '{"step": 0, "loss": 1.0}\n[1, 2]\n{"step": 2, "loss": 0.5}\n{"step": 3, "lo'
    )

    result = import_cli(shared_server, run, "--project", "jsonl-bad")
    rows = runs_by_name(api, "jsonl-bad")["jsonl"].history()

    assert result.exit_code == 0, result.stderr
    assert "metrics.jsonl: line 2: holds a list, not an object; line skipped" in result.stderr
    assert "metrics.jsonl: line 4: is not valid JSON" in result.stderr
    assert series(rows, "loss") == [(0, 1.0), (2, 0.5)]


def test_jsonl_clashing_flattened_names_warn(
    shared_server: RunningServer, api: assay.Api, tmp_path: Path
) -> None:
    run = tmp_path / "clash"
    run.mkdir()
    (run / "metrics.jsonl").write_text(
        '{"step": 0, "loss": 1.0, "train": {"acc": 0.5}}\n'
        '{"step": 1, "loss": 0.9, "train/acc": 0.6, "train": {"acc": 0.7}}\n'
        '{"step": 2, "loss": 0.5, "train/acc": 0.8}\n'
    )

    result = import_cli(shared_server, run, "--project", "jsonl-clash")
    rows = runs_by_name(api, "jsonl-clash")["clash"].history()

    assert result.exit_code == 0, result.stderr
    assert (
        "metrics.jsonl: line 2: has 2 keys that flatten to the same metric name 'train/acc', "
        "['train/acc'] and ['train']['acc'], because nested keys are joined with '/'; "
        "line skipped"
    ) in result.stderr
    assert series(rows, "loss") == [(0, 1.0), (2, 0.5)]
    assert series(rows, "train/acc") == [(0, 0.5), (2, 0.8)]


def test_jsonl_empty_key_segments_warn(
    shared_server: RunningServer, api: assay.Api, tmp_path: Path
) -> None:
    run = tmp_path / "segments"
    run.mkdir()
    (run / "metrics.jsonl").write_text(
        '{"step": 0, "loss": 1.0, "train": {"acc": 0.5}}\n'
        '{"step": 1, "loss": 0.9, "train": {"": 0.6}}\n'
        '{"step": 2, "loss": 0.8, "x": 1.0, "x/": 2.0}\n'
        '{"step": 3, "loss": 0.7, "a/": {"b": 3.0}}\n'
        '{"step": 4, "loss": 0.6, "a": {"": {}}}\n'
        '{"step": 5, "loss": 0.5, "train": {"acc": 0.9}}\n'
    )

    result = import_cli(shared_server, run, "--project", "jsonl-segments")
    imported = runs_by_name(api, "jsonl-segments")["segments"]
    rows = imported.history()

    assert result.exit_code == 0, result.stderr
    assert (
        "metrics.jsonl: line 2: has the key ['train'][''], whose metric name 'train/' has an "
        "empty segment (a leading, trailing or doubled '/', or an empty key); line skipped"
    ) in result.stderr
    assert "metrics.jsonl: line 3: has the key ['x/'], whose metric name 'x/'" in result.stderr
    assert "metrics.jsonl: line 4: has the key ['a/']['b'], whose metric name 'a//b'" in (
        result.stderr
    )
    assert "metrics.jsonl: line 5: has the key ['a'][''], whose metric name 'a/'" in (
        result.stderr
    )
    assert series(rows, "loss") == [(0, 1.0), (5, 0.5)]
    assert series(rows, "train/acc") == [(0, 0.5), (5, 0.9)]
    assert sorted(imported.metrics()) == ["loss", "train/acc"]


def test_csv_column_with_empty_segment_skipped(
    shared_server: RunningServer, api: assay.Api, tmp_path: Path
) -> None:
    (tmp_path / "columns.csv").write_text("step,loss,val//acc,acc/,/lr\n0,1.0,0.1,0.2,0.3\n")

    result = import_cli(shared_server, tmp_path / "columns.csv", "--project", "csv-segments")
    imported = runs_by_name(api, "csv-segments")["columns"]

    assert result.exit_code == 0, result.stderr
    for name in ("val//acc", "acc/", "/lr"):
        assert (
            f"columns.csv: metric name {name!r} has an empty segment "
            "(a leading, trailing or doubled '/'); its values are skipped"
        ) in result.stderr
    assert sorted(imported.metrics()) == ["loss"]
    assert series(imported.history(), "loss") == [(0, 1.0)]


def test_zero_byte_lightning_metrics_keep_config(
    shared_server: RunningServer, api: assay.Api, tmp_path: Path
) -> None:
    run = tmp_path / "version_3"
    run.mkdir()
    (run / "metrics.csv").write_bytes(b"")
    (run / "hparams.yaml").write_text("lr: 0.3\n")

    result = import_cli(shared_server, run, "--project", "empty-csv")
    imported = runs_by_name(api, "empty-csv")["version_3"]

    assert result.exit_code == 0, result.stderr
    assert "metrics.csv: is empty; it holds no rows" in result.stderr
    assert imported.config == {"lr": 0.3}
    assert imported.history() == []


def test_invalid_utf8_is_replaced_with_warning(
    shared_server: RunningServer, api: assay.Api, tmp_path: Path
) -> None:
    (tmp_path / "bytes.csv").write_bytes(b"step,lo\xffss\n0,1.0\n")

    result = import_cli(shared_server, tmp_path / "bytes.csv", "--project", "utf8")
    rows = runs_by_name(api, "utf8")["bytes"].history()

    assert result.exit_code == 0, result.stderr
    assert "bytes.csv: is not valid UTF-8 (first bad byte at offset 7)" in result.stderr
    assert series(rows, "lo\ufffdss") == [(0, 1.0)]


def test_keras_file_of_wrong_shape_is_skipped(
    shared_server: RunningServer, tmp_path: Path
) -> None:
    run = tmp_path / "keras"
    run.mkdir()
    (run / "history.json").write_text(json.dumps([1, 2, 3]))

    result = import_cli(shared_server, run, "--project", "keras-bad")

    assert result.exit_code == 1
    assert "history.json: is not a Keras history" in result.stderr
