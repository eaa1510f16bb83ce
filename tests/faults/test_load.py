"""The load benchmark in miniature: every live socket receives every point once.

``bench/load.py`` runs 1,000 sockets and 200 runs for 5 minutes. This test
runs 20 sockets and 5 runs for 3 seconds against a server process of its own.
It asserts no errors and no loss, never a speed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import free_port

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import load as load_bench  # noqa: E402
from serving import start_server  # noqa: E402

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
    assert summary["server_cpus"] is None
    assert summary["errors"] == []
    assert summary["error_count"] == 0
    assert summary["server_log_errors"] == 0
    assert summary["points_logged"] > 0
    assert summary["points_delivered"] == summary["points_logged"] * SOCKETS
    assert summary["points_expected"] == summary["points_delivered"]
    # The fan-out runs from the bus append, which comes after the log call.
    assert summary["fanout_ms"]["p50"] >= 0
    assert summary["fanout_ms"]["max"] <= summary["latency_ms"]["max"] + 1
    # Every point measured has both parts: log call to bus append, and on to the socket.
    assert summary["ingest_ms"]["count"] == summary["latency_ms"]["count"]
    assert summary["ingest_ms"]["max"] <= summary["latency_ms"]["max"] + 1
    measured = summary["points_logged"] * summary["latency_ms"]["sockets_measured"]
    assert summary["latency_ms"]["count"] == measured


@pytest.mark.parametrize("socket_client", ["node", "python"])
def test_warmup_leaves_early_points_unmeasured(socket_client: str, tmp_path: Path) -> None:
    config = load_bench.LoadConfig(
        socket_client=socket_client,
        sockets=4,
        runs=2,
        run_processes=1,
        socket_processes=1,
        rate=5,
        seconds=3,
        latency_sockets=2,
        warmup_seconds=1.5,
        port=free_port(),
        results=tmp_path,
    )

    summary: dict[str, Any] = load_bench.run_load(config)

    assert summary["errors"] == []
    assert summary["points_delivered"] == summary["points_logged"] * 4
    # 2 runs log 2 metrics 5 times a second for 3 s: the first 1.5 s are not counted.
    measured = summary["points_logged"] * 2
    assert 0.3 * measured < summary["latency_ms"]["count"] < 0.7 * measured
    assert summary["ingest_ms"]["count"] == summary["latency_ms"]["count"]
    assert summary["latency_ms"]["warmup_seconds"] == 1.5


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs to split")
def test_server_pinned_apart_from_clients(tmp_path: Path) -> None:
    first = min(os.sched_getaffinity(0))
    own = os.sched_getaffinity(0)
    server = start_server(free_port(), "load-key-" + "x" * 24, tmp_path, cpus={first})
    try:
        server_cpus = os.sched_getaffinity(server.pid)
    finally:
        server.terminate()
        server.wait(30)

    assert server_cpus == {first}
    assert load_bench.client_cpus({first}) == own - {first}
    assert os.sched_getaffinity(0) == own


def test_server_that_fails_to_start_keeps_its_log(tmp_path: Path) -> None:
    # A database URL of an unknown kind stops assay serve at once.
    config = load_bench.LoadConfig(
        socket_client="python",
        port=free_port(),
        database_url="mysql://127.0.0.1/none",
        results=tmp_path / "results",
    )

    with pytest.raises(RuntimeError) as raised:
        load_bench.run_load(config)

    [log] = (tmp_path / "results").glob("load-*-server.log")
    assert str(raised.value) == f"assay serve did not start; see {log}"
    assert "ASSAY_DATABASE_URL" in log.read_text()


def test_server_cpus_leaving_no_cpu_rejected() -> None:
    every = os.sched_getaffinity(0)

    with pytest.raises(SystemExit) as raised:
        load_bench.client_cpus(every)

    assert "leaves no CPU for the runs and sockets; name fewer CPUs" in str(raised.value)


def test_server_cpus_outside_machine_rejected() -> None:
    with pytest.raises(SystemExit) as raised:
        load_bench.client_cpus({4096})

    assert "--server-cpus [4096] names CPUs outside the ones this process may use" in str(
        raised.value
    )


def test_cpu_list_names_bad_value() -> None:
    assert load_bench.cpu_list("0,2") == {0, 2}
    with pytest.raises(argparse.ArgumentTypeError) as raised:
        load_bench.cpu_list("first")

    assert str(raised.value) == "'first' is not a list of CPU numbers; write them as 0 or 0,1"


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
