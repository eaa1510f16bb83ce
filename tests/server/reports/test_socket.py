"""The report websocket: credentials, sync, awareness, deletion and idle unloading."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import time
from typing import Any

import httpx
import psycopg
import pytest
from pycrdt import Array, Text
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from assay_server.settings import Settings
from conftest import RunningServer, sign_in_with_key
from reports.support import YClient, add_markdown, report_content, wait_for, yjs_url


def test_bearer_header_opens_room(server: RunningServer, report: dict[str, Any]) -> None:
    client = YClient(server, report["id"])
    client.sync()

    assert str(client.doc.get("title", type=Text)) == "Findings"
    client.close()


def test_token_query_opens_room(server: RunningServer, report: dict[str, Any]) -> None:
    socket = connect(f"{yjs_url(server)}/{report['id']}?token={server.api_key}", legacy=True)
    first = socket.recv(timeout=10)

    assert isinstance(first, bytes)
    assert first[:2] == b"\x00\x00"
    socket.close()


def test_session_cookie_opens_room(server: RunningServer, report: dict[str, Any]) -> None:
    with httpx.Client(base_url=server.url) as browser:
        login = sign_in_with_key(browser, server.api_key)
    cookie = login.cookies.get("assay_session")
    assert login.status_code == 303
    assert cookie is not None

    client = YClient(server, report["id"], Cookie=f"assay_session={cookie}")
    client.sync()

    assert str(client.doc.get("title", type=Text)) == "Findings"
    client.close()


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong-key"}, 401),
        ({"Cookie": "assay_session=x"}, 401),
    ],
)
def test_bad_credentials_rejected_at_handshake(
    server: RunningServer, report: dict[str, Any], headers: dict[str, str], status: int
) -> None:
    with pytest.raises(InvalidStatus) as raised:
        connect(f"{yjs_url(server)}/{report['id']}", additional_headers=headers, legacy=True)

    assert raised.value.response.status_code == status


def test_unknown_report_rejected_at_handshake(server: RunningServer, project: str) -> None:
    with pytest.raises(InvalidStatus) as raised:
        connect(
            f"{yjs_url(server)}/0123456789abcdef",
            additional_headers={"Authorization": f"Bearer {server.api_key}"},
            legacy=True,
        )

    assert raised.value.response.status_code == 404
    assert b"report_not_found" in raised.value.response.body


def test_update_reaches_other_client_and_store(
    server: RunningServer, report: dict[str, Any]
) -> None:
    writer = YClient(server, report["id"])
    reader = YClient(server, report["id"])
    writer.sync()
    reader.sync()

    writer.edit(lambda doc: add_markdown(doc, "b1", "first paragraph"))
    reader.next_frame(lambda frame: frame[:2] == b"\x00\x02")

    assert reader.doc.get("blocks", type=Array).to_py()[0]["text"] == "first paragraph"
    assert report_content(server, report["id"])["blocks"][0]["text"] == "first paragraph"
    writer.close()
    reader.close()


def test_awareness_is_relayed_and_queried(server: RunningServer, report: dict[str, Any]) -> None:
    alice = YClient(server, report["id"])
    bob = YClient(server, report["id"])
    alice.sync()
    bob.sync()
    state = b'{"user":{"name":"alice"}}'
    awareness = b"\x01\x01\x07" + bytes([len(state)]) + state
    payload = b"\x01" + bytes([len(awareness)]) + awareness

    alice.socket.send(payload)
    relayed = bob.next_frame(lambda frame: frame[0] == 1 and b"alice" in frame)
    bob.socket.send(b"\x03")
    queried = bob.next_frame(lambda frame: frame[0] == 1 and b"alice" in frame)

    assert relayed == payload
    assert b'"alice"' in queried
    alice.close()
    gone = bob.next_frame(lambda frame: frame[0] == 1 and b"null" in frame)
    assert gone.endswith(b"null")
    bob.close()


def test_delete_closes_open_sockets(server: RunningServer, report: dict[str, Any]) -> None:
    client = YClient(server, report["id"])
    client.sync()

    with server.client() as http:
        assert http.delete(f"/api/v1/projects/reports/reports/{report['id']}").status_code == 204
    with pytest.raises(ConnectionClosed) as closed:
        client.next_frame(lambda frame: False)

    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4404


def open_reports(server: RunningServer) -> float:
    text = httpx.get(server.url + "/metrics").text
    line = next(line for line in text.splitlines() if line.startswith("assay_open_reports "))
    return float(line.split()[1])


def test_idle_room_is_unloaded(settings: Any, start_server: Any, project_factory: Any) -> None:
    server = start_server(dataclasses.replace(settings, report_idle_timeout=0.2))
    report = project_factory(server)
    before = open_reports(server)
    client = YClient(server, report["id"])
    client.sync()
    rooms = server.app.state.reports

    assert report["id"] in rooms.open
    assert open_reports(server) == before + 1
    client.edit(lambda doc: add_markdown(doc, "b1", "kept"))
    client.close()
    wait_for(lambda: report["id"] not in rooms.open, what="the idle room to unload")

    assert open_reports(server) == before
    assert report_content(server, report["id"])["blocks"][0]["text"] == "kept"


def test_unloading_room_keeps_its_edits(
    postgres_settings: Settings, start_server: Any, project_factory: Any
) -> None:
    server = start_server(dataclasses.replace(postgres_settings, report_idle_timeout=0.2))
    report = project_factory(server)
    rooms = server.app.state.reports
    # Writes to the update log wait for this lock, but reads do not.
    blocker = psycopg.connect(str(postgres_settings.database_url))
    blocker.execute("LOCK TABLE report_updates IN EXCLUSIVE MODE")
    client = YClient(server, report["id"])
    client.sync()
    client.edit(lambda doc: add_markdown(doc, "b1", "kept"))
    client.close()

    wait_for(lambda: unloading(rooms, report["id"]), what="the idle room to start unloading")
    wait_for(lambda: waiting_for_lock(postgres_settings), what="the unload's write to wait")
    # A read during the unload gets the room's document, once its write is done.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        reading = pool.submit(report_content, server, report["id"])
        time.sleep(0.5)
        blocker.rollback()
        blocker.close()
        during_unload = reading.result(timeout=30)
    wait_for(lambda: report["id"] not in rooms.open, what="the room to unload")
    after_unload = report_content(server, report["id"])

    assert during_unload["blocks"][0]["text"] == "kept"
    assert after_unload["blocks"][0]["text"] == "kept"


def unloading(rooms: Any, report_id: str) -> bool:
    entry = rooms.open.get(report_id)
    return entry is None or entry.flusher.done()


def waiting_for_lock(settings: Settings) -> bool:
    with psycopg.connect(str(settings.database_url)) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
    return row is not None and row[0] > 0


def test_silent_socket_gets_keepalive(sqlite_server: RunningServer, project_factory: Any) -> None:
    report = project_factory(sqlite_server)
    rooms = sqlite_server.app.state.reports
    rooms.settings = dataclasses.replace(rooms.settings, keepalive_interval=0.2)
    client = YClient(sqlite_server, report["id"])
    client.sync()

    frame = client.next_frame(lambda frame: frame[0] == 1, timeout=5)

    assert frame == b"\x01\x01\x00"
    client.close()
