"""SIGTERM: in-flight batches are committed and acknowledged, sockets close with 1012."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from websockets.exceptions import ConnectionClosed

import assay
from assay_server.settings import Settings
from deploy.deploy_support import FAST_RETRY, LiveSocket, metric_count, wait_until

POINTS = 20_000
SIGNAL_AT = 10_000


def stored_batches(database_url: str, run_id: str) -> set[int]:
    with psycopg.connect(database_url) as connection:
        rows = connection.execute(
            "SELECT b.seq FROM batches b JOIN runs r ON r.pk = b.run_pk WHERE r.run_id = %s",
            (run_id,),
        )
        return {int(row[0]) for row in rows}


def waiting_for_lock(connection: psycopg.Connection[Any]) -> bool:
    row = connection.execute(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    ).fetchone()
    return row is not None and row[0] > 0


def test_sigterm_mid_stream_loses_nothing(
    postgres_settings: Settings,
    server_process: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    database_url = str(postgres_settings.database_url)
    api_key = str(postgres_settings.bootstrap_api_key)
    process = server_process(postgres_settings)
    process.start()
    run = assay.init(
        "drain", server=process.url, api_key=api_key, spool_dir=tmp_path, settings=FAST_RETRY
    )
    logged = 0

    def log_point() -> None:
        nonlocal logged
        run.log({"loss": logged * 1e-3})
        logged += 1

    while logged < SIGNAL_AT:
        log_point()
        if logged % 250 == 0:
            time.sleep(0.005)  # paces the producer so that batches are in flight
    # Hold the server inside a batch's transaction: its insert into batches
    # waits for this lock while SIGTERM arrives, so that batch is in flight.
    with (
        psycopg.connect(database_url) as blocker,
        psycopg.connect(database_url, autocommit=True) as observer,
    ):
        blocker.execute("LOCK TABLE batches IN SHARE ROW EXCLUSIVE MODE")

        def next_batch_waits() -> bool:
            log_point()
            return waiting_for_lock(observer)

        wait_until(next_batch_waits, timeout=30)
        started = time.monotonic()
        process.process.send_signal(signal.SIGTERM)
        wait_until(lambda: "stopping: no new connections" in process.log_path.read_text(), 10)
        blocker.rollback()
    process.process.wait(30)
    shutdown_seconds = time.monotonic() - started
    # No server runs now, so no batch can be acknowledged until the restart.
    unacked_after_exit = set(run._sender.unacked)
    stored_at_exit = stored_batches(database_url, run.id)
    process.start()
    while logged < POINTS:
        log_point()
    run.finish(timeout=120)

    count = metric_count(process.url, api_key, "drain", run.id, "loss")
    with assay.Api(server=process.url, api_key=api_key) as api:
        steps = [row["step"] for row in api.run("drain", run.id).history(keys=["loss"])]
    sdk_warnings = " ".join(r.getMessage() for r in caplog.records if r.name == "assay")

    assert shutdown_seconds < 10
    # The last batch stored is the one that waited for the lock: it was acknowledged.
    assert max(stored_at_exit) not in unacked_after_exit
    assert stored_at_exit & unacked_after_exit == set()
    assert "received 1012" in sdk_warnings
    assert count == POINTS
    assert steps == list(range(POINTS))
    assert run.state == "finished"


def test_idle_server_stops_at_once(postgres_settings: Settings, server_process: Any) -> None:
    process = server_process(postgres_settings)
    process.start()

    started = time.monotonic()
    process.process.send_signal(signal.SIGTERM)
    process.process.wait(30)
    seconds = time.monotonic() - started

    assert seconds < 3
    assert "stopped in" in process.log_path.read_text()


def test_sigterm_closes_live_socket(
    postgres_settings: Settings, server_process: Any, tmp_path: Path
) -> None:
    api_key = str(postgres_settings.bootstrap_api_key)
    process = server_process(postgres_settings)
    process.start()
    assay.init("drain", server=process.url, api_key=api_key, spool_dir=tmp_path).finish()
    live = LiveSocket(process.url, "drain", api_key)
    subscribed = live.subscribe()

    process.process.send_signal(signal.SIGTERM)
    with pytest.raises(ConnectionClosed) as closed:
        live.socket.recv(timeout=10)
    process.process.wait(30)

    assert subscribed["type"] == "subscribed"
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1012
