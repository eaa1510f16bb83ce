"""Node `yjs` + `y-websocket` clients edit a report through the server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import assay
from assay_server.settings import Settings
from conftest import RunningServer, ThreadServer
from reports.support import PROJECT, create_report, yjs_url


def test_second_node_client_sees_edit(
    server: RunningServer, report: dict[str, Any], node_clients: Any
) -> None:
    url = yjs_url(server)
    writer = node_clients("write", url, report["id"], server.api_key, "loss is $\\mathcal{L}$")
    assert writer.next_event() == {"event": "written"}

    reader = node_clients("read", url, report["id"], server.api_key, "$\\mathcal{L}$", "5000")
    seen = reader.next_event()

    assert seen["event"] == "seen"
    assert seen["content"]["title"] == "Findings"
    assert seen["content"]["blocks"][0]["type"] == "markdown"
    assert seen["content"]["blocks"][0]["text"] == "loss is $\\mathcal{L}$"
    assert reader.wait() == 0


def test_third_node_client_loads_after_restart(
    settings: Settings, node_clients: Any, tmp_path: Path
) -> None:
    first = ThreadServer(settings)
    running = first.start()
    assay.init(PROJECT, server=running.url, api_key=running.api_key, spool_dir=tmp_path).finish()
    report_id = create_report(running)["id"]
    writer = node_clients("write", yjs_url(running), report_id, running.api_key, "$e^{i\\pi}$")
    assert writer.next_event() == {"event": "written"}
    reader = node_clients("read", yjs_url(running), report_id, running.api_key, "e^{i", "5000")
    assert reader.next_event()["event"] == "seen"
    writer.stop()
    first.stop()

    second = ThreadServer(settings, port=running.port)
    restarted = second.start()
    third = node_clients("read", yjs_url(restarted), report_id, restarted.api_key, "e^{i", "5000")
    seen = third.next_event()
    second.stop()

    assert seen["event"] == "seen"
    assert seen["content"]["blocks"][0]["text"] == "$e^{i\\pi}$"
    assert seen["content"]["title"] == "Findings"


def test_node_client_told_of_rejected_block(
    sqlite_server: RunningServer, project_factory: Any, node_clients: Any
) -> None:
    report_id = project_factory(sqlite_server)["id"]
    bad = node_clients("bad", yjs_url(sqlite_server), report_id, sqlite_server.api_key)
    denied = bad.next_event()

    assert denied["event"] == "denied"
    assert "has unknown type 'video'" in denied["reason"]
    assert bad.wait() == 0
