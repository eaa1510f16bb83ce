"""Run sets "diverged" and "healthy" over the example sweep, live and through the read API.

The grid is learning rates 0.1 and 1.5 by batch sizes 8, 16 and 64 for three
epochs, which takes seconds. With the sweep's default seed, exactly the two
lr=1.5 runs with batch sizes 8 and 16 overflow: their training loss is
logged as +inf once and as NaN from then on.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

import assay
from assay import protocol
from conftest import ROOT, RunningServer

PROJECT = "demo-sweep"
DIVERGED = "summary.train/loss.has_nan = true or summary.train/loss.has_inf = true"
HEALTHY = f"not ({DIVERGED})"


class Watcher:
    """A live socket watching run sets, recording every membership change it receives."""

    def __init__(self, server: RunningServer) -> None:
        url = server.url.replace("http://", "ws://") + f"/api/v1/projects/{PROJECT}/live"
        headers = {"Authorization": f"Bearer {server.api_key}"}
        self.socket: ClientConnection = connect(url, additional_headers=headers, legacy=True)
        self.members: dict[str, set[str]] = {}
        #: (run set id, "entered" or "left", run id), in the order received.
        self.changes: list[tuple[str, str, str]] = []

    def watch(self, runsets: dict[str, str]) -> None:
        self.socket.send(protocol.pack({"type": "watch", "runsets": runsets}))
        while True:
            message = self.next_message(20)
            if message is not None and message["type"] == "members":
                self.members = {key: set(value) for key, value in message["runsets"].items()}
                return

    def next_message(self, timeout: float) -> dict[str, Any] | None:
        try:
            frame = self.socket.recv(timeout=timeout)
        except TimeoutError:
            return None
        message = protocol.unpack(frame)  # type: ignore[arg-type]
        if message["type"] == "membership":
            for runset_id, change in message["changes"].items():
                for run_id in change["entered"]:
                    self.changes.append((runset_id, "entered", run_id))
                    self.members[runset_id].add(run_id)
                for run_id in change["left"]:
                    self.changes.append((runset_id, "left", run_id))
                    self.members[runset_id].discard(run_id)
        return message

    def drain_until(self, done: Any, timeout: float) -> None:
        """Read messages until ``done()`` holds or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            self.next_message(max(0.01, min(0.5, deadline - time.monotonic())))


@pytest.fixture
def project(server: RunningServer, tmp_path: Path) -> Iterator[httpx.Client]:
    # The project must exist before run sets can be stored in it.
    assay.init(
        PROJECT, id="warm-up", server=server.url, api_key=server.api_key, spool_dir=tmp_path
    ).finish()
    with server.client() as client:
        yield client


def create_runset(client: httpx.Client, name: str, text: str) -> str:
    response = client.post(
        f"/api/v1/projects/{PROJECT}/runsets", json={"name": name, "filter": text}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def run_sweep(server: RunningServer, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ASSAY_SERVER": server.url,
        "ASSAY_API_KEY": server.api_key,
        "ASSAY_SPOOL_DIR": str(tmp_path),
    }
    arguments = ["--lrs", "0.1", "1.5", "--batch-sizes", "8", "16", "64", "--epochs", "3"]
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / "sweep.py"), *arguments],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_diverged_set_follows_sweep_live(
    server: RunningServer, project: httpx.Client, tmp_path: Path
) -> None:
    diverged_id = create_runset(project, "diverged", DIVERGED)
    healthy_id = create_runset(project, "healthy", HEALTHY)
    watcher = Watcher(server)
    watcher.watch({diverged_id: DIVERGED, healthy_id: HEALTHY})

    result = run_sweep(server, tmp_path)
    with assay.Api(server=server.url, api_key=server.api_key) as api:
        runs = {run.id: run for run in api.runs(PROJECT) if run.id != "warm-up"}
        reached = {
            run_id
            for run_id, run in runs.items()
            if any(
                value is not None and not math.isfinite(value)
                for value in (row["train/loss"] for row in run.history(keys=["train/loss"]))
            )
        }
        selected = {run.id for run in api.runs(PROJECT, filter=DIVERGED)}
        last_nan_or_null = {
            run.id
            for run in api.runs(
                PROJECT, filter="summary.train/loss is nan or summary.train/loss is null"
            )
        }
    watcher.drain_until(lambda: watcher.members[diverged_id] == reached, timeout=30)
    watcher.socket.close()

    assert result.returncode == 0, result.stderr
    assert len(runs) == 6
    assert {runs[run_id].name for run_id in reached} == {"lr=1.5,bs=8", "lr=1.5,bs=16"}
    assert selected == reached
    # The warm-up run never logged a loss, and a missing value is null.
    assert last_nan_or_null == reached | {"warm-up"}
    assert watcher.members[diverged_id] == reached
    assert watcher.members[healthy_id] == set(runs) - reached | {"warm-up"}
    for run_id in reached:
        # Each diverging run was first healthy, then moved while the socket watched.
        assert (healthy_id, "entered", run_id) in watcher.changes
        assert watcher.changes.index((healthy_id, "entered", run_id)) < watcher.changes.index(
            (diverged_id, "entered", run_id)
        )
        assert (healthy_id, "left", run_id) in watcher.changes
