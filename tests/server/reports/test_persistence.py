"""Report persistence: batched log, compaction, restarts and crashes."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path
from typing import Any

from pycrdt import Array

import assay
from assay_server.reports.rooms import ReportRooms
from assay_server.settings import Settings
from conftest import RunningServer, ServerProcess, ThreadServer
from reports.support import (
    PROJECT,
    YClient,
    add_markdown,
    create_report,
    report_content,
    wait_for,
)


def stored_rows(settings: Settings, table: str, report_id: str) -> int:
    with sqlite3.connect(settings.data_dir / "assay.db") as connection:
        query = f"SELECT count(*) FROM {table} WHERE report_id = ?"  # noqa: S608
        return int(connection.execute(query, (report_id,)).fetchone()[0])


def new_report(server: RunningServer, tmp_path: Path) -> str:
    assay.init(PROJECT, server=server.url, api_key=server.api_key, spool_dir=tmp_path).finish()
    return str(create_report(server)["id"])


def edit_and_close(server: RunningServer, report_id: str, *texts: str, prefix: str = "b") -> None:
    """Add a markdown block per text, with ids ``{prefix}0``, ``{prefix}1``…"""
    client = YClient(server, report_id)
    client.sync()
    expected = len(client.doc.get("blocks", type=Array)) + len(texts)
    for index, text in enumerate(texts):
        client.edit(lambda doc, i=index, t=text: add_markdown(doc, f"{prefix}{i}", t))
    wait_for(
        lambda: len(report_content(server, report_id)["blocks"]) == expected,
        what="the edits to reach the room",
    )
    client.close()


def test_clean_shutdown_writes_pending_updates(settings: Settings, tmp_path: Path) -> None:
    # A flush interval longer than the test leaves the shutdown as the only write.
    slow = dataclasses.replace(settings, report_flush_interval=3600)
    first = ThreadServer(slow)
    running = first.start()
    report_id = new_report(running, tmp_path)
    edit_and_close(running, report_id, "survives a restart")
    first.stop()

    second = ThreadServer(slow)
    content = report_content(second.start(), report_id)
    second.stop()

    assert content["title"] == "Findings"
    assert [block["text"] for block in content["blocks"]] == ["survives a restart"]


def test_crash_loses_nothing_after_flush(
    sqlite_settings: Settings, server_process: Any, tmp_path: Path
) -> None:
    process: ServerProcess = server_process(sqlite_settings)
    process.start()
    running = RunningServer(process.url, str(sqlite_settings.bootstrap_api_key), sqlite_settings)
    report_id = new_report(running, tmp_path)
    edit_and_close(running, report_id, "written before the crash")
    # The report's first row is its title; the edit makes the second.
    wait_for(
        lambda: stored_rows(sqlite_settings, "report_updates", report_id) >= 2,
        what="the flush of the edit",
    )
    process.kill()

    process.start()
    content = report_content(running, report_id)

    assert [block["text"] for block in content["blocks"]] == ["written before the crash"]


def test_log_compacts_into_snapshot(sqlite_settings: Settings, tmp_path: Path) -> None:
    server = ThreadServer(sqlite_settings)
    running = server.start()
    rooms: ReportRooms = server.app.state.reports
    rooms.settings = dataclasses.replace(rooms.settings, compact_rows=5)
    report_id = new_report(running, tmp_path)

    # A flush writes one row however many edits it holds, so each edit waits
    # for its own flush.
    for n in range(8):
        before = stored_rows(sqlite_settings, "report_updates", report_id)
        edit_and_close(running, report_id, f"paragraph {n}", prefix=f"p{n}-")
        wait_for(
            lambda before=before: (
                stored_rows(sqlite_settings, "report_updates", report_id) != before
            ),
            what="the flush of one edit",
        )
    wait_for(
        lambda: stored_rows(sqlite_settings, "report_snapshots", report_id) == 1,
        what="the compaction",
    )
    edit_and_close(running, report_id, "tail", prefix="tail")
    tail_rows = stored_rows(sqlite_settings, "report_updates", report_id)
    server.stop()

    restarted = ThreadServer(sqlite_settings)
    content = report_content(restarted.start(), report_id)
    restarted.stop()

    assert tail_rows < 5, content
    assert len(content["blocks"]) == 9, content
    assert [block["text"] for block in content["blocks"]][-1] == "tail"
    assert len(content["blocks"]) == 9
    assert content["title"] == "Findings"


def test_flush_stores_its_edits_as_one_row(sqlite_settings: Settings, tmp_path: Path) -> None:
    # With no timed flush, the clean shutdown writes every edit in one flush.
    slow = dataclasses.replace(sqlite_settings, report_flush_interval=3600)
    server = ThreadServer(slow)
    running = server.start()
    report_id = new_report(running, tmp_path)

    edit_and_close(running, report_id, *[f"paragraph {n}" for n in range(10)])
    server.stop()
    rows = stored_rows(sqlite_settings, "report_updates", report_id)
    restarted = ThreadServer(sqlite_settings)
    content = report_content(restarted.start(), report_id)
    restarted.stop()

    # The first row is the report's title, written when it was created.
    assert rows == 2
    assert [block["text"] for block in content["blocks"]] == [f"paragraph {n}" for n in range(10)]
