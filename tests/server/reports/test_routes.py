"""Reports over HTTP: create, list, show, rename, delete, and their errors."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from conftest import RunningServer
from reports.support import PROJECT, create_report

BASE = f"/api/v1/projects/{PROJECT}/reports"


def test_create_returns_new_report(server: RunningServer, project: str) -> None:
    created = create_report(server, "Learning-rate sweep")

    assert len(created["id"]) == 16
    assert created["title"] == "Learning-rate sweep"
    assert created["project"] == PROJECT
    assert created["created_by"] == "admin"


def test_create_without_title_is_untitled(server: RunningServer, project: str) -> None:
    with server.client() as http:
        response = http.post(BASE)

    assert response.status_code == 201
    assert response.json()["title"] == "Untitled report"


def test_list_shows_newest_first(server: RunningServer, project: str) -> None:
    first = create_report(server, "first")
    second = create_report(server, "second")

    with server.client() as http:
        listed = http.get(BASE).json()["reports"]

    assert [item["id"] for item in listed] == [second["id"], first["id"]]


def test_show_includes_document_content(server: RunningServer, report: dict[str, Any]) -> None:
    with server.client() as http:
        shown = http.get(f"{BASE}/{report['id']}").json()

    assert shown["content"] == {"title": "Findings", "blocks": []}


def test_rename_edits_document_title(server: RunningServer, report: dict[str, Any]) -> None:
    with server.client() as http:
        renamed = http.patch(f"{BASE}/{report['id']}", json={"title": "Final findings"})
        shown = http.get(f"{BASE}/{report['id']}").json()
        listed = http.get(BASE).json()["reports"]

    assert renamed.status_code == 200
    assert renamed.json()["title"] == "Final findings"
    assert shown["content"]["title"] == "Final findings"
    assert listed[0]["title"] == "Final findings"


def test_delete_removes_report(server: RunningServer, report: dict[str, Any]) -> None:
    with server.client() as http:
        deleted = http.delete(f"{BASE}/{report['id']}")
        shown = http.get(f"{BASE}/{report['id']}")
        listed = http.get(BASE).json()["reports"]

    assert deleted.status_code == 204
    assert shown.status_code == 404
    assert shown.json()["error"]["code"] == "report_not_found"
    assert listed == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[1, 2]", "request body must be a JSON object, got list"),
        (b"{not json", "request body must be a JSON object"),
        (b'{"title": 7}', "'title' must be a string, got 7"),
        (b'{"title": null}', "missing 'title'"),
        (b'{"title": "' + b"x" * 501 + b'"}', "'title' is 501 characters; at most 500"),
    ],
)
def test_rename_rejects_bad_title(
    server: RunningServer, report: dict[str, Any], body: bytes, message: str
) -> None:
    with server.client() as http:
        response = http.patch(f"{BASE}/{report['id']}", content=body)
        shown = http.get(f"{BASE}/{report['id']}").json()

    assert response.status_code == 400
    assert message in response.json()["error"]["message"]
    assert shown["content"]["title"] == "Findings"


def test_create_with_invalid_json_names_it(server: RunningServer, project: str) -> None:
    with server.client() as http:
        response = http.post(BASE, content=b"{not json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
    assert "not valid JSON" in response.json()["error"]["message"]


def test_create_rejects_long_title(server: RunningServer, project: str) -> None:
    with server.client() as http:
        response = http.post(BASE, json={"title": "x" * 501})
        listed = http.get(BASE).json()["reports"]

    assert response.status_code == 400
    assert listed == []


def test_reports_need_credentials(server: RunningServer, report: dict[str, Any]) -> None:
    anonymous = httpx.get(server.url + BASE)
    wrong = httpx.get(server.url + BASE, headers={"Authorization": "Bearer nope"})

    assert anonymous.status_code == 401
    assert wrong.status_code == 401


def test_unknown_project_or_report_is_404(server: RunningServer, project: str) -> None:
    with server.client() as http:
        no_project = http.get("/api/v1/projects/missing/reports")
        no_report = http.get(f"{BASE}/0123456789abcdef")
        no_report_delete = http.delete(f"{BASE}/0123456789abcdef")

    assert no_project.status_code == 404
    assert no_project.json()["error"]["code"] == "project_not_found"
    assert no_report.status_code == 404
    assert no_report_delete.status_code == 404


def test_report_of_other_project_is_404(
    server: RunningServer, report: dict[str, Any], tmp_path: Any
) -> None:
    import assay

    assay.init("other", server=server.url, api_key=server.api_key, spool_dir=tmp_path).finish()
    with server.client() as http:
        response = http.get(f"/api/v1/projects/other/reports/{report['id']}")

    assert response.status_code == 404
