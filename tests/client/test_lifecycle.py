"""Run states set by how the training process ends."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import assay
from assay_server.settings import Settings
from conftest import RunningServer

PROLOGUE = """
import os, signal, sys, assay
run = assay.init("life", id=sys.argv[1], spool_dir=sys.argv[2])
run.log({"loss": 1.0})
"""

ENDINGS = {
    "normal_exit": ("", 0, "finished"),
    "uncaught_exception": ("raise RuntimeError('boom')", 1, "failed"),
    "sys_exit_zero": ("sys.exit(0)", 0, "finished"),
}


def run_child(server: RunningServer, tmp_path: Path, run_id: str, ending: str) -> int:
    script = tmp_path / "child.py"
    script.write_text(PROLOGUE + textwrap.dedent(ending))
    env = {**os.environ, "ASSAY_SERVER": server.url, "ASSAY_API_KEY": server.api_key}
    result = subprocess.run(
        [sys.executable, str(script), run_id, str(tmp_path / "spool")],
        env=env,
        capture_output=True,
        timeout=60,
    )
    return result.returncode


def fetch(server: RunningServer, run_id: str) -> Any:
    with assay.Api(server=server.url, api_key=server.api_key) as api:
        return api.run("life", run_id)


@pytest.mark.parametrize("ending", sorted(ENDINGS))
def test_process_end_sets_run_state(
    ending: str, sqlite_server: RunningServer, tmp_path: Path
) -> None:
    code, expected_exit, expected_state = ENDINGS[ending]

    exit_status = run_child(sqlite_server, tmp_path, ending, code)
    run = fetch(sqlite_server, ending)

    assert exit_status == expected_exit
    assert run.state == expected_state
    assert run.summary["loss"] == 1.0


def test_killed_process_leaves_run_crashed(
    sqlite_settings: Settings, start_server: Any, tmp_path: Path
) -> None:
    settings = dataclasses.replace(sqlite_settings, heartbeat_interval=0.2, crash_timeout=1.0)
    server = start_server(settings)
    ending = """
    import time
    while run._sender.next_seq == 0 or run._sender.unacked:
        time.sleep(0.01)
    os.kill(os.getpid(), signal.SIGKILL)
    """

    exit_status = run_child(server, tmp_path, "killed", ending)
    running = fetch(server, "killed").state
    deadline = time.monotonic() + 20
    while fetch(server, "killed").state == "running":
        assert time.monotonic() < deadline, "the run was never marked crashed"
        time.sleep(0.1)

    assert exit_status == -9
    assert running == "running"
    assert fetch(server, "killed").state == "crashed"


def test_batch_revives_crashed_run(
    sqlite_settings: Settings, start_server: Any, tmp_path: Path
) -> None:
    settings = dataclasses.replace(sqlite_settings, heartbeat_interval=0.2, crash_timeout=1.0)
    server = start_server(settings)
    run = assay.init(
        "life", server=server.url, api_key=server.api_key, spool_dir=tmp_path, id="paused"
    )
    run._sender.heartbeat_interval = 3600.0  # a process stalled without heartbeats
    deadline = time.monotonic() + 20
    while fetch(server, "paused").state != "crashed":
        assert time.monotonic() < deadline, "the run was never marked crashed"
        time.sleep(0.1)

    run.log({"loss": 0.5})
    while fetch(server, "paused").state == "crashed":
        assert time.monotonic() < deadline, "the batch did not revive the run"
        time.sleep(0.05)
    revived = fetch(server, "paused").state
    run.finish()

    assert revived == "running"
    assert fetch(server, "paused").state == "finished"
