"""Project roles: private projects hide from non-members, and each role allows its own actions."""

from __future__ import annotations

from pathlib import Path

import pytest

import assay
from access.support import add_user, anonymous, error_code
from conftest import RunningServer

PROJECT = "secret"
RUNSET = {"name": "all", "filter": ""}


@pytest.fixture
def project(server: RunningServer, tmp_path: Path) -> str:
    assay.init(PROJECT, server=server.url, api_key=server.api_key, spool_dir=tmp_path).finish()
    return PROJECT


def set_role(server: RunningServer, user: str, role: str) -> None:
    with server.client() as admin:
        response = admin.put(f"/api/v1/projects/{PROJECT}/members/{user}", json={"role": role})
    assert response.status_code == 200, response.text


def test_private_project_hidden_from_others(server: RunningServer, project: str) -> None:
    key = add_user(server, "mallory")
    with server.client(key) as http:
        listed = http.get("/api/v1/projects").json()["projects"]
        runs = http.get(f"/api/v1/projects/{PROJECT}/runs")
        missing = http.get("/api/v1/projects/no-such-project/runs")
        runsets = http.get(f"/api/v1/projects/{PROJECT}/runsets")
        reports = http.get(f"/api/v1/projects/{PROJECT}/reports")

    assert [p["name"] for p in listed] == []
    assert runs.status_code == 404
    assert error_code(runs) == "project_not_found"
    # A hidden project returns the status and code of a missing one, so names cannot be probed.
    assert missing.status_code == runs.status_code
    assert error_code(missing) == error_code(runs)
    assert runsets.status_code == 404
    assert reports.status_code == 404


def test_private_project_needs_credentials(server: RunningServer, project: str) -> None:
    with anonymous(server) as http:
        runs = http.get(f"/api/v1/projects/{PROJECT}/runs")
        listed = http.get("/api/v1/projects")

    assert runs.status_code == 401
    assert listed.status_code == 200
    assert listed.json()["projects"] == []


def test_viewer_reads_but_cannot_write(server: RunningServer, project: str) -> None:
    key = add_user(server, "vera")
    set_role(server, "vera", "viewer")
    with server.client(key) as http:
        listed = http.get("/api/v1/projects").json()["projects"]
        runs = http.get(f"/api/v1/projects/{PROJECT}/runs")
        created = http.post(f"/api/v1/projects/{PROJECT}/runsets", json=RUNSET)
        report = http.post(f"/api/v1/projects/{PROJECT}/reports", json={"title": "x"})
        members = http.put(f"/api/v1/projects/{PROJECT}/members/vera", json={"role": "admin"})

    assert [p["name"] for p in listed] == [PROJECT]
    assert runs.status_code == 200
    assert len(runs.json()["runs"]) == 1
    assert created.status_code == 403
    assert "needs the editor role" in created.json()["error"]["message"]
    assert report.status_code == 403
    assert members.status_code == 403


def test_editor_writes_but_cannot_administer(server: RunningServer, project: str) -> None:
    key = add_user(server, "ed")
    set_role(server, "ed", "editor")
    with server.client(key) as http:
        created = http.post(f"/api/v1/projects/{PROJECT}/runsets", json=RUNSET)
        report = http.post(f"/api/v1/projects/{PROJECT}/reports", json={"title": "x"})
        public = http.patch(f"/api/v1/projects/{PROJECT}", json={"visibility": "public"})

    assert created.status_code == 201
    assert report.status_code == 201
    assert public.status_code == 403
    assert "needs the admin role" in public.json()["error"]["message"]


def test_viewer_cannot_log_runs(server: RunningServer, project: str, tmp_path: Path) -> None:
    key = add_user(server, "vic")
    set_role(server, "vic", "viewer")

    with pytest.raises(assay.AssayError, match="may not log runs to project 'secret'"):
        assay.init(PROJECT, server=server.url, api_key=key, spool_dir=tmp_path / "vic")


def test_removed_member_loses_access(server: RunningServer, project: str) -> None:
    key = add_user(server, "rem")
    set_role(server, "rem", "viewer")
    with server.client() as admin:
        removed = admin.delete(f"/api/v1/projects/{PROJECT}/members/rem")
    with server.client(key) as http:
        runs = http.get(f"/api/v1/projects/{PROJECT}/runs")

    assert removed.status_code == 204
    assert runs.status_code == 404


def test_public_project_open_to_anonymous(server: RunningServer, project: str) -> None:
    with server.client() as admin:
        made_public = admin.patch(f"/api/v1/projects/{PROJECT}", json={"visibility": "public"})
    with anonymous(server) as http:
        listed = http.get("/api/v1/projects").json()["projects"]
        runs = http.get(f"/api/v1/projects/{PROJECT}/runs")
        page = http.get(f"/projects/{PROJECT}")
        created = http.post(f"/api/v1/projects/{PROJECT}/runsets", json=RUNSET)

    assert made_public.status_code == 200
    assert [(p["name"], p["visibility"]) for p in listed] == [(PROJECT, "public")]
    assert runs.status_code == 200
    assert page.status_code == 200
    assert created.status_code == 403
    assert "anonymous visitors may only view" in created.json()["error"]["message"]


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/members/nobody", {"role": "viewer"}, "user 'nobody' does not exist"),
        ("/members/admin", {"role": "viewer"}, "owns project 'secret'"),
        ("/members/admin", {"role": "owner"}, "unknown role 'owner'"),
        ("", {"visibility": "everyone"}, 'send {"visibility": "public"}'),
    ],
)
def test_member_changes_rejected(
    server: RunningServer, project: str, path: str, body: dict[str, str], message: str
) -> None:
    with server.client() as admin:
        method = admin.patch if path == "" else admin.put
        response = method(f"/api/v1/projects/{PROJECT}{path}", json=body)

    assert response.status_code in (400, 404)
    assert message in response.json()["error"]["message"]


def test_members_listed_with_owner(server: RunningServer, project: str) -> None:
    add_user(server, "zed")
    set_role(server, "zed", "editor")
    with server.client() as admin:
        members = admin.get(f"/api/v1/projects/{PROJECT}/members").json()["members"]

    assert members == [
        {"name": "admin", "role": "admin", "owner": True},
        {"name": "zed", "role": "editor", "owner": False},
    ]
