"""Three server instances behind nginx, on one PostgreSQL and one Redis."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import assay
from assay_server.settings import Settings
from deploy.conftest import Cluster, PrivatePostgres, PrivateRedis
from deploy.deploy_support import (
    FAST_RETRY,
    LiveSocket,
    ReportEditor,
    create_report,
    metric_count,
    metric_value,
    open_sockets,
    wait_until,
    yjs_url,
)

PROJECT = "cluster"
RUNS = 6


def start_runs(cluster: Cluster, tmp_path: Path) -> list[assay.Run]:
    runs = [
        assay.init(
            PROJECT,
            server=cluster.url,
            api_key=cluster.api_key,
            spool_dir=tmp_path / f"spool-{index}",
            settings=FAST_RETRY,
        )
        for index in range(RUNS)
    ]
    wait_until(lambda: ingest_sockets(cluster) == [RUNS], timeout=30)
    return runs


def ingest_sockets(cluster: Cluster, per_instance: bool = False) -> list[float]:
    counts = [open_sockets(server.url).get("ingest", 0.0) for server in cluster.servers]
    return counts if per_instance else [sum(counts)]


def test_live_view_sees_every_instance(cluster: Cluster, tmp_path: Path) -> None:
    steps = 30
    # A live socket watches an existing project.
    assay.init(
        PROJECT, server=cluster.url, api_key=cluster.api_key, spool_dir=tmp_path / "first"
    ).finish()
    live = LiveSocket(cluster.url, PROJECT, cluster.api_key)
    subscribed = live.subscribe()
    runs = start_runs(cluster, tmp_path)
    live_counts = [open_sockets(server.url).get("live", 0.0) for server in cluster.servers]
    ingest_counts = ingest_sockets(cluster, per_instance=True)
    watching = live_counts.index(1.0)
    for step in range(steps):
        for run in runs:
            run.log({"x": float(step)})
    for run in runs:
        run.finish(timeout=60)
    live.gather("x", lambda: all(len(live.steps.get(r.id, [])) >= steps for r in runs), 30)
    live.close()

    assert subscribed["type"] == "subscribed"
    assert sorted(live_counts) == [0.0, 0.0, 1.0]
    # Runs whose ingest socket is on an instance that does not serve the live socket.
    assert sum(ingest_counts) - ingest_counts[watching] >= 1
    for run in runs:
        assert live.steps[run.id] == list(range(steps)), run.id


def test_sigkill_instance_loses_no_point(
    cluster: Cluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="assay")
    points = 4000
    runs = start_runs(cluster, tmp_path)
    counts = ingest_sockets(cluster, per_instance=True)
    victim = cluster.servers[counts.index(max(counts))]
    in_flight_at_kill = 0
    for step in range(points):
        for run in runs:
            run.log({"loss": step * 1e-3, "acc": 1 - step * 1e-5})
        if step % 100 == 99:
            time.sleep(0.005)  # paces the producer so that batches are in flight
        if step >= points // 2 and not in_flight_at_kill:
            # Kill at the first moment some batch waits for its ack.
            in_flight_at_kill = sum(len(run._sender.unacked) for run in runs)
            if in_flight_at_kill:
                victim.kill()
    for run in runs:
        run.finish(timeout=120)
    reconnected = {
        run.id
        for run in runs
        for record in caplog.records
        if record.name == "assay" and f"run {run.id} lost its connection" in record.getMessage()
    }

    assert max(counts) >= 1
    # Exactly the runs whose socket was on the killed instance lost their connection.
    assert len(reconnected) == max(counts)
    assert in_flight_at_kill > 0
    assert victim.process is not None and victim.process.poll() is not None
    for run in runs:
        assert run.state == "finished", run.id
        for key in ("loss", "acc"):
            stored = metric_count(cluster.url, cluster.api_key, PROJECT, run.id, key)
            assert stored == points, f"{run.id} {key}"


def test_runset_membership_follows_other_instance(cluster: Cluster, tmp_path: Path) -> None:
    assay.init(
        PROJECT, server=cluster.url, api_key=cluster.api_key, spool_dir=tmp_path / "first"
    ).finish()
    run = assay.init(
        PROJECT,
        server=cluster.url,
        api_key=cluster.api_key,
        spool_dir=tmp_path / "moving",
        settings=FAST_RETRY,
    )
    wait_until(lambda: ingest_sockets(cluster) == [1.0], timeout=30)
    ingest_counts = ingest_sockets(cluster, per_instance=True)
    # The watch is on an instance other than the one serving the run's ingest socket.
    watching = cluster.servers[(ingest_counts.index(1.0) + 1) % len(cluster.servers)]
    live = LiveSocket(watching.url, PROJECT, cluster.api_key)
    members = live.watch(
        {
            "healthy": "summary.loss is finite",
            "diverged": "summary.loss is nan",
            "exploded": "summary.loss is inf",
        }
    )
    run.log({"loss": 0.5})
    entered = live.next_of("membership")
    run.log({"loss": math.nan})
    moved = live.next_of("membership")
    evaluations = {
        mode: [
            metric_value(server.url, "assay_runset_evaluations_total", mode=mode)
            for server in cluster.servers
        ]
        for mode in ("initial", "incremental")
    }
    run.finish(timeout=60)
    live.close()

    assert members["runsets"] == {"healthy": [], "diverged": [], "exploded": []}
    assert entered["changes"] == {"healthy": {"entered": [run.id], "left": []}}
    # A single event moves the run from one set to the other, and NaN is not +Inf.
    assert moved["changes"] == {
        "healthy": {"entered": [], "left": [run.id]},
        "diverged": {"entered": [run.id], "left": []},
    }
    # Only the watching instance evaluates filters: each of the three once
    # over the project, then all three for each of at least two run events.
    watched = cluster.servers.index(watching)
    assert evaluations["initial"][watched] == 3
    assert evaluations["incremental"][watched] >= 2 * 3
    assert evaluations["incremental"][watched] % 3 == 0
    for mode, counts in evaluations.items():
        assert sum(counts) == counts[watched], mode


def report_sockets(cluster: Cluster) -> list[float]:
    return [open_sockets(server.url).get("report", 0.0) for server in cluster.servers]


def report_sockets_alive(cluster: Cluster, dead: int) -> list[float]:
    """Return the report sockets of every instance but ``dead``, once they add up to three."""
    alive = [server for index, server in enumerate(cluster.servers) if index != dead]

    def counts() -> list[float]:
        return [open_sockets(server.url).get("report", 0.0) for server in alive]

    wait_until(lambda: sum(counts()) == 3.0, timeout=10, describe=lambda: str(counts()))
    return counts()


def test_report_edits_reach_every_instance(
    cluster: Cluster, tmp_path: Path, report_editors: Callable[[str, str, str], ReportEditor]
) -> None:
    report_id = create_report(cluster.url, cluster.api_key, PROJECT, tmp_path / "first")
    editor = report_editors(yjs_url(cluster.url), report_id, cluster.api_key)
    editor.wait_for(lambda client: client.syncs == 1, "first sync")
    before_kill = report_sockets(cluster)
    victim = before_kill.index(1.0)
    # One client on each instance that the editor is not on, connected directly.
    readers = [
        report_editors(yjs_url(server.url), report_id, cluster.api_key)
        for index, server in enumerate(cluster.servers)
        if index != victim
    ]
    for reader in readers:
        reader.wait_for(lambda client: client.syncs == 1, "first sync")

    editor.add_block("written before the kill")
    for reader in readers:
        reader.wait_for(
            lambda client: client.texts == ["written before the kill"], "the first edit"
        )
    rooms = [metric_value(server.url, "assay_open_reports") for server in cluster.servers]
    cluster.servers[victim].kill()
    editor.wait_for(lambda client: client.syncs == 2, "sync after the kill", timeout=30)
    after_kill = report_sockets_alive(cluster, victim)
    editor.add_block("written after the kill")
    readers[0].add_block("written on a surviving instance")
    everything = [
        "written before the kill",
        "written after the kill",
        "written on a surviving instance",
    ]
    for client in (editor, *readers):
        client.wait_for(lambda found: sorted(found.texts) == sorted(everything), "every edit")
    read_back = httpx.get(
        f"{cluster.url}/api/v1/projects/{PROJECT}/reports/{report_id}",
        headers={"Authorization": f"Bearer {cluster.api_key}"},
        timeout=10,
    )

    assert sorted(before_kill) == [0.0, 0.0, 1.0]
    # Every instance has the report's room loaded, once.
    assert rooms == [1.0, 1.0, 1.0]
    # The editor came back through nginx, onto one of the two other instances.
    assert sorted(after_kill) == [1.0, 2.0]
    assert editor.texts == readers[0].texts == readers[1].texts
    assert read_back.status_code == 200
    blocks = read_back.json()["content"]["blocks"]
    assert sorted(block["text"] for block in blocks) == sorted(everything)


def readyz(server_url: str) -> httpx.Response:
    return httpx.get(server_url + "/readyz", timeout=10)


def test_readyz_follows_postgres_outage(
    private_postgres: PrivatePostgres, private_postgres_settings: Settings, server_process: Any
) -> None:
    process = server_process(private_postgres_settings)
    process.start()
    before = readyz(process.url)

    private_postgres.stop()
    wait_until(lambda: readyz(process.url).status_code == 503, timeout=30)
    during = readyz(process.url)
    alive = httpx.get(process.url + "/healthz", timeout=10)
    # Any other request that needs the database fails with the API's JSON error.
    failed = httpx.get(
        process.url + "/api/v1/projects",
        headers={"Authorization": f"Bearer {private_postgres_settings.bootstrap_api_key}"},
        timeout=10,
    )
    internal_errors = metric_value(process.url, "assay_errors_total", kind="internal")
    private_postgres.start()
    wait_until(lambda: readyz(process.url).status_code == 200, timeout=30)
    after = readyz(process.url)

    assert before.status_code == 200
    assert during.status_code == 503
    assert during.json()["database"] == "unreachable"
    assert during.json()["bus"] == "ok"
    # Liveness ignores the database, so that an outage does not restart every instance.
    assert alive.status_code == 200
    assert alive.json() == {"status": "ok"}
    assert failed.status_code == 500
    assert failed.json()["error"]["code"] == "internal"
    assert internal_errors == 1
    assert after.json() == {"status": "ready", "database": "ok", "bus": "ok"}


def test_redis_loss_keeps_stored_points(
    postgres_settings: Settings, private_redis: PrivateRedis, server_process: Any, tmp_path: Path
) -> None:
    settings = dataclasses.replace(postgres_settings, redis_url=private_redis.url)
    process = server_process(settings)
    process.start()
    api_key = str(settings.bootstrap_api_key)
    run = assay.init(
        PROJECT, server=process.url, api_key=api_key, spool_dir=tmp_path, settings=FAST_RETRY
    )

    def log_steps(first: int, last: int) -> None:
        for step in range(first, last):
            run.log({"x": float(step)}, step=step)
        wait_until(lambda: metric_count(process.url, api_key, PROJECT, run.id, "x") == last, 60)

    log_steps(0, 100)
    live = LiveSocket(process.url, PROJECT, api_key)
    live.subscribe()
    private_redis.stop()
    log_steps(100, 200)
    during = readyz(process.url)
    resync = live.next_of("resync")
    private_redis.start()
    wait_until(lambda: readyz(process.url).status_code == 200, timeout=30)
    live.subscribe()
    log_steps(200, 300)
    run.finish(timeout=60)
    live.gather("x", lambda: 299 in live.steps.get(run.id, []), timeout=30)
    live.close()

    assert during.status_code == 503
    assert during.json()["bus"] == "unreachable"
    assert metric_count(process.url, api_key, PROJECT, run.id, "x") == 300
    assert run.state == "finished"
    # The open live socket is told that it missed entries, and after it
    # subscribes again it receives the points logged once Redis returned.
    assert "unreachable" in resync["reason"]
    assert set(range(200, 300)) <= set(live.steps[run.id])
