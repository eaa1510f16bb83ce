"""The load benchmark in miniature: every live socket receives every point once.

``bench/load.py`` runs 1,000 sockets and 200 runs for 5 minutes. This test
runs 20 sockets and 5 runs for 3 seconds against a server process of its own.
It asserts no errors and no loss, never a speed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import free_port

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import load as load_bench  # noqa: E402

SOCKETS = 20
RUNS = 5


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_short_load_loses_nothing(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    config = load_bench.LoadConfig(
        sockets=SOCKETS,
        runs=RUNS,
        run_processes=2,
        rate=5,
        seconds=3,
        sample_seconds=0.5,
        latency_sockets=5,
        port=free_port(),
        results=tmp_path,
    )
    if backend == "postgres":
        config.database_url = request.getfixturevalue("postgres_url")
        config.redis_url = request.getfixturevalue("redis_url")
        config.redis_prefix = request.getfixturevalue("redis_prefix")

    summary: dict[str, Any] = load_bench.run_load(config)

    assert summary["errors"] == []
    assert summary["error_count"] == 0
    assert summary["server_log_errors"] == 0
    assert summary["points_logged"] > 0
    assert summary["points_delivered"] == summary["points_logged"] * SOCKETS
    assert summary["points_expected"] == summary["points_delivered"]
    # The fan-out runs from the bus append, which comes after the log call.
    assert summary["fanout_ms"]["p50"] >= 0
    assert summary["fanout_ms"]["max"] <= summary["latency_ms"]["max"] + 1
