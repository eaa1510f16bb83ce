"""The live socket's ``follow``: the server reads a report's run sets and sends their runs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Array, Doc, Map
from websockets.sync.client import ClientConnection, connect

import assay
from assay import protocol
from assay_server.settings import Settings
from conftest import RunningServer, live_messages
from reports.support import PROJECT, YClient, create_report

BIG_LR = "config.lr >= 0.5"


class Follower:
    """A live socket of the reports project that follows one report."""

    def __init__(
        self, server: RunningServer, query: str = "", project: str = PROJECT, **headers: str
    ) -> None:
        url = server.url.replace("http://", "ws://") + f"/api/v1/projects/{project}/live{query}"
        extra = headers or {"Authorization": f"Bearer {server.api_key}"}
        self.socket: ClientConnection = connect(url, additional_headers=extra, legacy=True)

    def follow(self, report_id: Any) -> None:
        self.socket.send(protocol.pack({"type": "follow", "report": report_id}))

    def next(self, wanted: str, timeout: float = 15) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            frame = self.socket.recv(timeout=max(0.01, deadline - time.monotonic()))
            for message in live_messages(frame):
                if message["type"] == wanted:
                    return message

    def runs_until(self, done: Any, timeout: float = 15) -> list[dict[str, Any]]:
        """Return the ``report_runs`` messages received until ``done(message)`` is true."""
        seen = []
        while True:
            message = self.next("report_runs", timeout)
            seen.append(message)
            if done(message):
                return seen


def start_run(server: RunningServer, tmp_path: Path, run_id: str, lr: float) -> assay.Run:
    return assay.init(
        PROJECT,
        id=run_id,
        config={"lr": lr, "seed": 7},
        server=server.url,
        api_key=server.api_key,
        spool_dir=tmp_path / run_id,
        settings=assay.SenderOptions(flush_interval=0.01),
    )


def run_set(runset_id: str, filter_text: str, frozen: bool = False) -> Map[Any]:
    return Map(
        {
            "id": runset_id,
            "name": runset_id,
            "filter": filter_text,
            "grouping": [],
            "sort": None,
            "colour": "#1f77b4",
            "active": True,
            "frozen": frozen,
        }
    )


def add_grid(editor: YClient, *run_sets: Map[Any], block_id: str = "g1") -> None:
    panel = Map(
        {"id": "p1", "type": "bar", "x": 0, "y": 0, "w": 6, "h": 4, "options": {"key": "lr"}}
    )
    grid = Map(
        {
            "id": block_id,
            "type": "panel_grid",
            "run_sets": Array(list(run_sets)),
            "panels": Array([panel]),
        }
    )
    editor.edit(lambda doc: doc.get("blocks", type=Array).append(grid))


def set_run_set(doc: Doc[Any], block: int, index: int, name: str, value: Any) -> None:
    doc.get("blocks", type=Array)[block]["run_sets"][index][name] = value


@pytest.fixture
def editor(server: RunningServer, tmp_path: Path) -> Iterator[tuple[YClient, str]]:
    """A synced report-socket client of a new report, with runs small and big finished."""
    start_run(server, tmp_path, "small", 0.1).finish()
    start_run(server, tmp_path, "big", 0.9).finish()
    report_id = create_report(server)["id"]
    client = YClient(server, report_id)
    client.sync()
    yield client, report_id
    client.close()


@pytest.fixture
def follower(server: RunningServer, editor: tuple[YClient, str]) -> Iterator[Follower]:
    """A live socket of the project that ``editor`` creates."""
    client = Follower(server)
    yield client
    client.socket.close()


def test_follow_sends_runs_of_run_sets(editor: tuple[YClient, str], follower: Follower) -> None:
    client, report_id = editor
    add_grid(client, run_set("big", BIG_LR), run_set("all", ""), run_set("broken", "config.lr >>"))
    time.sleep(0.3)  # the edit reaches the room before the follow

    follower.follow(report_id)
    first = follower.next("report_runs")

    runs = first["grids"]["g1"]
    assert first["report"] == report_id
    assert first["full"] is True
    assert runs["big"]["members"] == ["big"]
    assert runs["big"]["filter"] == BIG_LR
    assert runs["big"]["error"] is None
    assert runs["all"]["members"] == ["big", "small"]
    assert runs["broken"]["members"] == []
    assert runs["broken"]["error"]["code"] == "invalid_filter"
    assert runs["broken"]["error"]["column"] == 12
    assert sorted(first["runs"]) == ["big", "small"]
    assert first["runs"]["big"]["config"] == {"lr": 0.9, "seed": 7}
    assert first["runs"]["big"]["project"] == PROJECT
    assert first["runs"]["big"]["state"] == "finished"


def test_filter_edit_sends_new_members(editor: tuple[YClient, str], follower: Follower) -> None:
    client, report_id = editor
    add_grid(client, run_set("picked", BIG_LR))
    follower.follow(report_id)
    first = follower.runs_until(lambda message: message["grids"].get("g1"))[-1]

    client.edit(lambda doc: set_run_set(doc, 0, 0, "filter", "config.lr < 0.5"))
    edited = follower.runs_until(
        lambda message: message["grids"]["g1"]["picked"]["members"] == ["small"]
    )[-1]

    assert first["grids"]["g1"]["picked"]["members"] == ["big"]
    assert edited["full"] is False
    assert edited["grids"]["g1"]["picked"]["filter"] == "config.lr < 0.5"
    assert list(edited["runs"]) == ["small"]


def test_grouping_edit_sends_message(editor: tuple[YClient, str], follower: Follower) -> None:
    """A grouping or sort edit keeps the members and still sends the new values."""
    client, report_id = editor
    add_grid(client, run_set("picked", ""))
    follower.follow(report_id)
    first = follower.runs_until(lambda message: message["grids"].get("g1"))[-1]
    grouping = {"keys": ["config.lr"], "aggregate": "max", "band": "minmax"}
    sort = {"field": "config.lr", "direction": "asc"}

    client.edit(lambda doc: set_run_set(doc, 0, 0, "grouping", grouping))
    grouped = follower.runs_until(
        lambda message: message["grids"]["g1"]["picked"]["grouping"] == grouping
    )[-1]
    client.edit(lambda doc: set_run_set(doc, 0, 0, "sort", sort))
    sorted_ = follower.runs_until(
        lambda message: message["grids"]["g1"]["picked"]["sort"] == sort
    )[-1]

    assert first["grids"]["g1"]["picked"]["grouping"] == []
    assert first["grids"]["g1"]["picked"]["sort"] is None
    assert grouped["grids"]["g1"]["picked"]["members"] == ["big", "small"]
    assert grouped["runs"] == {}
    assert sorted_["grids"]["g1"]["picked"]["grouping"] == grouping
    assert sorted_["grids"]["g1"]["picked"]["members"] == ["big", "small"]


def test_run_set_toggle_sends_message(editor: tuple[YClient, str], follower: Follower) -> None:
    """A page's figures come from the server's copy, so it must learn when a toggle arrived."""
    client, report_id = editor
    add_grid(client, run_set("picked", ""))
    follower.follow(report_id)
    first = follower.runs_until(lambda message: message["grids"].get("g1"))[-1]

    client.edit(lambda doc: set_run_set(doc, 0, 0, "active", False))
    hidden = follower.runs_until(
        lambda message: message["grids"]["g1"]["picked"]["active"] is False
    )[-1]
    client.edit(lambda doc: set_run_set(doc, 0, 0, "active", True))
    drawn = follower.runs_until(
        lambda message: message["grids"]["g1"]["picked"]["active"] is True
    )[-1]

    assert first["grids"]["g1"]["picked"]["active"] is True
    assert hidden["full"] is False
    assert hidden["grids"]["g1"]["picked"]["members"] == ["big", "small"]
    assert hidden["runs"] == {}
    assert drawn["grids"]["g1"]["picked"]["members"] == ["big", "small"]


def test_new_run_appears_unless_frozen(
    server: RunningServer, tmp_path: Path, editor: tuple[YClient, str], follower: Follower
) -> None:
    client, report_id = editor
    add_grid(client, run_set("live", BIG_LR), run_set("kept", BIG_LR, frozen=True))
    follower.follow(report_id)
    follower.runs_until(lambda message: message["grids"].get("g1"))

    late = start_run(server, tmp_path, "late", 0.7)
    entered = follower.runs_until(
        lambda message: "late" in message["grids"]["g1"]["live"]["members"]
    )[-1]
    late.finish()
    finished = follower.runs_until(
        lambda message: message["runs"].get("late", {}).get("state") == "finished"
    )[-1]

    assert entered["grids"]["g1"]["live"]["members"] == ["big", "late"]
    assert entered["grids"]["g1"]["kept"]["members"] == ["big"]
    assert entered["runs"]["late"]["config"]["lr"] == 0.7
    assert finished["grids"]["g1"]["kept"]["members"] == ["big"]


def test_unfreezing_takes_new_runs(
    server: RunningServer, tmp_path: Path, editor: tuple[YClient, str], follower: Follower
) -> None:
    client, report_id = editor
    add_grid(client, run_set("kept", BIG_LR, frozen=True))
    follower.follow(report_id)
    follower.runs_until(lambda message: message["grids"].get("g1"))
    start_run(server, tmp_path, "later", 0.8).finish()
    time.sleep(0.5)  # time for a membership change that must not arrive

    client.edit(lambda doc: set_run_set(doc, 0, 0, "frozen", False))
    thawed = follower.runs_until(lambda message: not message["grids"]["g1"]["kept"]["frozen"])[-1]

    assert thawed["grids"]["g1"]["kept"]["members"] == ["big", "later"]
    assert list(thawed["runs"]) == ["later"]


def test_removed_grid_leaves_message(editor: tuple[YClient, str], follower: Follower) -> None:
    client, report_id = editor
    add_grid(client, run_set("a", ""), block_id="g1")
    add_grid(client, run_set("b", BIG_LR), block_id="g2")
    follower.follow(report_id)
    follower.runs_until(lambda message: len(message["grids"]) == 2)

    client.edit(lambda doc: doc.get("blocks", type=Array).pop(0))
    after = follower.runs_until(lambda message: "g1" not in message["grids"])[-1]

    assert list(after["grids"]) == ["g2"]
    assert after["grids"]["g2"]["b"]["members"] == ["big"]


def test_report_without_grids_sends_empty(
    server: RunningServer, editor: tuple[YClient, str], follower: Follower
) -> None:
    _, report_id = editor
    follower.follow(report_id)
    first = follower.next("report_runs")

    assert first["grids"] == {}
    assert first["runs"] == {}


@pytest.mark.parametrize("report_id", [5, "", "x" * 65, ["r"]])
def test_malformed_follow_rejected(
    editor: tuple[YClient, str], follower: Follower, report_id: Any
) -> None:
    follower.follow(report_id)
    error = follower.next("error")

    assert error["code"] == "invalid_follow"
    assert "report id" in error["message"]
    assert "null to stop" in error["message"]


def test_unknown_report_not_found(
    server: RunningServer, editor: tuple[YClient, str], follower: Follower
) -> None:
    follower.follow("no-such-report")
    error = follower.next("error")
    follower.follow(editor[1])
    after = follower.next("report_runs")

    assert error["code"] == "report_not_found"
    assert "'no-such-report'" in error["message"]
    assert after["full"] is True


def test_report_of_other_project_not_found(
    server: RunningServer, tmp_path: Path, editor: tuple[YClient, str]
) -> None:
    assay.init("elsewhere", server=server.url, api_key=server.api_key, spool_dir=tmp_path).finish()
    other = Follower(server, project="elsewhere")
    other.follow(editor[1])
    error = other.next("error")
    other.socket.close()

    assert error["code"] == "report_not_found"


def test_deleted_report_ends_follow(
    server: RunningServer, editor: tuple[YClient, str], follower: Follower
) -> None:
    _, report_id = editor
    follower.follow(report_id)
    follower.next("report_runs")

    with server.client() as http:
        deleted = http.delete(f"/api/v1/projects/{PROJECT}/reports/{report_id}")
    error = follower.next("error")

    assert deleted.status_code == 204
    assert error["code"] == "report_not_found"
    assert "deleted" in error["message"]


def test_follow_null_stops_messages(
    server: RunningServer, tmp_path: Path, editor: tuple[YClient, str], follower: Follower
) -> None:
    client, report_id = editor
    add_grid(client, run_set("all", ""))
    follower.follow(report_id)
    follower.runs_until(lambda message: message["grids"].get("g1"))

    follower.follow(None)
    start_run(server, tmp_path, "unseen", 0.3).finish()
    follower.socket.send(protocol.pack({"type": "watch", "runsets": {"w": "name = unseen"}}))
    members = follower.next("members")
    stray = []
    try:
        while True:
            stray.extend(
                message
                for message in live_messages(follower.socket.recv(timeout=1))
                if message["type"] == "report_runs"
            )
    except TimeoutError:
        pass

    assert members["runsets"] == {"w": ["unseen"]}
    assert stray == []


def create_share(server: RunningServer, report_id: str) -> str:
    with server.client() as http:
        response = http.post(f"/api/v1/reports/{report_id}/shares", json={"role": "view"})
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


def test_share_link_follow_narrowed(server: RunningServer, editor: tuple[YClient, str]) -> None:
    client, report_id = editor
    add_grid(client, run_set("big", BIG_LR))
    other_report = create_report(server, "Other")["id"]
    token = create_share(server, report_id)
    linked = Follower(server, f"?share={token}", Origin=server.url)

    linked.follow(other_report)
    refused = linked.next("error")
    linked.follow(report_id)
    first = linked.runs_until(lambda message: message["grids"].get("g1"))[-1]
    client.edit(
        lambda doc: doc.get("blocks", type=Array)[0]["panels"][0].__setitem__(
            "options", {"key": "seed"}
        )
    )
    redrawn = linked.runs_until(
        lambda message: "seed" in message["runs"].get("big", {}).get("config", {})
    )[-1]
    linked.socket.close()

    assert refused["code"] == "outside_report"
    assert first["grids"]["g1"]["big"]["members"] == ["big"]
    assert first["runs"]["big"]["config"] == {"lr": 0.9}
    assert "notes" not in first["runs"]["big"]
    assert redrawn["runs"]["big"]["config"] == {"seed": 7}


def test_edit_on_other_instance_followed(
    postgres_settings: Settings, start_server: Any, tmp_path: Path
) -> None:
    first = start_server(postgres_settings)
    second = start_server(postgres_settings)
    start_run(first, tmp_path, "small", 0.1).finish()
    start_run(first, tmp_path, "big", 0.9).finish()
    report_id = create_report(first)["id"]
    follower = Follower(second)
    follower.follow(report_id)
    empty = follower.next("report_runs")

    editor = YClient(first, report_id)
    editor.sync()
    add_grid(editor, run_set("big", BIG_LR))
    relayed = follower.runs_until(lambda message: message["grids"].get("g1"))[-1]
    editor.close()
    follower.socket.close()

    assert empty["grids"] == {}
    assert relayed["grids"]["g1"]["big"]["members"] == ["big"]
    assert list(relayed["runs"]) == ["big"]
