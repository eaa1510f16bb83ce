"""Open sockets lose what their member lost: removal or a lower role closes them."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import event
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from access.conftest import create_report
from access.support import add_user
from assay import protocol
from assay_server import live_socket
from assay_server.reports import socket as report_socket
from assay_server.settings import Settings
from conftest import RunningServer

PROJECT = "team"
#: The servers of these tests check every socket's access this often, in seconds.
INTERVAL = 0.3


@pytest.fixture(autouse=True)
def quick_recheck(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report_socket, "RECHECK_INTERVAL", INTERVAL)
    monkeypatch.setattr(live_socket, "RECHECK_INTERVAL", INTERVAL)


def change_member(server: RunningServer, user: str, role: str | None) -> None:
    """Give ``user`` ``role`` in the project, or remove them when it is None."""
    path = f"/api/v1/projects/{PROJECT}/members/{user}"
    with server.client() as admin:
        if role is None:
            response = admin.delete(path)
        else:
            response = admin.put(path, json={"role": role})
    assert response.status_code in (200, 204), response.text


async def closed_after(url: str, key: str, change: Any, wait: float) -> tuple[int, str] | None:
    """Open ``url`` with ``key``, run ``change``, and return the close code and reason.

    Returns None when the socket is still open ``wait`` seconds after the change.
    """
    headers = {"Authorization": f"Bearer {key}"}
    async with connect(url, additional_headers=headers) as socket:
        if "/live" in url:
            await socket.send(protocol.pack({"type": "subscribe", "cursors": {}}))
        await socket.recv()
        await asyncio.to_thread(change)
        try:
            async with asyncio.timeout(wait):
                while True:
                    await socket.recv()
        except TimeoutError:
            return None
        except ConnectionClosed as closed:
            assert closed.rcvd is not None
            return closed.rcvd.code, closed.rcvd.reason


def report_url(server: RunningServer, report_id: str) -> str:
    return server.url.replace("http", "ws", 1) + f"/yjs/reports/{report_id}"


def live_url(server: RunningServer) -> str:
    return server.url.replace("http", "ws", 1) + f"/api/v1/projects/{PROJECT}/live"


async def test_removed_member_report_socket_closed(server: RunningServer, report_id: str) -> None:
    key = add_user(server, "ed")
    change_member(server, "ed", "editor")

    closed = await closed_after(
        report_url(server, report_id), key, lambda: change_member(server, "ed", None), 10
    )

    assert closed is not None
    assert closed[0] == 4403
    assert "does not exist" in closed[1]


async def test_editor_made_viewer_report_socket_closed(
    server: RunningServer, report_id: str
) -> None:
    key = add_user(server, "ed")
    change_member(server, "ed", "editor")

    closed = await closed_after(
        report_url(server, report_id), key, lambda: change_member(server, "ed", "viewer"), 10
    )

    assert closed == (4403, "this connection may no longer edit the report; reconnect")


async def test_member_report_socket_stays_open(server: RunningServer, report_id: str) -> None:
    key = add_user(server, "vera")
    change_member(server, "vera", "viewer")

    # Making a viewer an editor takes nothing away, so the socket stays.
    closed = await closed_after(
        report_url(server, report_id), key, lambda: change_member(server, "vera", "editor"), 1.5
    )

    assert closed is None


async def test_removed_member_live_socket_closed(server: RunningServer, report_id: str) -> None:
    key = add_user(server, "vera")
    change_member(server, "vera", "viewer")

    closed = await closed_after(
        live_url(server), key, lambda: change_member(server, "vera", None), 10
    )

    assert closed is not None
    assert closed[0] == 4403


async def test_member_live_socket_stays_open(server: RunningServer, report_id: str) -> None:
    key = add_user(server, "vera")
    change_member(server, "vera", "viewer")

    closed = await closed_after(
        live_url(server), key, lambda: change_member(server, "vera", "editor"), 1.5
    )

    assert closed is None


@pytest.mark.parametrize("kind", ["report", "live"])
async def test_failed_recheck_logged_socket_kept(
    postgres_settings: Settings,
    start_server: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    kind: str,
) -> None:
    server = start_server(postgres_settings)
    report_id = create_report(server, PROJECT, tmp_path)
    key = add_user(server, "ed")
    change_member(server, "ed", "editor")
    database_url = str(postgres_settings.database_url)

    def break_then_remove() -> None:
        # Without the members table every access check fails with a database error.
        with psycopg.connect(database_url, autocommit=True) as connection:
            connection.execute("ALTER TABLE project_members RENAME TO members_away")
            time.sleep(INTERVAL * 4)
            connection.execute("ALTER TABLE members_away RENAME TO project_members")
        change_member(server, "ed", None)

    url = report_url(server, report_id) if kind == "report" else live_url(server)
    closed = await closed_after(url, key, break_then_remove, 10)
    failures = [
        record for record in caplog.records if "checking access failed" in record.getMessage()
    ]

    assert failures
    assert closed is not None
    assert closed[0] == 4403


async def test_sockets_of_one_key_share_rechecks(server: RunningServer, report_id: str) -> None:
    key = add_user(server, "many")
    change_member(server, "many", "viewer")
    lookups = 0

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        nonlocal lookups
        if "api_keys" in statement:
            lookups += 1

    engine = server.app.state.context.db.engine.sync_engine
    headers = {"Authorization": f"Bearer {key}"}
    sockets = [await connect(live_url(server), additional_headers=headers) for _ in range(10)]
    try:
        for socket in sockets:
            await socket.send(protocol.pack({"type": "subscribe", "cursors": {}}))
            await socket.recv()
        event.listen(engine, "before_cursor_execute", count)
        try:
            # Eight recheck intervals, in which ten sockets checking alone would
            # look the key up 80 times. Shared, a check serves all for a second.
            await asyncio.sleep(8 * INTERVAL + 0.05)
        finally:
            event.remove(engine, "before_cursor_execute", count)
    finally:
        for socket in sockets:
            await socket.close()

    assert 1 <= lookups <= 6
