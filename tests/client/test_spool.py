"""Offline runs, spooling while the server is away, and ``assay sync``."""

from __future__ import annotations

import logging
import math
import socket
import threading
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest

import assay
from assay._cli import main as assay_cli
from assay_server.settings import Settings
from conftest import RunningServer
from proxy import CuttingProxy


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def history(server: RunningServer, project: str, run_id: str) -> tuple[str, list[dict[str, Any]]]:
    with assay.Api(server=server.url, api_key=server.api_key) as api:
        run = api.run(project, run_id)
        return run.state, run.history()


def sync(path: Path, server: RunningServer) -> int:
    return assay_cli(["sync", str(path), "--server", server.url, "--api-key", server.api_key])


def test_offline_run_syncs_later(sqlite_server: RunningServer, tmp_path: Path) -> None:
    run = assay.init("offline", mode="offline", spool_dir=tmp_path, config={"lr": 0.1})
    for value in [1.0, math.nan, None]:
        run.log({"loss": value})
    run.summary["note"] = "done"
    before_finish = time.time()
    run.finish()
    after_finish = time.time()
    spooled = sorted(path.name for path in run.spool.directory.iterdir())

    exit_code = sync(tmp_path, sqlite_server)
    state, rows = history(sqlite_server, "offline", run.id)
    with assay.Api(server=sqlite_server.url, api_key=sqlite_server.api_key) as api:
        finished_at = api.run("offline", run.id).finished_at

    assert spooled == ["000000000000.batch", "finish.msgpack", "run.msgpack"]
    assert exit_code == 0
    assert state == "finished"
    assert finished_at is not None
    assert before_finish <= finished_at <= after_finish, (
        "the end time is the sync's, not the run's"
    )
    assert [row["step"] for row in rows] == [0, 1, 2]
    assert math.isnan(rows[1]["loss"])
    assert rows[2]["loss"] is None
    assert not run.spool.directory.exists()


def test_finish_saved_without_end_time_syncs(sqlite_server: RunningServer, tmp_path: Path) -> None:
    run = assay.init("offline", mode="offline", spool_dir=tmp_path)
    run.log({"loss": 1.0})
    run.finish(exit_code=2)
    # Spools written before the end time was saved contain only the exit code.
    (run.spool.directory / "finish.msgpack").write_bytes(msgpack.packb({"exit_code": 2}))
    before_sync = time.time()

    assert sync(tmp_path, sqlite_server) == 0
    with assay.Api(server=sqlite_server.url, api_key=sqlite_server.api_key) as api:
        stored = api.run("offline", run.id)

    assert stored.state == "failed"
    assert stored.exit_code == 2
    assert stored.finished_at is not None and stored.finished_at >= before_sync


@pytest.mark.parametrize("content", [b"", b"\x93garbage", msgpack.packb([1, 2])])
def test_unreadable_hello_fails_one_line(
    content: bytes,
    sqlite_server: RunningServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = assay.init("offline", mode="offline", spool_dir=tmp_path)
    run.log({"loss": 1.0})
    run.finish()
    (run.spool.directory / "run.msgpack").write_bytes(content)

    exit_code = sync(tmp_path, sqlite_server)
    output = capsys.readouterr()
    with assay.Api(server=sqlite_server.url, api_key=sqlite_server.api_key) as api:
        projects = [project["name"] for project in api.projects()]

    assert exit_code == 1
    assert "Traceback" not in output.err
    assert f"cannot read {run.spool.directory / 'run.msgpack'}" in output.out
    assert "the spool cannot be uploaded without it" in output.out
    assert len(run.spool.batch_files()) == 1
    assert "offline" not in projects, "the run was created from an unreadable hello"


def test_unreadable_batch_kept_rest_uploaded(
    sqlite_server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = assay.init(
        "offline",
        mode="offline",
        spool_dir=tmp_path,
        settings=assay.SenderOptions(batch_rows=1),
    )
    for step in range(3):
        run.log({"loss": float(step)})
    run.finish()
    damaged = run.spool.batch_files()[1]
    damaged.write_bytes(damaged.read_bytes()[:5])
    started = time.monotonic()

    exit_code = sync(tmp_path, sqlite_server)
    took = time.monotonic() - started
    output = capsys.readouterr().out
    state, rows = history(sqlite_server, "offline", run.id)
    with assay.Api(server=sqlite_server.url, api_key=sqlite_server.api_key) as api:
        projects = [project["name"] for project in api.projects()]

    assert "offline" in projects
    assert exit_code == 1
    assert f"{damaged.name}: frame is not valid msgpack" in output
    assert "1 batch files are unreadable and were kept, with the finish" in output
    assert took < 30
    assert [row["step"] for row in rows] == [0, 2]
    assert state == "running"
    assert run.spool.batch_files() == [damaged]
    assert (run.spool.directory / "finish.msgpack").exists()


def test_sync_twice_stores_points_once(sqlite_server: RunningServer, tmp_path: Path) -> None:
    run = assay.init("offline", mode="offline", spool_dir=tmp_path)
    run.log({"loss": 1.0})
    run.finish()
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in run.spool.directory.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())

    assert sync(run.spool.directory, sqlite_server) == 0
    assert sync(copy, sqlite_server) == 0
    with assay.Api(server=sqlite_server.url, api_key=sqlite_server.api_key) as api:
        stats = api.run("offline", run.id).metrics()

    assert stats["loss"]["count"] == 1


def test_unreachable_server_spools_at_finish(
    sqlite_server: RunningServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = assay.init(
        "away",
        server=f"http://127.0.0.1:{closed_port()}",
        api_key=sqlite_server.api_key,
        spool_dir=tmp_path,
        init_timeout=1,
    )
    for step in range(100):
        run.log({"loss": float(step)})
    run.finish(timeout=0.5)

    assert "assay sync" in caplog.text
    assert sync(tmp_path, sqlite_server) == 0
    state, rows = history(sqlite_server, "away", run.id)
    assert state == "finished"
    assert len(rows) == 100


def test_batches_spooled_while_away_are_sent_on_return(
    sqlite_settings: Settings, start_server: Any, tmp_path: Path
) -> None:
    port = closed_port()
    options = assay.SenderOptions(flush_interval=0.02, spool_after=0.1, backoff_max=0.2)
    run = assay.init(
        "away",
        server=f"http://127.0.0.1:{port}",
        api_key=sqlite_settings.bootstrap_api_key,
        spool_dir=tmp_path,
        init_timeout=0.5,
        settings=options,
    )
    for step in range(50):
        run.log({"loss": float(step)})
    wait_for_files(run)
    spooled = len(run.spool.batch_files())

    server = start_server(sqlite_settings, port)
    run.finish(timeout=30)
    state, rows = history(server, "away", run.id)

    assert spooled >= 1
    assert state == "finished"
    assert len(rows) == 50
    assert run.spool.batch_files() == []


def test_sender_survives_many_failed_attempts(
    sqlite_settings: Settings,
    start_server: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # With the default back-off, a thousand attempts take hours of outage, so
    # the test sets tiny delays.
    port = closed_port()
    options = assay.SenderOptions(flush_interval=0.02, backoff_base=1e-5, backoff_max=1e-4)
    run = assay.init(
        "away",
        server=f"http://127.0.0.1:{port}",
        api_key=sqlite_settings.bootstrap_api_key,
        spool_dir=tmp_path,
        init_timeout=0.1,
        settings=options,
    )
    run.log({"loss": 1.0})
    deadline = time.monotonic() + 60
    while run._sender.attempts < 1_500 and run._sender.is_alive():
        assert time.monotonic() < deadline, f"only {run._sender.attempts} attempts in 60 s"
        time.sleep(0.05)
    alive = run._sender.is_alive()

    server = start_server(sqlite_settings, port)
    run.finish(timeout=30)
    state, rows = history(server, "away", run.id)

    assert alive
    assert "failed; retrying" not in caplog.text
    assert state == "finished"
    assert len(rows) == 1


def wait_for_files(run: assay.Run) -> None:
    deadline = time.monotonic() + 10
    while not run.spool.batch_files():
        assert time.monotonic() < deadline, "no batch reached the spool directory"
        time.sleep(0.02)


def assay_messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if (record.name == "assay" or record.name.startswith("assay.")) and record.levelno >= level
    ]


def wait_for_error_log(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Wait until the SDK logs an error, which the sender does after spooling."""
    deadline = time.monotonic() + 20
    while not assay_messages(caplog, logging.ERROR):
        assert time.monotonic() < deadline, "the SDK logged no error"
        time.sleep(0.02)
    return assay_messages(caplog, logging.ERROR)


def test_key_rejected_at_init_names_no_spool(
    sqlite_server: RunningServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="assay")

    with pytest.raises(assay.AuthenticationError, match="invalid or revoked API key"):
        assay.init(
            "rejected", server=sqlite_server.url, api_key="wrong", spool_dir=tmp_path / "spool"
        )
    for thread in threading.enumerate():
        if thread.name.startswith("assay-sender-"):
            thread.join(10)

    assert assay_messages(caplog, logging.WARNING) == []
    assert not any("spool" in message for message in assay_messages(caplog, logging.DEBUG))
    assert not (tmp_path / "spool").exists()


def test_key_rejected_later_keeps_data_in_spool(
    sqlite_settings: Settings,
    start_server: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = closed_port()
    options = assay.SenderOptions(flush_interval=0.02, backoff_base=0.01, backoff_max=0.1)
    run = assay.init(
        "rejected",
        server=f"http://127.0.0.1:{port}",
        api_key="wrong",
        spool_dir=tmp_path,
        init_timeout=0.2,
        settings=options,
    )
    for step in range(10):
        run.log({"loss": float(step)})
    server = start_server(sqlite_settings, port)
    errors = wait_for_error_log(caplog)
    spooled = sorted(path.name for path in run.spool.directory.iterdir())

    for step in range(10, 15):
        run.log({"loss": float(step)})
    run.finish(timeout=5)
    exit_code = sync(tmp_path, server)
    state, rows = history(server, "rejected", run.id)

    assert len(errors) == 1
    assert f"assay server rejected run {run.id}: invalid or revoked API key" in errors[0]
    saved = f"batches that the server has not stored are saved in {run.spool.directory}"
    assert saved in errors[0]
    assert f"`assay sync {run.spool.directory}`" in errors[0]
    assert "run.msgpack" in spooled
    assert any(name.endswith(".batch") for name in spooled)
    assert exit_code == 0
    assert state == "finished"
    assert [row["loss"] for row in rows] == [float(step) for step in range(15)]


def test_key_revoked_mid_run_saves_later_rows(
    sqlite_server: RunningServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with sqlite_server.client() as http:
        created = http.post("/api/v1/me/keys", json={"name": "job"}).json()
    proxy = CuttingProxy(sqlite_server.port)
    options = assay.SenderOptions(flush_interval=0.02, backoff_base=0.01, backoff_max=0.1)
    try:
        run = assay.init(
            "revoked",
            server=proxy.url,
            api_key=created["key"],
            spool_dir=tmp_path,
            settings=options,
        )
        for step in range(3):
            run.log({"loss": float(step)})
        deadline = time.monotonic() + 10
        while run._sender.next_seq == 0 or run._sender.unacked:
            assert time.monotonic() < deadline, "the rows were not acknowledged"
            time.sleep(0.02)
        with sqlite_server.client() as http:
            revoked = http.delete(f"/api/v1/me/keys/{created['id']}")
        # The open connection keeps working after the revocation, so the test
        # cuts it and the sender connects again with the revoked key.
        proxy.cut()
        errors = wait_for_error_log(caplog)
        directory_after_rejection = run.spool.directory.exists()

        for step in range(3, 5):
            run.log({"loss": float(step)})
        run.finish(timeout=5)
    finally:
        proxy.close()
    spooled = {path.suffix for path in run.spool.directory.iterdir()}
    finish_saved = run.spool.read_finish()
    exit_code = sync(tmp_path, sqlite_server)
    state, rows = history(sqlite_server, "revoked", run.id)

    assert revoked.status_code == 200
    assert len(errors) == 1
    assert f"assay server rejected run {run.id}: invalid or revoked API key" in errors[0]
    assert "No logged data was waiting to be sent" in errors[0]
    saved = f"Everything the run logs from now on is saved in {run.spool.directory}"
    assert saved in errors[0]
    assert f"`assay sync {run.spool.directory}`" in errors[0]
    assert not directory_after_rejection
    assert spooled == {".batch", ".msgpack"}
    assert finish_saved == 0
    assert exit_code == 0
    assert state == "finished"
    assert [row["loss"] for row in rows] == [float(step) for step in range(5)]


def join_senders() -> None:
    for thread in threading.enumerate():
        if thread.name.startswith("assay-sender-"):
            thread.join(10)


def test_resume_timeout_leaves_run_unchanged(
    sqlite_server: RunningServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = assay.init(
        "resumed",
        server=sqlite_server.url,
        api_key=sqlite_server.api_key,
        spool_dir=tmp_path / "first",
    )
    for step in range(3):
        first.log({"loss": float(step)})
    first.finish()
    spool_root = tmp_path / "spool"
    spool_root.mkdir()

    with pytest.raises(assay.ConnectionFailedError, match="could not reach the server"):
        assay.init(
            "resumed",
            id=first.id,
            resume="must",
            server=f"http://127.0.0.1:{closed_port()}",
            api_key=sqlite_server.api_key,
            spool_dir=spool_root,
            init_timeout=0.2,
        )
    join_senders()
    warnings = assay_messages(caplog, logging.WARNING)
    spooled = sorted(str(path.relative_to(spool_root)) for path in spool_root.rglob("*"))
    exit_code = sync(spool_root, sqlite_server)
    state_after_sync, rows_after_sync = history(sqlite_server, "resumed", first.id)

    second = assay.init(
        "resumed",
        id=first.id,
        resume="must",
        server=sqlite_server.url,
        api_key=sqlite_server.api_key,
        spool_dir=spool_root,
    )
    for _ in range(2):
        second.log({"loss": 10.0})
    second.finish()
    state, rows = history(sqlite_server, "resumed", first.id)

    assert warnings == []
    assert spooled == []
    assert exit_code == 0
    assert state_after_sync == "finished"
    assert [row["step"] for row in rows_after_sync] == [0, 1, 2]
    assert state == "finished"
    assert [row["step"] for row in rows] == [0, 1, 2, 3, 4]
    assert [row["loss"] for row in rows] == [0.0, 1.0, 2.0, 10.0, 10.0]
