"""Saved report versions: save, list, view and restore."""

from __future__ import annotations

from typing import Any

from pycrdt import Text

from conftest import RunningServer
from reports.support import PROJECT, YClient, add_markdown, report_content, wait_for

BASE = f"/api/v1/projects/{PROJECT}/reports"


def test_version_saved_listed_and_viewed(server: RunningServer, report: dict[str, Any]) -> None:
    client = YClient(server, report["id"])
    client.sync()
    client.edit(lambda doc: add_markdown(doc, "a", "draft one"))
    wait_for(lambda: len(report_content(server, report["id"])["blocks"]) == 1, what="the edit")

    with server.client() as http:
        saved = http.post(f"{BASE}/{report['id']}/versions", json={"label": "first draft"})
        listed = http.get(f"{BASE}/{report['id']}/versions").json()["versions"]
        shown = http.get(f"{BASE}/{report['id']}/versions/{saved.json()['id']}").json()

    assert saved.status_code == 201
    assert saved.json()["label"] == "first draft"
    assert saved.json()["created_by"] == "admin"
    assert saved.json()["title"] == "Findings"
    assert [item["id"] for item in listed] == [saved.json()["id"]]
    assert shown["content"]["blocks"][0]["text"] == "draft one"
    client.close()


def test_restore_reaches_connected_client(server: RunningServer, report: dict[str, Any]) -> None:
    client = YClient(server, report["id"])
    client.sync()
    client.edit(lambda doc: add_markdown(doc, "a", "the version to keep"))
    wait_for(lambda: len(report_content(server, report["id"])["blocks"]) == 1, what="the edit")
    with server.client() as http:
        version = http.post(f"{BASE}/{report['id']}/versions").json()
    client.edit(lambda doc: add_markdown(doc, "b", "a later mistake"))
    client.edit(lambda doc: doc.get("title", type=Text).insert(0, "Wrong "))
    wait_for(lambda: len(report_content(server, report["id"])["blocks"]) == 2, what="the edits")

    with server.client() as http:
        restored = http.post(f"{BASE}/{report['id']}/versions/{version['id']}/restore")

    def restored_locally() -> bool:
        client.pump()
        return str(client.doc.get("title", type=Text)) == "Findings"

    wait_for(restored_locally, what="the restore to reach the client")

    assert version["label"] == "Findings"
    assert restored.status_code == 200
    assert restored.json()["content"]["title"] == "Findings"
    assert [b["text"] for b in restored.json()["content"]["blocks"]] == ["the version to keep"]
    assert [b["text"] for b in report_content(server, report["id"])["blocks"]] == [
        "the version to keep"
    ]
    client.close()


def test_version_errors(server: RunningServer, report: dict[str, Any]) -> None:
    with server.client() as http:
        missing = http.get(f"{BASE}/{report['id']}/versions/999")
        missing_restore = http.post(f"{BASE}/{report['id']}/versions/999/restore")
        not_a_number = http.get(f"{BASE}/{report['id']}/versions/abc")
        bad_label = http.post(f"{BASE}/{report['id']}/versions", json={"label": 5})
        listed = http.get(f"{BASE}/{report['id']}/versions").json()["versions"]

    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "version_not_found"
    assert missing_restore.status_code == 404
    assert not_a_number.status_code == 400
    assert "got 'abc'" in not_a_number.json()["error"]["message"]
    assert bad_label.status_code == 400
    assert listed == []
