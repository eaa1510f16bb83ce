"""The example sweep streams real training runs, divergent ones included."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import assay
from conftest import ROOT, RunningServer


def test_sweep_streams_diverging_runs(sqlite_server: RunningServer, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "ASSAY_SERVER": sqlite_server.url,
        "ASSAY_API_KEY": sqlite_server.api_key,
        "ASSAY_SPOOL_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "sweep.py"), "--epochs", "3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    with assay.Api(server=sqlite_server.url, api_key=sqlite_server.api_key) as api:
        runs = {run.name: run for run in api.runs("demo-sweep")}
        diverged = runs["lr=1.0,bs=8"]
        stats = diverged.metrics()["train/loss"]
        losses = [row["train/loss"] for row in diverged.history(keys=["train/loss"])]
        healthy = runs["lr=0.1,bs=64"]
        healthy_stats = healthy.metrics()["train/loss"]

    assert result.returncode == 0, result.stderr
    assert len(runs) == 12
    assert all(run.state == "finished" for run in runs.values())
    assert all(run.group == "digits-mlp" for run in runs.values())
    assert stats["has_inf"] is True
    assert stats["has_nan"] is True
    assert math.inf in losses
    assert math.isnan(losses[-1])
    assert healthy_stats["has_nan"] is False
    assert healthy.summary["val/acc"] > 0.9
    assert diverged.config["lr"] == 1.0
    assert diverged.config["batch_size"] == 8
