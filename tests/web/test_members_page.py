"""The project members page: admins add, change and remove members and set visibility."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from conftest import RunningServer
from userkeys import add_user
from web.browsing import sign_in
from web.reports import PROJECT
from web.sharing import close_page, log_runs, open_page, sign_in_as

MEMBERS = f"/projects/{PROJECT}/members"


@pytest.fixture
def project(sqlite_server: RunningServer, tmp_path: Path) -> str:
    log_runs(sqlite_server, tmp_path, {"calm": 0.01})
    return PROJECT


@pytest.fixture
def admin(browser: Browser, sqlite_server: RunningServer, project: str) -> Iterator[Page]:
    page = open_page(browser, "about:blank")
    sign_in(page, sqlite_server, f"/projects/{PROJECT}")
    page.click(".top-bar a.members-link")
    page.wait_for_selector(".members-body[data-role]")
    yield page
    close_page(page)


def members(server: RunningServer) -> dict[str, object]:
    with server.client() as client:
        response = client.get(f"/api/v1/projects/{PROJECT}/members")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def roles(server: RunningServer) -> dict[str, str]:
    listed = members(server)["members"]
    return {member["name"]: member["role"] for member in listed}  # type: ignore[attr-defined]


def test_admin_adds_changes_and_removes(admin: Page, sqlite_server: RunningServer) -> None:
    add_user(sqlite_server, "alice")
    admin.locator("input.new-member-name").fill("alice")
    admin.locator("select.new-member-role").select_option("editor")
    admin.click("button.add-member")
    admin.wait_for_selector("tr[data-member=alice]")
    added = roles(sqlite_server)
    admin.locator("tr[data-member=alice] select.member-role").select_option("viewer")
    admin.wait_for_function(
        "() => document.querySelector('tr[data-member=alice] select.member-role')"
        ".value === 'viewer' && !document.querySelector('.members-error').textContent"
    )
    changed = None
    for _ in range(50):
        changed = roles(sqlite_server)
        if changed.get("alice") == "viewer":
            break
        admin.wait_for_timeout(100)
    admin.click("tr[data-member=alice] button.remove-member")
    admin.wait_for_selector("tr[data-member=alice]", state="detached")

    assert admin.url.endswith(MEMBERS)
    assert added == {"admin": "admin", "alice": "editor"}
    assert changed == {"admin": "admin", "alice": "viewer"}
    assert roles(sqlite_server) == {"admin": "admin"}
    assert "admin (owner)" in admin.locator("tr[data-member=admin]").inner_text()


def test_admin_switches_visibility(admin: Page, sqlite_server: RunningServer) -> None:
    before = admin.locator(".project-visibility").inner_text()
    admin.click("button.toggle-visibility:text('Make public')")
    admin.wait_for_selector(".members-body[data-visibility=public]")
    public = members(sqlite_server)["visibility"]
    admin.click("button.toggle-visibility:text('Make private')")
    admin.wait_for_selector(".members-body[data-visibility=private]")

    assert before.startswith("Private")
    assert public == "public"
    assert members(sqlite_server)["visibility"] == "private"


def test_unknown_user_error_inline(admin: Page) -> None:
    admin.locator("input.new-member-name").fill("nobody")
    admin.click("button.add-member")
    error = admin.locator(".members-error")
    error.wait_for(state="visible")

    assert "user 'nobody' does not exist" in error.inner_text()
    assert admin.locator("tr[data-member=nobody]").count() == 0


def test_empty_name_error_inline(admin: Page) -> None:
    admin.click("button.add-member")

    assert admin.locator(".members-error").inner_text() == "Type the name of the user to add."


def test_viewer_sees_roles_without_controls(
    browser: Browser, sqlite_server: RunningServer, project: str
) -> None:
    key = add_user(sqlite_server, "vera")
    with sqlite_server.client() as client:
        added = client.put(f"/api/v1/projects/{PROJECT}/members/vera", json={"role": "viewer"})
    assert added.status_code == 200, added.text
    page = sign_in_as(browser, sqlite_server, key, MEMBERS)
    page.wait_for_selector(".members-body[data-role=viewer]")
    rows = page.locator("table.member-list tbody tr").all_inner_texts()
    controls = page.locator(
        "select.member-role, button.remove-member, .add-member-form, .toggle-visibility"
    ).count()
    close_page(page)

    assert [row.split("\t")[:2] for row in rows] == [
        ["admin", "admin (owner)"],
        ["vera", "viewer"],
    ]
    assert controls == 0


def test_missing_project_shows_not_found(
    browser: Browser, sqlite_server: RunningServer, project: str
) -> None:
    page = sign_in_as(browser, sqlite_server, sqlite_server.api_key, "/projects/nothing/members")
    body = page.locator(".members-body").inner_text()
    error = page.locator(".members-error").inner_text()
    close_page(page)

    assert body == "Project not found."
    assert "project 'nothing' does not exist" in error
