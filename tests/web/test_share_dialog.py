"""The report's Share dialog: create a link, copy it once, list and revoke links, errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page

from conftest import RunningServer
from web.reports import PROJECT, create_report, open_report
from web.sharing import close_page, log_runs


@pytest.fixture
def editor(browser: Browser, sqlite_server: RunningServer, tmp_path: Path) -> Iterator[Page]:
    log_runs(sqlite_server, tmp_path, {"calm": 0.01})
    report_id = create_report(sqlite_server, "Dialog")
    page = open_report(browser, sqlite_server, report_id)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.report_id = report_id  # type: ignore[attr-defined]
    yield page
    close_page(page)


def open_dialog(page: Page) -> None:
    page.click("button.share-report")
    page.wait_for_selector("dialog.share-dialog[data-shares]")


def test_dialog_creates_copies_and_revokes(editor: Page, sqlite_server: RunningServer) -> None:
    report_id = editor.report_id  # type: ignore[attr-defined]
    open_dialog(editor)
    editor.locator("select.share-role").select_option("edit")
    editor.locator("input.share-expiry").fill("2030-06-01T12:00")
    editor.click("button.create-share")
    url = editor.locator("input.share-url").input_value()
    editor.click("button.copy-share")
    editor.wait_for_selector(".share-copied:text('Copied.')")
    copied = editor.evaluate("() => navigator.clipboard.readText()")
    editor.wait_for_selector("dialog.share-dialog[data-shares='1']")
    row = editor.locator("table.share-list tbody tr").first
    cells = row.locator("td").all_inner_texts()
    api_url = url.replace(f"/projects/{PROJECT}/", f"/api/v1/projects/{PROJECT}/")
    with httpx.Client(timeout=30) as http:
        before = http.get(api_url)
    editor.click("button.close-share")
    open_dialog(editor)
    shown_again = editor.locator("input.share-url").count()
    editor.locator("table.share-list button.revoke-share").click()
    editor.wait_for_selector("table.share-list tr[data-revoked=true]")
    with httpx.Client(timeout=30) as http:
        after = http.get(api_url)

    assert url.startswith(f"{sqlite_server.url}/projects/{PROJECT}/reports/{report_id}?share=")
    assert copied == url
    assert cells[0] == "edit"
    assert cells[1] == "admin"
    assert "2030" in cells[3]
    assert cells[4] == ""
    assert before.status_code == 200
    assert before.json()["can_edit"] is True
    assert shown_again == 0
    assert editor.locator("table.share-list button.revoke-share").count() == 0
    assert editor.locator("table.share-list td.share-revoked-cell").inner_text() != ""
    assert after.status_code == 401


def test_dialog_lists_link_without_expiry(editor: Page) -> None:
    open_dialog(editor)
    editor.click("button.create-share")
    editor.wait_for_selector("dialog.share-dialog[data-shares='1']")
    cells = editor.locator("table.share-list tbody tr").first.locator("td").all_inner_texts()

    assert cells[0] == "view"
    assert cells[3] == "never"
    assert "?share=" in editor.locator("input.share-url").input_value()


def test_dialog_shows_api_error_inline(editor: Page) -> None:
    open_dialog(editor)
    editor.locator("input.share-expiry").fill("2001-01-01T00:00")
    editor.click("button.create-share")
    error = editor.locator(".share-error")
    error.wait_for(state="visible")

    assert "is in the past" in error.inner_text()
    assert editor.locator("input.share-url").count() == 0
    assert editor.locator("dialog.share-dialog").get_attribute("data-shares") == "0"


def test_dialog_shows_revoke_error_inline(editor: Page, sqlite_server: RunningServer) -> None:
    report_id = editor.report_id  # type: ignore[attr-defined]
    open_dialog(editor)
    editor.click("button.create-share")
    editor.wait_for_selector("dialog.share-dialog[data-shares='1']")
    # Another editor deletes the report meanwhile, so the revoke finds no report.
    with sqlite_server.client() as client:
        deleted = client.delete(f"/api/v1/projects/{PROJECT}/reports/{report_id}")
    assert deleted.status_code == 204
    editor.click("table.share-list button.revoke-share")
    error = editor.locator(".share-error")
    error.wait_for(state="visible")

    assert "does not exist" in error.inner_text()
    assert editor.locator("table.share-list button.revoke-share").is_enabled()


def test_copy_failure_leaves_link_selected(editor: Page) -> None:
    editor.context.clear_permissions()
    # Without clipboard access, writeText rejects, so the page must show an error and
    # select the link.
    editor.evaluate(
        "() => { navigator.clipboard.writeText = () => Promise.reject(new Error('denied')); }"
    )
    open_dialog(editor)
    editor.click("button.create-share")
    editor.click("button.copy-share")
    message = editor.locator(".share-copied")
    message.wait_for(state="visible")
    selected = editor.evaluate(
        "() => { const f = document.querySelector('input.share-url');"
        " return f.value.slice(f.selectionStart, f.selectionEnd); }"
    )

    assert "Copying failed (denied)" in message.inner_text()
    assert selected == editor.locator("input.share-url").input_value()
