"""SIGTERM: no new connections, batches and report edits stored, sockets closed with 1012."""

from __future__ import annotations

import dataclasses
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from websockets.exceptions import ConnectionClosed

import assay
from assay_server.settings import Settings
from conftest import answers
from deploy.deploy_support import (
    FAST_RETRY,
    LiveSocket,
    ReportEditor,
    create_report,
    metric_count,
    wait_until,
    yjs_url,
)

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


def sdk_messages(caplog: pytest.LogCaptureFixture) -> str:
    return " ".join(record.getMessage() for record in caplog.records if record.name == "assay")


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
        # The server is still running, held by the batch that waits for the lock.
        accepts_while_draining = answers("127.0.0.1", process.port)
        still_running = process.process.poll() is None
        # Stall the SDK's thread, which waits for the run's buffer lock, with a
        # point in the buffer. It resumes after the server has exited, so it
        # sends a new batch to a closed socket before it reads the acks and
        # the close frame waiting in its buffer, as a thread that lags on a
        # loaded machine does.
        log_point()
        run._lock.acquire()
        try:
            time.sleep(0.3)  # longer than a pass of the SDK's loop
            blocker.rollback()
            process.process.wait(30)
        finally:
            run._lock.release()
    shutdown_seconds = time.monotonic() - started
    wait_until(lambda: "lost its connection" in sdk_messages(caplog), timeout=10)
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
    sdk_warnings = sdk_messages(caplog)

    assert shutdown_seconds < 10
    assert still_running
    assert not accepts_while_draining
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


def report_rows(database_url: str, report_id: str) -> int:
    with psycopg.connect(database_url) as connection:
        row = connection.execute(
            "SELECT count(*) FROM report_updates WHERE report_id = %s", (report_id,)
        ).fetchone()
        assert row is not None
        return int(row[0])


def report_texts(server_url: str, api_key: str, report_id: str) -> list[str]:
    response = httpx.get(
        f"{server_url}/api/v1/projects/drain/reports/{report_id}",
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return [block["text"] for block in response.json()["content"]["blocks"]]


def test_sigterm_writes_report_edits(
    postgres_settings: Settings,
    server_process: Any,
    report_editors: Callable[[str, str, str], ReportEditor],
    tmp_path: Path,
) -> None:
    # A flush interval longer than the test leaves the shutdown as the only write.
    settings = dataclasses.replace(postgres_settings, report_flush_interval=3600)
    database_url = str(settings.database_url)
    api_key = str(settings.bootstrap_api_key)
    process = server_process(settings)
    process.start()
    report_id = create_report(process.url, api_key, "drain", tmp_path / "first")
    editor = report_editors(yjs_url(process.url), report_id, api_key)
    editor.wait_for(lambda client: client.syncs == 1, "first sync")
    editor.add_block("written before SIGTERM")
    wait_until(
        lambda: report_texts(process.url, api_key, report_id) == ["written before SIGTERM"],
        timeout=10,
    )
    rows_before = report_rows(database_url, report_id)

    started = time.monotonic()
    process.process.send_signal(signal.SIGTERM)
    editor.wait_for(lambda client: len(client.close_codes) > 0, "close frame", timeout=10)
    process.process.wait(30)
    shutdown_seconds = time.monotonic() - started
    rows_after = report_rows(database_url, report_id)
    # Without its client, the report can only come back from the database.
    editor.close()
    process.start()
    texts = report_texts(process.url, api_key, report_id)

    assert shutdown_seconds < 10
    assert editor.close_codes[0] == 1012
    # The title's row, written when the report was created.
    assert rows_before == 1
    assert rows_after == 2
    assert texts == ["written before SIGTERM"]
