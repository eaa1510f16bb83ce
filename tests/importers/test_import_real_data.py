"""Import every folder of the real training logs and check them against their description.

The figures come from the data set's SOURCES.md where it gives them (run
counts, statuses, final losses, where the NaN values are), and otherwise
from the files themselves (first and last values).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import assay
from conftest import RunningServer
from import_support import (
    CliResult,
    find_real_data,
    import_cli,
    module_server,
    open_api,
    runs_by_name,
    series,
)

FOLDERS = (
    "slm_sweep_lightning_csv",
    "nbeats_tfevents",
    "ray_tune_ddpg_sweep",
    "mlflow_mnist_lightning",
    "cs336_lr_batch_sweep",
    "ptychopinn_nan_history",
    "bsdata_grid_sweep_tables",
)


@pytest.fixture(scope="module")
def real_data() -> Path:
    return find_real_data()


@pytest.fixture(scope="module")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with module_server(tmp_path_factory) as server:
        yield server


@pytest.fixture(scope="module")
def real_api(real_server: RunningServer) -> Iterator[assay.Api]:
    with open_api(real_server) as api:
        yield api


@pytest.fixture(scope="module")
def imported(real_data: Path, real_server: RunningServer) -> dict[str, CliResult]:
    """Import each folder once, into a project named after it."""
    return {
        folder: import_cli(real_server, real_data / folder, "--project", folder)
        for folder in FOLDERS
    }


def runs_of(api: assay.Api, folder: str) -> dict[str, assay.ApiRun]:
    return runs_by_name(api, folder)


def nan_steps(rows: list[dict[str, object]], metric: str) -> list[int]:
    return [
        step
        for step, value in series(rows, metric)
        if isinstance(value, float) and math.isnan(value)
    ]


@pytest.mark.parametrize("folder", FOLDERS)
def test_folder_imports_without_error(imported: dict[str, CliResult], folder: str) -> None:
    result = imported[folder]

    assert result.exit_code == 0, result.stderr
    assert "Imported" in result.stdout


# 1. PyTorch Lightning CSVLogger sweep: 40 runs.

DIVERGED_VERSIONS = (3, 8, 15, 17, 19, 26, 29, 30, 31, 35, 39)


def test_lightning_sweep_has_forty_finished_runs(
    imported: dict[str, CliResult], real_api: assay.Api
) -> None:
    runs = runs_of(real_api, "slm_sweep_lightning_csv")

    assert sorted(runs) == sorted(f"version_{number}" for number in range(40))
    assert {run.state for run in runs.values()} == {"finished"}


def test_lightning_hparams_become_config(
    imported: dict[str, CliResult], real_api: assay.Api
) -> None:
    runs = runs_of(real_api, "slm_sweep_lightning_csv")
    experimental = [n for n in range(40) if runs[f"version_{n}"].config["use_experimental"]]
    d_models = {runs[f"version_{n}"].config["d_model"] for n in range(20)}
    fixed = {
        (run.config["num_layers"], run.config["ff_hidden"], run.config["max_seq_len"])
        for run in runs.values()
    }

    assert experimental == list(range(20))
    assert d_models == {492}
    assert {runs[f"version_{n}"].config["d_model"] for n in range(20, 40)} == {512}
    assert fixed == {(12, 2048, 128)}
    assert {run.config["num_epochs"] for run in runs.values()} == {20}
    assert {run.config["vocab_size"] for run in runs.values()} == {50258}
    assert runs["version_0"].config["lr"] == 5.3438960475985955e-05


def test_lightning_rows_merge_per_step(
    imported: dict[str, CliResult], real_api: assay.Api
) -> None:
    rows = runs_of(real_api, "slm_sweep_lightning_csv")["version_0"].history()
    by_step = {row["step"]: row for row in rows}
    losses = series(rows, "train_loss_step")

    assert len(rows) == 134
    assert rows[0]["step"] == 49
    assert rows[-1]["step"] == 5739
    assert by_step[286]["val_loss"] == 6.833683967590332
    assert by_step[286]["train_loss_epoch"] == 7.640378952026367
    assert by_step[286]["epoch"] == 0
    assert losses[0] == (49, 8.620475769042969)
    assert losses[-1] == (5699, 5.1495232582092285)


def test_lightning_diverged_runs_stop_early(
    imported: dict[str, CliResult], real_api: assay.Api
) -> None:
    runs = runs_of(real_api, "slm_sweep_lightning_csv")
    for number in DIVERGED_VERSIONS:
        run = runs[f"version_{number}"]
        stats = run.metrics()

        assert stats["epoch"]["last"] <= 7, number
        assert 7.4 <= stats["val_loss"]["last"] <= 8.5, number
        assert run.config["lr"] > 2.9e-4, number


def test_lightning_learned_runs_end_lower(
    imported: dict[str, CliResult], real_api: assay.Api
) -> None:
    runs = runs_of(real_api, "slm_sweep_lightning_csv")
    complete = [run for run in runs.values() if run.metrics()["epoch"]["last"] == 19]
    finals = [run.metrics()["val_loss"]["last"] for run in complete]
    version_5 = runs["version_5"].metrics()

    assert len(complete) == 24
    assert min(finals) >= 5.1
    assert max(finals) <= 6.25
    assert max(run.metrics()["val_loss"]["last_step"] for run in runs.values()) == 5739
    assert version_5["epoch"]["last"] == 13
    assert round(version_5["val_loss"]["last"], 2) == 5.13


def test_lightning_sweep_has_no_nan(imported: dict[str, CliResult], real_api: assay.Api) -> None:
    flags = {
        (name, metric): stats["has_nan"] or stats["has_inf"]
        for name, run in runs_of(real_api, "slm_sweep_lightning_csv").items()
        for metric, stats in run.metrics().items()
    }

    assert not any(flags.values())


# 2. TensorBoard event files from neuralforecast: 28 versions.

TRAINING_STEPS = {0: 90, 2: 50, 3: 50, 6: 90, 8: 90, 10: 30, 12: 90, 14: 80, 16: 90, 18: 50}
TRAINING_STEPS |= {19: 50, 22: 90, 24: 60, 26: 90}
PREDICT_ONLY = (1, 4, 5, 7, 9, 11, 13, 15, 17, 20, 21, 23, 25, 27)


def test_tensorboard_training_runs_step_counts(
    imported: dict[str, CliResult], real_api: assay.Api
) -> None:
    runs = runs_of(real_api, "nbeats_tfevents")
    counts = {number: len(runs[f"version_{number}"].history()) for number in TRAINING_STEPS}

    assert len(runs) == 28
    assert counts == TRAINING_STEPS


def test_tensorboard_predict_sessions_hold_hp_metric(
    imported: dict[str, CliResult], real_api: assay.Api
) -> None:
    runs = runs_of(real_api, "nbeats_tfevents")
    for number in PREDICT_ONLY:
        rows = runs[f"version_{number}"].history()

        assert len(rows) == 1, number
        assert set(rows[0]) == {"step", "_timestamp", "hp_metric"}, number
        assert rows[0]["hp_metric"] == -1.0, number


def test_tensorboard_scalars_first_and_last(
    imported: dict[str, CliResult], real_api: assay.Api
) -> None:
    run = runs_of(real_api, "nbeats_tfevents")["version_0"]
    rows = run.history()
    losses = series(rows, "train_loss_epoch")
    valid = series(rows, "valid_loss")

    assert losses[0] == (0, 8.911704063415527)
    assert losses[-1] == (89, 4.178401947021484)
    assert len(valid) == 9
    assert valid[-1] == (89, 4.56652307510376)
    assert run.created_at == pytest.approx(1690255049.3232343)
    assert not any(stats["has_nan"] for stats in run.metrics().values())


def test_tensorboard_hparams_become_config(
    imported: dict[str, CliResult], real_api: assay.Api
) -> None:
    runs = runs_of(real_api, "nbeats_tfevents")
    poisson = runs["version_0"].config
    mae = runs["version_3"].config

    assert poisson["loss"] == "DistributionLoss()"
    assert poisson["max_steps"] == 100.0
    assert poisson["learning_rate"] == 0.001
    assert mae["loss"] == "MAE()"
    assert mae["max_steps"] == 50.0
    assert "n_pool_kernel_size" in mae


def test_tensorboard_hparams_yaml_is_not_read(imported: dict[str, CliResult]) -> None:
    # The event files carry HParams, so hparams.yaml with its !!python tags is left alone.
    assert "!!python" not in imported["nbeats_tfevents"].stderr


# 3. Ray Tune: 50 random-search trials and 5 re-runs of trial 1.

RERUN_REWARDS = {
    "2020-07-27_12-17-304kgbzfwe": -math.inf,
    "2020-07-27_13-06-400izikoq_": -math.inf,
    "2020-07-27_13-09-12rieu3g0z": 36.719814,
}
ERRORED = ("2020-07-27_13-05-50lonje7y3", "2020-07-27_13-14-53774am1i3")


def test_ray_sweep_has_one_point_per_trial(
    imported: dict[str, CliResult], real_api: assay.Api
) -> None:
    runs = runs_of(real_api, "ray_tune_ddpg_sweep")
    histories = {name: run.history() for name, run in runs.items()}
    with_points = [name for name, rows in histories.items() if rows]

    assert len(runs) == 55
    assert sum(1 for name in runs if "_2020-07-24_" in name) == 50
    assert len(with_points) == 53
    assert {len(histories[name]) for name in with_points} == {1}
    assert {histories[name][0]["step"] for name in with_points} == {1}
    assert all(len(histories[name][0]) == 2 + 5 for name in with_points)


def test_ray_config_matches_directory_names(
    imported: dict[str, CliResult], real_api: assay.Api
) -> None:
    for name, run in runs_of(real_api, "ray_tune_ddpg_sweep").items():
        encoded = re.match(r"Trainable_\d+_(.*)_2020-07-2\d_", name)
        assert encoded is not None, name
        expected = dict(pair.split("=") for pair in encoded.group(1).split(","))

        assert set(run.config) == set(expected), name
        for key, text in expected.items():
            assert run.config[key] == pytest.approx(float(text), rel=1e-4), (name, key)


def test_ray_rewards_keep_negative_infinity(
    imported: dict[str, CliResult], real_api: assay.Api
) -> None:
    runs = runs_of(real_api, "ray_tune_ddpg_sweep")
    rewards = {
        suffix: run.history()[0]["ray/tune/mean_reward"]
        for name, run in runs.items()
        for suffix in RERUN_REWARDS
        if name.endswith(suffix)
    }
    trial_10 = next(run for name, run in runs.items() if name.startswith("Trainable_10_"))

    assert rewards == pytest.approx(RERUN_REWARDS)
    assert trial_10.history()[0]["ray/tune/mean_reward"] == pytest.approx(-60.027317)


def test_ray_errored_trials_have_no_points(
    imported: dict[str, CliResult], real_api: assay.Api
) -> None:
    runs = runs_of(real_api, "ray_tune_ddpg_sweep")
    errored = {
        suffix: run for name, run in runs.items() for suffix in ERRORED if name.endswith(suffix)
    }

    assert [run.history() for run in errored.values()] == [[], []]
    assert errored[ERRORED[0]].state == "failed"
    assert "RayActorError" in (errored[ERRORED[0]].notes or "")
    # Only the first has error.txt; the second was still pending when Ray stopped.
    assert errored[ERRORED[1]].state == "finished"
    assert errored[ERRORED[1]].config["batch_size"] == 128


def test_ray_copies_are_reported_skipped(imported: dict[str, CliResult]) -> None:
    output = imported["ray_tune_ddpg_sweep"].stdout

    assert "Ray Tune's copy of the results in the event files beside it: 10" in output
    assert "not a recognized training log format: 5" in output


# 4. MLflow file store and the Lightning CSV logs beside it.

MLFLOW_RUNS = {
    "spiffy-snail-442": ("finished", "0.001", "10", 10),
    "bright-elk-944": ("failed", "0.001", "5", 5),
    "amusing-smelt-908": ("finished", "0.02", "10", 10),
    "invincible-wasp-613": ("failed", "0.001", "5", 5),
    "rumbling-goat-446": ("finished", "0.001", "10", 10),
    "melodic-seal-579": ("finished", "0.001", "5", 5),
}
TRAIN_METRICS = (
    "acc",
    "acc_epoch",
    "acc_step",
    "train_loss",
    "train_loss_epoch",
    "train_loss_step",
)
#: Distinct steps per version; versions 16 to 18 have 80, 80 and 81 rows, with
#: epoch-end rows sharing the step of a training row.
LIGHTNING_STEPS = {0: 3, 1: 3, 2: 10, 3: 197, 4: 197, 16: 75, 17: 75, 18: 76}


def test_mlflow_runs_keep_status_and_params(
    imported: dict[str, CliResult], real_api: assay.Api
) -> None:
    runs = runs_of(real_api, "mlflow_mnist_lightning")
    for name, (state, lr, epochs, points) in MLFLOW_RUNS.items():
        run = runs[name]
        stats = run.metrics()

        assert run.state == state, name
        assert run.exit_code == (0 if state == "finished" else 1), name
        assert run.config["lr"] == lr, name
        assert run.config["epochs"] == epochs, name
        assert run.group == "Default", name
        assert {stats[metric]["count"] for metric in TRAIN_METRICS} == {points}, name


def test_mlflow_test_metrics_have_one_point(
    imported: dict[str, CliResult], real_api: assay.Api
) -> None:
    stats = runs_of(real_api, "mlflow_mnist_lightning")["melodic-seal-579"].metrics()
    tests = ("test_acc", "test_loss", "avg_test_acc", "avg_test_loss")

    assert {stats[metric]["count"] for metric in tests} == {1}
    assert stats["test_acc"]["last"] == 0.9636666774749756
    assert len(stats) == 10


def test_mlflow_times_come_from_meta(imported: dict[str, CliResult], real_api: assay.Api) -> None:
    run = runs_of(real_api, "mlflow_mnist_lightning")["spiffy-snail-442"]
    acc = series(run.history(), "acc")

    assert run.created_at == 1708208362.921
    assert run.finished_at == 1708208434.798
    assert run.config["mlflow"]["run_id"] == "00e2ba8f3b404a6abced114ac6b51ff8"
    assert run.tags == ["Mode=training"]
    assert len(acc) == 10
    assert acc[0][0] == 0
    assert acc[-1][0] == 9


def test_mlflow_deleted_runs_are_tagged(
    imported: dict[str, CliResult], real_api: assay.Api
) -> None:
    runs = runs_of(real_api, "mlflow_mnist_lightning")
    deleted = sorted(
        name for name, run in runs.items() if "mlflow.lifecycle_stage=deleted" in run.tags
    )

    assert deleted == ["bright-elk-944", "invincible-wasp-613"]


def test_lightning_logs_beside_mlflow(imported: dict[str, CliResult], real_api: assay.Api) -> None:
    runs = runs_of(real_api, "mlflow_mnist_lightning")
    counts = {number: len(runs[f"version_{number}"].history()) for number in LIGHTNING_STEPS}
    output = imported["mlflow_mnist_lightning"].stdout

    assert len(runs) == 6 + 8
    assert counts == LIGHTNING_STEPS
    assert "a config file with no metrics beside it: 11" in output


# 5. CS336 learning-rate and batch-size sweeps, per-step JSONL.

FINAL_VAL_LOSS = {
    "lr_sweep_1e-4": 2.235,
    "lr_sweep_3e-4": 1.841,
    "lr_sweep_1e-3": 1.648,
    "lr_sweep_3e-3": 1.615,
    "lr_sweep_1e-2": 1.800,
    "lr_sweep_3e-2": 2.125,
    "lr_sweep_1e-1": 3.302,
    "lr_sweep_3e-1": 3.398,
    "lr_sweep_1": 4.405,
}


def test_lr_sweep_final_validation_losses(
    imported: dict[str, CliResult], real_api: assay.Api
) -> None:
    runs = runs_of(real_api, "cs336_lr_batch_sweep")
    finals = {name: round(runs[name].metrics()["val_loss"]["last"], 3) for name in FINAL_VAL_LOSS}

    assert len(runs) == 17
    assert finals == FINAL_VAL_LOSS


def test_lr_sweep_steps_and_spikes(imported: dict[str, CliResult], real_api: assay.Api) -> None:
    runs = runs_of(real_api, "cs336_lr_batch_sweep")
    rows = runs["lr_sweep_1"].history()
    losses = series(rows, "train_loss")

    assert len(rows) == 500
    assert losses[0] == (10, 13.912338256835938)
    assert losses[-1] == (5000, 4.432066917419434)
    assert len(series(rows, "val_loss")) == 50
    assert round(runs["lr_sweep_1"].metrics()["train_loss"]["max"], 1) == 702.7
    assert round(runs["lr_sweep_3e-1"].metrics()["train_loss"]["max"], 1) == 277.5
    assert runs["lr_sweep_1"].config["lr"] == 1.0


def test_batch_sweep_keeps_empty_runs(imported: dict[str, CliResult], real_api: assay.Api) -> None:
    runs = runs_of(real_api, "cs336_lr_batch_sweep")
    stderr = imported["cs336_lr_batch_sweep"].stderr

    assert runs["batch_size_64"].history() == []
    assert runs["batch_size_128"].history() == []
    assert runs["batch_size_64"].config["batch_size"] == 64
    assert "batch_size_64/metrics.jsonl: is empty" in stderr
    assert "batch_size_128/metrics.jsonl: is empty" in stderr


def test_batch_size_one_has_every_step(
    imported: dict[str, CliResult], real_api: assay.Api
) -> None:
    stats = runs_of(real_api, "cs336_lr_batch_sweep")["batch_size_1"].metrics()

    assert stats["train_loss"]["count"] == 16_000
    assert stats["val_loss"]["count"] == 1_600
    assert stats["train_loss"]["last_step"] == 160_000
    assert not any(metric["has_nan"] for metric in stats.values())


# 6. Keras-style history with NaN tokens.

NAN_METRICS = (
    "intensity_scaler_inv_loss",
    "loss",
    "pred_intensity_loss",
    "train_loss",
    "val_intensity_scaler_inv_loss",
    "val_loss",
    "val_pred_intensity_loss",
)


def test_keras_history_nan_positions(imported: dict[str, CliResult], real_api: assay.Api) -> None:
    runs = runs_of(real_api, "ptychopinn_nan_history")
    rows = runs["gs1_ideal/train_outputs"].history()
    positions = {metric: nan_steps(rows, metric) for metric in rows[0] if metric != "_timestamp"}

    assert [row["step"] for row in rows] == [0, 1, 2, 3, 4]
    assert sum(len(steps) for steps in positions.values()) == 14
    assert {metric for metric, steps in positions.items() if steps} == set(NAN_METRICS)
    assert {tuple(positions[metric]) for metric in NAN_METRICS} == {(3, 4)}
    assert series(rows, "loss")[0] == (0, -3863464.0)
    assert series(rows, "loss")[2] == (2, -3938984.25)


def test_keras_healthy_sibling_is_finite(
    imported: dict[str, CliResult], real_api: assay.Api
) -> None:
    run = runs_of(real_api, "ptychopinn_nan_history")["gs2_ideal/train_outputs"]
    stats = run.metrics()

    assert len(run.history()) == 5
    assert len(stats) == 10
    assert not any(metric["has_nan"] or metric["has_inf"] for metric in stats.values())


# 7. Sweep result tables written as CSV.


def test_csv_tables_import_as_one_run_each(
    imported: dict[str, CliResult], real_api: assay.Api
) -> None:
    runs = runs_of(real_api, "bsdata_grid_sweep_tables")
    buggy = runs["bsdata_grid_sweep_tables/grid_sweep_summary"]
    values = {value for _, value in series(buggy.history(), "metric_value")}

    assert len(runs) == 2
    assert len(buggy.history()) == 60
    assert values == {0.9618231625575566}
    assert 0 in {value for _, value in series(buggy.history(), "lr")}
    assert buggy.config["experiment_dir"] == "code/experiments/results/experiment_20251117_004552"


def test_csv_run_column_splits_runs(
    real_data: Path, real_server: RunningServer, real_api: assay.Api
) -> None:
    result = import_cli(
        real_server,
        real_data / "bsdata_grid_sweep_tables",
        "--project",
        "bsdata-by-experiment",
        "--run-column",
        "experiment_dir",
    )
    runs = runs_by_name(real_api, "bsdata-by-experiment")
    grid = [run for name, run in runs.items() if "experiment_grid_lr" in name]
    pairs = {(run.history()[0]["lr"], run.history()[0]["seed"]) for run in grid}
    buggy = [run for name, run in runs.items() if name.endswith("experiment_20251117_004552")]

    assert result.exit_code == 0, result.stderr
    assert len(runs) == 7
    assert pairs == {(lr, seed) for lr in (0.1, 0.001, 0.0005) for seed in (42, 43)}
    assert {len(run.history()) for run in grid} == {1}
    assert len(buggy) == 1
    assert len(buggy[0].history()) == 60


# Importing the same folder again.


def test_reimport_stores_no_point_twice(
    imported: dict[str, CliResult],
    real_data: Path,
    real_server: RunningServer,
    real_api: assay.Api,
) -> None:
    folder = "cs336_lr_batch_sweep"
    before = {name: run.metrics() for name, run in runs_of(real_api, folder).items()}

    again = import_cli(real_server, real_data / folder, "--project", folder)
    after = {name: run.metrics() for name, run in runs_of(real_api, folder).items()}

    assert again.exit_code == 0, again.stderr
    assert "0 new, 17 updated" in again.stdout
    assert after == before


def test_run_set_picks_diverging_lr_runs(
    imported: dict[str, CliResult], real_api: assay.Api
) -> None:
    # The two highest learning rates are the ones whose training loss blew up
    # (to 277.5 and 702.7); no other run of the sweep logged a loss above 100.
    diverged = real_api.runs("cs336_lr_batch_sweep", filter="summary.train_loss.max > 100")
    healthy = real_api.runs(
        "cs336_lr_batch_sweep",
        filter='name ~ "^lr_sweep_" and not summary.train_loss.max > 100',
    )

    assert sorted(run.name for run in diverged) == ["lr_sweep_1", "lr_sweep_3e-1"]
    assert len(healthy) == 7
