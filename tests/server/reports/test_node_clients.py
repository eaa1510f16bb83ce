"""Node `yjs` + `y-websocket` clients edit a report through the server."""

from __future__ import annotations

from typing import Any

from conftest import RunningServer
from reports.support import yjs_url


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
