"""Live run-set membership over the live socket: members, then runs entering and leaving."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

import assay
from assay import protocol
from conftest import RunningServer

PROJECT = "live-sets"


class WatchClient:
    def __init__(self, server: RunningServer) -> None:
        url = server.url.replace("http://", "ws://") + f"/api/v1/projects/{PROJECT}/live"
        headers = {"Authorization": f"Bearer {server.api_key}"}
        self.socket: ClientConnection = connect(url, additional_headers=headers, legacy=True)

    def send(self, message: dict[str, Any]) -> None:
        self.socket.send(protocol.pack(message))

    def watch(self, runsets: Any) -> dict[str, Any]:
        self.send({"type": "watch", "runsets": runsets})
        return self.receive("members", "error")

    def receive(self, *types: str, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            frame = self.socket.recv(timeout=max(0.01, deadline - time.monotonic()))
            message = protocol.unpack(frame)  # type: ignore[arg-type]
            if message["type"] in types:
                return message

    def changes_until(self, runset_id: str, change: str, run_id: str) -> list[dict[str, Any]]:
        """Return the membership messages received until ``run_id`` has ``change`` in the set."""
        seen = []
        while True:
            message = self.receive("membership")
            seen.append(message)
            if run_id in message["changes"].get(runset_id, {}).get(change, []):
                return seen


def start_run(server: RunningServer, tmp_path: Path, run_id: str, **kwargs: Any) -> assay.Run:
    return assay.init(
        PROJECT,
        id=run_id,
        server=server.url,
        api_key=server.api_key,
        spool_dir=tmp_path,
        settings=assay.SenderOptions(flush_interval=0.01),
        **kwargs,
    )


@pytest.fixture
def watcher(server: RunningServer, tmp_path: Path) -> Iterator[WatchClient]:
    start_run(server, tmp_path, "existing", config={"lr": 0.1}).finish()
    client = WatchClient(server)
    yield client
    client.socket.close()


def test_members_then_run_moves_between_sets(
    server: RunningServer, tmp_path: Path, watcher: WatchClient
) -> None:
    members = watcher.watch(
        {
            "diverged": "summary.loss is nan or summary.loss is inf",
            "healthy": "summary.loss is finite",
            "all": "",
        }
    )
    run = start_run(server, tmp_path, "moving", config={"lr": 1.0})
    run.log({"loss": 0.5})
    entered_healthy = watcher.changes_until("healthy", "entered", "moving")
    run.log({"loss": math.inf})
    left_healthy = watcher.changes_until("healthy", "left", "moving")
    run.finish()

    assert members == {
        "type": "members",
        "runsets": {"diverged": [], "healthy": [], "all": ["existing"]},
        "errors": {},
    }
    created = entered_healthy[0]["changes"]
    assert created["all"] == {"entered": ["moving"], "left": []}
    assert entered_healthy[-1]["changes"]["healthy"] == {"entered": ["moving"], "left": []}
    assert left_healthy[-1]["changes"]["diverged"] == {"entered": ["moving"], "left": []}


def test_config_change_moves_run(
    server: RunningServer, tmp_path: Path, watcher: WatchClient
) -> None:
    members = watcher.watch({"big": "config.lr >= 0.5"})
    run = start_run(server, tmp_path, "tuned", config={"lr": 0.1})
    run.config["lr"] = 0.9
    entered = watcher.changes_until("big", "entered", "tuned")
    run.finish()

    assert members["runsets"] == {"big": []}
    assert entered[-1]["changes"] == {"big": {"entered": ["tuned"], "left": []}}


def test_state_change_moves_run(
    server: RunningServer, tmp_path: Path, watcher: WatchClient
) -> None:
    watcher.watch({"failed": "state = failed"})
    run = start_run(server, tmp_path, "failing")
    run.finish(exit_code=3)

    entered = watcher.changes_until("failed", "entered", "failing")

    assert entered[-1]["changes"] == {"failed": {"entered": ["failing"], "left": []}}


def test_statistics_filter_follows_logged_nan(
    server: RunningServer, tmp_path: Path, watcher: WatchClient
) -> None:
    watcher.watch({"had-nan": "summary.loss.has_nan = true"})
    run = start_run(server, tmp_path, "recovering")
    run.log({"loss": math.nan})
    run.log({"loss": 0.3})

    entered = watcher.changes_until("had-nan", "entered", "recovering")
    run.finish()

    assert entered[-1]["changes"]["had-nan"]["entered"] == ["recovering"]


def test_invalid_filter_reported_per_runset(watcher: WatchClient) -> None:
    members = watcher.watch({"good": "state = finished", "bad": "summary.loss is nann"})

    assert members["runsets"] == {"good": ["existing"]}
    assert members["errors"]["bad"]["code"] == "invalid_filter"
    assert members["errors"]["bad"]["column"] == 17
    assert "at column 17" in members["errors"]["bad"]["message"]


@pytest.mark.parametrize("runsets", [["x"], {"a": 1}, None, {str(i): "" for i in range(101)}])
def test_malformed_watch_is_error(watcher: WatchClient, runsets: Any) -> None:
    reply = watcher.watch(runsets)

    assert reply["type"] == "error"
    assert reply["code"] == "invalid_watch"


def test_new_watch_replaces_old(
    server: RunningServer, tmp_path: Path, watcher: WatchClient
) -> None:
    watcher.watch({"old": "state = running"})
    members = watcher.watch({"new": "state = failed"})
    start_run(server, tmp_path, "bad").finish(exit_code=1)

    message = watcher.receive("membership")

    assert members["runsets"] == {"new": []}
    assert message["changes"] == {"new": {"entered": ["bad"], "left": []}}


def test_two_sockets_share_a_filter(
    server: RunningServer, tmp_path: Path, watcher: WatchClient
) -> None:
    other = WatchClient(server)
    watcher.watch({"a": "state = failed"})
    other.watch({"b": "state  =  failed"})
    engine = server.app.state.membership
    project = next(iter(engine.projects.values()))
    start_run(server, tmp_path, "bad").finish(exit_code=1)

    mine = watcher.receive("membership")
    theirs = other.receive("membership")
    other.socket.close()

    assert list(project.filters) == ['state = "failed"']
    assert mine["changes"] == {"a": {"entered": ["bad"], "left": []}}
    assert theirs["changes"] == {"b": {"entered": ["bad"], "left": []}}
