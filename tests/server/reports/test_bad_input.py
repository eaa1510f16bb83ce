"""Bad input on the report socket: rejected with a reason, nothing stored, room alive."""

from __future__ import annotations

import dataclasses
import random
import sqlite3
from collections.abc import Callable
from typing import Any

import pytest
from pycrdt import Array, Doc, Map, Text, create_update_message
from websockets.exceptions import ConnectionClosed

from conftest import RunningServer
from reports.support import YClient, add_markdown, report_content, wait_for

Change = Callable[[Doc[Any]], None]


def block(**values: Any) -> Change:
    return lambda doc: doc.get("blocks", type=Array).append(Map(values))


def grid(run_set: dict[str, Any]) -> Change:
    return block(id="g", type="panel_grid", run_sets=Array([Map(run_set)]), panels=Array())


RUN_SET = {
    "id": "r1",
    "name": "baseline",
    "filter": "",
    "grouping": [],
    "sort": None,
    "colour": "#1f77b4",
    "active": True,
    "frozen": False,
}

SCHEMA_BREAKS: list[tuple[str, Change, str]] = [
    (
        "unknown block type",
        block(id="v", type="video", text=Text("x")),
        "blocks[1] (id 'v') has unknown type 'video'",
    ),
    (
        "title as a map",
        lambda doc: doc.get("title", type=Map).__setitem__("text", "x"),
        "'title' must be a Y.Text, but it has map entries",
    ),
    (
        "title with an embed",
        lambda doc: doc.get("title", type=Text).insert_embed(0, {"image": "x.png"}),
        "'title' must be a Y.Text of plain text",
    ),
    (
        "unknown top-level type",
        lambda doc: doc.get("notes", type=Text).insert(0, "x"),
        "unknown top-level type 'notes'",
    ),
    (
        "blocks as text",
        lambda doc: doc.get("blocks", type=Text).insert(0, "x"),
        "'blocks' must be a Y.Array, but it contains text",
    ),
    ("block that is not a map", lambda doc: doc.get("blocks", type=Array).append(3), "got 3"),
    ("block without an id", block(type="markdown", text=Text("x")), "needs a string 'id'"),
    (
        "markdown text as a string",
        block(id="m", type="markdown", text="plain string"),
        "'text' must be a Y.Text, got 'plain string'",
    ),
    (
        "heading level out of range",
        block(id="h", type="heading", level=9, text=Text("x")),
        "'level' must be an integer from 1 to 6, got 9.0",
    ),
    (
        "run set toggle not a boolean",
        grid({**RUN_SET, "active": "yes"}),
        "'active' must be true or false, got 'yes'",
    ),
    (
        "panel past the grid",
        block(
            id="g",
            type="panel_grid",
            run_sets=Array(),
            panels=Array([Map({"id": "p", "type": "line", "x": 8, "y": 0, "w": 6, "h": 3})]),
        ),
        "reaches past the 12 grid columns",
    ),
]


def send_change(client: YClient, change: Change) -> None:
    """Make ``change`` on a copy of the client's document and send only its update."""
    copy: Doc[Any] = Doc()
    copy.apply_update(client.doc.get_update())
    before = copy.get_state()
    change(copy)
    client.send_update(copy.get_update(before))


@pytest.fixture
def room(sqlite_server: RunningServer, project_factory: Any) -> tuple[RunningServer, str]:
    return sqlite_server, project_factory(sqlite_server)["id"]


def test_schema_breaking_updates_rejected(room: tuple[RunningServer, str]) -> None:
    server, report_id = room
    client = YClient(server, report_id)
    client.sync()
    client.edit(lambda doc: add_markdown(doc, "intro", "kept"))

    for name, change, expected in SCHEMA_BREAKS:
        send_change(client, change)
        reason = client.next_denial()
        assert reason.startswith("report update rejected: "), name
        assert expected in reason, f"{name}: {reason}"

    client.edit(lambda doc: add_markdown(doc, "after", "still editable"))
    content = report_content(server, report_id)
    assert content["title"] == "Findings"
    assert [b["text"] for b in content["blocks"]] == ["kept", "still editable"]
    client.close()


def test_random_frames_rejected(room: tuple[RunningServer, str]) -> None:
    server, report_id = room
    client = YClient(server, report_id)
    client.sync()
    generator = random.Random(20261204)

    for _ in range(30):
        client.socket.send(generator.randbytes(generator.randint(1, 300)))
        assert client.next_denial().startswith("invalid message: ")
    for _ in range(30):
        client.socket.send(create_update_message(generator.randbytes(generator.randint(1, 300))))
        assert "cannot decode it" in client.next_denial()

    client.edit(lambda doc: add_markdown(doc, "after", "still editable"))
    assert report_content(server, report_id)["blocks"][0]["text"] == "still editable"
    client.close()


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"", "invalid message: empty message"),
        (b"\x00", "invalid message: truncated message: no sync message type"),
        (b"\x00\x02\x05ab", "payload length 5 does not match the 2 bytes that follow"),
        (b"\x00\x07\x00", "unknown sync message type 7"),
        (b"\x09", "unknown message type 9"),
        (b"\x02\x00\x00", "auth messages go from the server to clients only"),
        (b"\x03\x00", "query awareness message has 1 bytes after its type"),
        (b"\x00\x00\x03\xff\xff\xff", "invalid state vector in sync step 1"),
        (b"\x01\x03\x01\x01\x05", "invalid awareness message: truncated message"),
        (b"\x01\x05\x01\x01\x01\x01{", "awareness state is not valid UTF-8 JSON"),
    ],
)
def test_malformed_frames_rejected(
    room: tuple[RunningServer, str], frame: bytes, reason: str
) -> None:
    server, report_id = room
    client = YClient(server, report_id)
    client.sync()

    client.socket.send(frame)

    assert reason in client.next_denial()
    client.close()


def test_truncated_updates_rejected(room: tuple[RunningServer, str]) -> None:
    server, report_id = room
    client = YClient(server, report_id)
    client.sync()
    source: Doc[Any] = Doc()
    source.apply_update(client.doc.get_update())
    before = source.get_state()
    add_markdown(source, "t", "a paragraph that will be cut short")
    update = source.get_update(before)

    for length in range(1, len(update), 7):
        client.send_update(update[:length])
        assert "cannot decode it" in client.next_denial(), length

    assert report_content(server, report_id)["blocks"] == []
    client.close()


def test_reused_client_id_rejected(room: tuple[RunningServer, str]) -> None:
    server, report_id = room
    client = YClient(server, report_id)
    client.sync()
    first: Doc[Any] = Doc(client_id=7)
    first.get("title", type=Text).insert(0, "Draft: ")
    client.send_update(first.get_update())
    # A second client with the same id: its block map claims the id of the title's text.
    second: Doc[Any] = Doc(client_id=7)
    add_markdown(second, "m", "clashes")

    client.send_update(second.get_update())
    reason = client.next_denial()
    client.edit(lambda doc: add_markdown(doc, "after", "still editable"))
    content = report_content(server, report_id)

    assert reason.startswith("report update rejected: cannot apply it: ")
    assert content["title"] == "Draft: Findings"
    assert [b["id"] for b in content["blocks"]] == ["after"]
    client.close()


def test_update_with_clock_gap_rejected(room: tuple[RunningServer, str]) -> None:
    server, report_id = room
    client = YClient(server, report_id)
    client.sync()
    # Client 6 inserts "x" into the title at clock 64, though its clocks 0 to 63
    # never arrived: one struct, client 6, clock 64, a string in root "title".
    update = b"\x01\x01\x06\x40\x04\x01\x05title\x01x\x00"

    client.send_update(update)
    reason = client.next_denial()
    client.edit(lambda doc: add_markdown(doc, "after", "flushed"))
    wait_for(
        lambda: "flushed" in str(stored_log(server, report_id).get("blocks", type=Array).to_py()),
        what="the edits to be stored",
    )
    room_content = report_content(server, report_id)
    stored = stored_log(server, report_id)
    client.close()

    assert "starts past the next clock of client 6" in reason
    assert room_content["title"] == "Findings"
    assert str(stored.get("title", type=Text)) == "Findings"
    assert [block["id"] for block in room_content["blocks"]] == ["after"]


def test_large_client_id_accepted(room: tuple[RunningServer, str]) -> None:
    server, report_id = room
    client = YClient(server, report_id)
    client.sync()
    # Client ids may use all 53 bits, the largest integers a JavaScript number represents exactly.
    large: Doc[Any] = Doc(client_id=2**53 - 1)
    large.apply_update(client.doc.get_update())
    before = large.get_state()
    add_markdown(large, "wide", "from a 64-bit client id")

    client.send_update(large.get_update(before))
    wait_for(
        lambda: [b["id"] for b in report_content(server, report_id)["blocks"]] == ["wide"],
        what="the block of the large client id",
    )

    assert client.denials == []
    client.close()


def stored_log(server: RunningServer, report_id: str) -> Doc[Any]:
    """Replay the report's stored update log (the test stays under the compaction size)."""
    with sqlite3.connect(server.settings.data_dir / "assay.db") as connection:
        rows = connection.execute(
            'SELECT "update" FROM report_updates WHERE report_id = ? ORDER BY id', (report_id,)
        ).fetchall()
    doc: Doc[Any] = Doc()
    for (update,) in rows:
        doc.apply_update(update)
    return doc


def test_huge_update_rejected(room: tuple[RunningServer, str]) -> None:
    server, report_id = room
    client = YClient(server, report_id)
    client.sync()

    send_change(client, lambda doc: add_markdown(doc, "big", "x" * (1024 * 1024 + 1)))
    reason = client.next_denial()

    assert "is over the limit of 1048576" in reason
    assert report_content(server, report_id)["blocks"] == []
    client.close()


def test_document_size_limit(
    sqlite_settings: Any, start_server: Any, project_factory: Any
) -> None:
    server = start_server(dataclasses.replace(sqlite_settings, report_max_bytes=4000))
    report_id = project_factory(server)["id"]
    client = YClient(server, report_id)
    client.sync()

    client.edit(lambda doc: add_markdown(doc, "a", "y" * 1000))
    send_change(client, lambda doc: add_markdown(doc, "b", "z" * 3000))
    reason = client.next_denial()

    assert "over the limit of 4000" in reason
    assert [b["id"] for b in report_content(server, report_id)["blocks"]] == ["a"]
    client.close()


def test_text_frame_closes_with_1003(room: tuple[RunningServer, str]) -> None:
    server, report_id = room
    client = YClient(server, report_id)
    client.sync()

    client.socket.send("hello")
    with pytest.raises(ConnectionClosed) as closed:
        client.next_frame(lambda frame: False)

    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1003
