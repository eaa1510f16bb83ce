"""The reports list and the report pages' error paths, in Chromium and over plain HTTP."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from playwright.sync_api import Browser, Dialog, Page

from conftest import RunningServer
from userkeys import add_user
from web.browsing import sign_in, start_run
from web.reports import PROJECT, create_report, document_json, editor_text
from web.sharing import close_page, sign_in_as


@pytest.fixture
def project(sqlite_server: RunningServer, tmp_path: Path) -> str:
    with start_run(sqlite_server, tmp_path, PROJECT, name="only", config={"lr": 0.1}) as run:
        run.log({"loss": 1.0}, step=0)
    return PROJECT


def report_titles(server: RunningServer) -> list[str]:
    with server.client() as client:
        reports = client.get(f"/api/v1/projects/{PROJECT}/reports").json()["reports"]
    return [report["title"] for report in reports]


def test_list_creates_renames_deletes(
    page: Page, sqlite_server: RunningServer, project: str
) -> None:
    create_report(sqlite_server, "Old notes")
    sign_in(page, sqlite_server, f"/projects/{project}/reports")
    listed = page.locator("table.reports tbody tr").all_inner_texts()
    page.once("dialog", lambda dialog: dialog.accept("Older notes"))
    page.locator("tr:has-text('Old notes') button.rename-report").click()
    page.wait_for_selector("tr a:text('Older notes')")
    renamed = report_titles(sqlite_server)
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("tr:has-text('Older notes') button.delete-report").click()
    page.wait_for_selector("table.reports tbody tr", state="detached")
    after_delete = report_titles(sqlite_server)
    page.fill("input.new-report-title", "Fresh findings")
    page.click("button.create-report")
    page.wait_for_url("**/reports/*")
    page.wait_for_selector("body[data-loaded]")

    assert len(listed) == 1
    assert "Old notes" in listed[0]
    assert renamed == ["Older notes"]
    assert after_delete == []
    assert editor_text(page, ".report-title") == "Fresh findings"
    assert report_titles(sqlite_server) == ["Fresh findings"]


def test_viewer_list_has_no_edit_controls(
    browser: Browser, sqlite_server: RunningServer, project: str
) -> None:
    create_report(sqlite_server, "Read me")
    key = add_user(sqlite_server, "vera")
    with sqlite_server.client() as client:
        added = client.put(f"/api/v1/projects/{PROJECT}/members/vera", json={"role": "viewer"})
        admin_list = client.get(f"/api/v1/projects/{PROJECT}/reports").json()
    with httpx.Client(base_url=sqlite_server.url, timeout=30) as client:
        headers = {"Authorization": f"Bearer {key}"}
        viewer_list = client.get(f"/api/v1/projects/{PROJECT}/reports", headers=headers).json()
    page = sign_in_as(browser, sqlite_server, key, f"/projects/{PROJECT}/reports")
    listed = page.locator("table.reports tbody tr").all_inner_texts()
    notice = page.locator(".read-only-notice").inner_text()
    controls = page.locator(
        "button.create-report, input.new-report-title, button.rename-report, button.delete-report"
    ).count()
    close_page(page)

    assert added.status_code == 200, added.text
    assert admin_list["can_edit"] is True
    assert viewer_list["can_edit"] is False
    assert len(listed) == 1
    assert "Read me" in listed[0]
    assert "needs the editor role" in notice
    assert controls == 0


def test_cancelled_delete_keeps_report(
    page: Page, sqlite_server: RunningServer, project: str
) -> None:
    create_report(sqlite_server, "Keep me")
    sign_in(page, sqlite_server, f"/projects/{project}/reports")

    def dismiss(dialog: Dialog) -> None:
        dialog.dismiss()

    page.once("dialog", dismiss)
    page.locator("button.delete-report").click()
    page.wait_for_timeout(200)  # a delete request, if one were sent, would have left by now

    assert page.locator("table.reports tbody tr").count() == 1
    assert report_titles(sqlite_server) == ["Keep me"]


def test_too_long_title_shows_error(
    page: Page, sqlite_server: RunningServer, project: str
) -> None:
    sign_in(page, sqlite_server, f"/projects/{project}/reports")
    page.fill("input.new-report-title", "x" * 501)
    page.click("button.create-report")
    error = page.locator("main .error")
    error.wait_for(state="visible")

    assert "'title' is 501 characters; at most 500 are allowed" in error.inner_text()
    assert report_titles(sqlite_server) == []


def test_unknown_report_is_not_found(
    page: Page, sqlite_server: RunningServer, project: str
) -> None:
    sign_in(page, sqlite_server, "/")
    page.goto(f"{sqlite_server.url}/projects/{project}/reports/nosuchreport")
    page.wait_for_selector("h1:text('Report not found')")

    assert "nosuchreport" in page.locator("main p").inner_text()


def test_unknown_project_reports_not_found(page: Page, sqlite_server: RunningServer) -> None:
    sign_in(page, sqlite_server, "/")
    page.goto(f"{sqlite_server.url}/projects/nowhere/reports")

    page.wait_for_selector("h1:text('Project not found')")


def test_deleted_report_closes_editor(
    page: Page, sqlite_server: RunningServer, project: str
) -> None:
    report = create_report(sqlite_server, "Doomed")
    sign_in(page, sqlite_server, f"/projects/{project}/reports/{report}")
    with sqlite_server.client() as client:
        assert client.delete(f"/api/v1/projects/{project}/reports/{report}").status_code == 204
    error = page.locator(".report-messages .error")
    error.wait_for()

    assert "code 4404" in error.inner_text()


def test_add_to_existing_report(page: Page, sqlite_server: RunningServer, project: str) -> None:
    report = create_report(sqlite_server, "Existing")
    sign_in(page, sqlite_server, f"/projects/{project}")
    page.wait_for_selector('.plot[data-key="loss"][data-revision]')
    page.locator('.panel[data-panel-type="line"] button[data-action="add to report"]').click()
    dialog = page.locator("dialog.add-to-report")
    dialog.locator("select.report-choice option:text('Existing')").wait_for(state="attached")
    dialog.locator("select.report-choice").select_option(report)
    title_hidden = dialog.locator("input.report-title-input").is_hidden()
    dialog.locator("button.confirm-add-to-report").click()
    page.wait_for_url(f"**/reports/{report}")
    page.wait_for_selector(".report-grid .run-set")
    blocks = document_json(page)["blocks"]

    assert title_hidden
    assert [block["type"] for block in blocks] == ["panel_grid"]
    assert blocks[0]["run_sets"][0] == {
        "id": blocks[0]["run_sets"][0]["id"],
        "name": "all runs",
        "filter": "",
        "grouping": {"keys": [], "aggregate": "mean", "band": "std"},
        "sort": {"field": "created_at", "direction": "desc"},
        "colour": "#1f77b4",
        "active": True,
        "frozen": False,
    }
    assert report_titles(sqlite_server) == ["Existing"]


def test_add_to_report_error_stays_in_dialog(
    page: Page, sqlite_server: RunningServer, project: str
) -> None:
    sign_in(page, sqlite_server, f"/projects/{project}")
    page.wait_for_selector('.plot[data-key="loss"][data-revision]')
    page.locator('.panel[data-panel-type="line"] button[data-action="add to report"]').click()
    dialog = page.locator("dialog.add-to-report")
    dialog.locator("input.report-title-input").fill("y" * 501)
    dialog.locator("button.confirm-add-to-report").click()
    error = dialog.locator(".error")
    error.wait_for(state="visible")

    assert "at most 500 are allowed" in error.inner_text()
    assert dialog.locator("button.confirm-add-to-report").is_enabled()
    assert report_titles(sqlite_server) == []


@pytest.mark.parametrize("path", ["/projects/demo/reports", "/projects/demo/reports/r1"])
def test_report_pages_need_sign_in(sqlite_server: RunningServer, path: str) -> None:
    response = httpx.get(sqlite_server.url + path)

    assert response.status_code == 303
    assert response.headers["location"] == "/signin?" + urlencode({"next": path})


@pytest.mark.parametrize("path", ["/projects/demo/reports", "/projects/demo/reports/r1"])
def test_report_pages_serve_shell(sqlite_server: RunningServer, path: str) -> None:
    with sqlite_server.client() as client:
        response = client.get(path)

    assert response.status_code == 200
    assert '<script type="module" src="/static/app.js?v=' in response.text


def test_katex_fonts_served_from_bundle(sqlite_server: RunningServer) -> None:
    fonts = sorted(
        (Path(__file__).parents[2] / "server/assay_server/static/fonts").glob("*.woff2")
    )
    with sqlite_server.client() as client:
        response = client.get(f"/static/fonts/{fonts[0].name}")
        stylesheet = client.get("/static/app.css").text

    assert any(font.name.startswith("KaTeX_Main-Regular") for font in fonts)
    assert response.status_code == 200
    assert response.content == fonts[0].read_bytes()
    assert f'url("./fonts/{fonts[0].name}")' in stylesheet


def test_add_to_deleted_report_fails(
    page: Page, sqlite_server: RunningServer, project: str
) -> None:
    report = create_report(sqlite_server, "Gone soon")
    sign_in(page, sqlite_server, f"/projects/{project}")
    page.wait_for_selector('.plot[data-key="loss"][data-revision]')
    page.locator('.panel[data-panel-type="line"] button[data-action="add to report"]').click()
    dialog = page.locator("dialog.add-to-report")
    dialog.locator("select.report-choice option:text('Gone soon')").wait_for(state="attached")
    dialog.locator("select.report-choice").select_option(report)
    with sqlite_server.client() as client:
        assert client.delete(f"/api/v1/projects/{project}/reports/{report}").status_code == 204
    dialog.locator("button.confirm-add-to-report").click()
    error = dialog.locator(".error")
    error.wait_for(state="visible")

    assert "did not load within 10 s" in error.inner_text()
    assert page.url.endswith(f"/projects/{project}")
    assert report_titles(sqlite_server) == []


def test_search_with_symbols_carried(
    page: Page, sqlite_server: RunningServer, project: str, tmp_path: Path
) -> None:
    name = 'cut.(v2) "a\\b" [x]*'
    with start_run(sqlite_server, tmp_path, project, name=name) as run:
        run.log({"loss": 2.0}, step=0)
    sign_in(page, sqlite_server, f"/projects/{project}")
    page.wait_for_selector('.plot[data-key="loss"][data-revision]')
    page.fill("input.run-search", '(V2) "A\\B" [X]*')
    page.wait_for_selector("table tbody tr >> nth=0")
    shown = page.locator(".run-table tbody tr").count()
    page.locator('.panel[data-panel-type="line"] button[data-action="add to report"]').click()
    dialog = page.locator("dialog.add-to-report")
    dialog.locator("button.confirm-add-to-report").click()
    page.wait_for_url("**/reports/*")
    count = page.locator(".run-set .run-set-count")
    count.wait_for()
    page.wait_for_function("() => document.querySelector('.run-set-count').textContent !== ''")

    assert shown == 1
    assert count.inner_text() == "1 runs"
    assert page.locator(".run-set .run-set-error").inner_text() == ""
