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


@pytest.mark.parametrize(
    ("backend", "socket_client"),
    [("sqlite", "node"), ("sqlite", "python"), ("postgres", "node")],
)
def test_short_load_loses_nothing(
    backend: str, socket_client: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    config = load_bench.LoadConfig(
        socket_client=socket_client,
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

    assert summary["socket_client"] == socket_client
    assert summary["errors"] == []
    assert summary["error_count"] == 0
    assert summary["server_log_errors"] == 0
    assert summary["points_logged"] > 0
    assert summary["points_delivered"] == summary["points_logged"] * SOCKETS
    assert summary["points_expected"] == summary["points_delivered"]
    # The fan-out runs from the bus append, which comes after the log call.
    assert summary["fanout_ms"]["p50"] >= 0
    assert summary["fanout_ms"]["max"] <= summary["latency_ms"]["max"] + 1


def test_node_client_without_packages_names_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(load_bench, "WEB_PACKAGES", tmp_path / "node_modules")
    config = load_bench.LoadConfig(socket_client="node", results=tmp_path)

    with pytest.raises(SystemExit) as raised:
        load_bench.run_load(config)

    assert "run `make install`, or `npm ci` in client/web" in str(raised.value)
    assert list(tmp_path.iterdir()) == []


def test_node_client_without_node_names_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    config = load_bench.LoadConfig(socket_client="node", results=tmp_path)

    with pytest.raises(SystemExit) as raised:
        load_bench.run_load(config)

    assert str(raised.value) == "--socket-client node needs Node.js 18 or newer on PATH"
