"""What the browser app learns about its own access: ``can_edit``, ``caller_role``, pages."""

from __future__ import annotations

import httpx

from access.support import add_user, anonymous
from conftest import RunningServer

PROJECT = "team"


def set_role(server: RunningServer, user: str, role: str) -> None:
    with server.client() as admin:
        response = admin.put(f"/api/v1/projects/{PROJECT}/members/{user}", json={"role": role})
    assert response.status_code == 200, response.text


def share_token(server: RunningServer, report_id: str, role: str) -> str:
    with server.client() as admin:
        response = admin.post(f"/api/v1/reports/{report_id}/shares", json={"role": role})
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


def can_edit(http: httpx.Client, report_id: str, **params: str) -> object:
    response = http.get(f"/api/v1/projects/{PROJECT}/reports/{report_id}", params=params)
    assert response.status_code == 200, response.text
    return response.json()["can_edit"]


def test_report_can_edit_per_caller(server: RunningServer, report_id: str) -> None:
    vera = add_user(server, "vera")
    set_role(server, "vera", "viewer")
    ed = add_user(server, "ed")
    set_role(server, "ed", "editor")
    view_token = share_token(server, report_id, "view")
    edit_token = share_token(server, report_id, "edit")

    with server.client() as admin:
        assert can_edit(admin, report_id) is True
    with server.client(vera) as http:
        assert can_edit(http, report_id) is False
    with server.client(ed) as http:
        assert can_edit(http, report_id) is True
    with anonymous(server) as http:
        assert can_edit(http, report_id, share=view_token) is False
        assert can_edit(http, report_id, share=edit_token) is True


def test_report_can_edit_false_for_public_visitor(server: RunningServer, report_id: str) -> None:
    with server.client() as admin:
        made_public = admin.patch(f"/api/v1/projects/{PROJECT}", json={"visibility": "public"})
    assert made_public.status_code == 200, made_public.text

    with anonymous(server) as http:
        assert can_edit(http, report_id) is False


def test_viewer_with_edit_link_can_edit(server: RunningServer, report_id: str) -> None:
    vera = add_user(server, "vera")
    set_role(server, "vera", "viewer")
    edit_token = share_token(server, report_id, "edit")

    with server.client(vera) as http:
        assert can_edit(http, report_id) is False
        assert can_edit(http, report_id, share=edit_token) is True


def test_members_list_names_caller_role(server: RunningServer, report_id: str) -> None:
    vera = add_user(server, "vera")
    set_role(server, "vera", "viewer")
    ed = add_user(server, "ed")
    set_role(server, "ed", "editor")
    path = f"/api/v1/projects/{PROJECT}/members"

    with server.client() as admin:
        as_admin = admin.get(path).json()
    with server.client(vera) as http:
        as_viewer = http.get(path).json()
    with server.client(ed) as http:
        as_editor = http.get(path).json()

    assert as_admin["caller_role"] == "admin"
    assert as_admin["visibility"] == "private"
    assert as_viewer["caller_role"] == "viewer"
    assert as_editor["caller_role"] == "editor"
    assert [member["name"] for member in as_viewer["members"]] == ["admin", "ed", "vera"]


def test_members_list_shows_public_visibility(server: RunningServer, report_id: str) -> None:
    with server.client() as admin:
        made_public = admin.patch(f"/api/v1/projects/{PROJECT}", json={"visibility": "public"})
    assert made_public.status_code == 200, made_public.text

    with anonymous(server) as http:
        listed = http.get(f"/api/v1/projects/{PROJECT}/members")

    assert listed.status_code == 200
    assert listed.json()["visibility"] == "public"
    assert listed.json()["caller_role"] == "viewer"


def test_members_page_needs_project_access(server: RunningServer, report_id: str) -> None:
    path = f"/projects/{PROJECT}/members"
    with server.client() as admin:
        signed_in = admin.get(path)
    with anonymous(server) as http:
        without = http.get(path)
        with_link = http.get(path, params={"share": share_token(server, report_id, "view")})

    assert signed_in.status_code == 200
    assert 'id="app"' in signed_in.text
    assert without.status_code == 303
    assert without.headers["location"].startswith("/signin?next=")
    # A share link opens only its report, never the members page.
    assert with_link.status_code == 303
    assert with_link.headers["location"].startswith("/signin?next=")


def test_revoked_link_page_says_so(server: RunningServer, report_id: str) -> None:
    with server.client() as admin:
        created = admin.post(f"/api/v1/reports/{report_id}/shares", json={"role": "view"})
        share = created.json()
        revoked = admin.delete(f"/api/v1/reports/{report_id}/shares/{share['id']}")
    assert revoked.status_code == 204, revoked.text
    path = f"/projects/{PROJECT}/reports/{report_id}"

    with anonymous(server) as http:
        page = http.get(path, params={"share": share["token"]})
        guessed = http.get(path, params={"share": "x" * 43})

    # The app loads anyway and shows why the link no longer works.
    assert page.status_code == 401
    assert "invalid, revoked or expired" in page.text
    assert 'id="app"' in page.text
    assert guessed.status_code == 401
    assert "invalid, revoked or expired" in guessed.text
