"""Reports opened through share links, and by project viewers: read-only, live, revocable."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route

from assay_server import ratelimit
from conftest import RunningServer
from userkeys import add_user
from web.browsing import start_run
from web.reports import (
    PROJECT,
    create_report,
    document_json,
    open_report,
    report_content,
    wait_for_lines,
)
from web.sharing import (
    BRIEF_SHARE_WINDOW,
    build_grid_report,
    close_page,
    create_share,
    log_runs,
    open_page,
    sign_in_as,
    wait_until_stored,
)

#: Endpoints that return 401 or 403 to a share link, so the page must not call them.
NOT_FOR_LINKS = ("/api/v1/whoami", "/keys", "/layout", "/runsets", "/api/v1/projects?")


@dataclass(frozen=True)
class SharedReport:
    report_id: str
    #: Run ids by run name.
    runs: dict[str, str]


@pytest.fixture
def shared(browser: Browser, sqlite_server: RunningServer, tmp_path: Path) -> SharedReport:
    """A report whose grid draws the runs with lr >= 0.5: "wild" but not "calm"."""
    runs = log_runs(sqlite_server, tmp_path, {"calm": 0.01, "wild": 1.0})
    return SharedReport(build_grid_report(browser, sqlite_server, "Shared findings"), runs)


@pytest.fixture
def opened() -> Iterator[list[Page]]:
    pages: list[Page] = []
    yield pages
    for page in pages:
        close_page(page)


def open_link(browser: Browser, url: str, opened: list[Page]) -> Page:
    page = open_page(browser, url)
    opened.append(page)
    page.wait_for_selector("body[data-loaded]")
    page.wait_for_selector("body[data-runs-live=subscribed]")
    return page


def test_view_link_shows_read_only_report(
    browser: Browser,
    sqlite_server: RunningServer,
    shared: SharedReport,
    opened: list[Page],
) -> None:
    report_id = shared.report_id
    runs = shared.runs
    share = create_share(sqlite_server, report_id, "view")
    page = open_link(browser, share["url"], opened)
    wait_for_lines(page, [runs["wild"]])
    page.click(".report-title .cm-content")
    page.keyboard.type("typed by a visitor")
    page.wait_for_timeout(300)

    assert page.locator(".read-only-notice").is_visible()
    assert "Read-only" in page.locator(".read-only-notice").inner_text()
    assert page.locator(".report-title .cm-content").get_attribute("contenteditable") == "false"
    assert document_json(page)["title"] == "Shared findings"
    assert report_content(sqlite_server, report_id)["title"] == "Shared findings"
    assert page.locator("button.add-block").count() == 0
    assert page.locator(".block-tools button").count() == 0
    assert page.locator(".panel-tools button").count() == 0
    assert page.locator(".add-panel-form").count() == 0
    assert page.locator("button.add-run-set").count() == 0
    assert page.locator("button.remove-run-set").count() == 0
    assert page.locator(".run-set input.run-set-filter").is_disabled()
    assert page.locator(".run-set input.run-set-active").is_disabled()
    assert page.locator(".panel-controls select.smoothing").is_disabled()
    assert page.locator(".panel-controls input.log_y").is_disabled()
    assert page.locator("button.save-version").count() == 0
    assert page.locator("button.share-report").count() == 0
    assert page.locator("button.sign-out").count() == 0
    assert page.locator(".top-bar .reports-link").count() == 0


def test_link_requests_carry_share(
    browser: Browser,
    sqlite_server: RunningServer,
    shared: SharedReport,
    opened: list[Page],
) -> None:
    share = create_share(sqlite_server, shared.report_id, "view")
    page = open_link(browser, share["url"], opened)
    wait_for_lines(page, [shared.runs["wild"]])
    api = [url for url in page.requests if "/api/v1/" in url]  # type: ignore[attr-defined]
    sockets = page.sockets  # type: ignore[attr-defined]

    # The report and the line figure. The runs arrive on the live socket.
    assert len(api) >= 2
    for url in api:
        assert parse_qs(urlsplit(url).query).get("share") == [share["token"]], url
        assert not any(path in url for path in NOT_FOR_LINKS), url
    assert len(sockets) == 2
    for url in sockets:
        assert parse_qs(urlsplit(url).query).get("share") == [share["token"]], url


def test_view_link_draws_new_runs_live(
    browser: Browser,
    sqlite_server: RunningServer,
    shared: SharedReport,
    opened: list[Page],
    tmp_path: Path,
) -> None:
    runs = shared.runs
    share = create_share(sqlite_server, shared.report_id, "view")
    page = open_link(browser, share["url"], opened)
    wait_for_lines(page, [runs["wild"]])
    with (
        start_run(sqlite_server, tmp_path, PROJECT, name="late", config={"lr": 2.0}) as late,
        start_run(
            sqlite_server, tmp_path, PROJECT, name="outside", config={"lr": 0.02}
        ) as outside,
    ):
        for step in range(3):
            late.log({"loss": 5.0 - step}, step=step)
            outside.log({"loss": 1.0}, step=step)
        wait_for_lines(page, [runs["wild"], late.id])
        for step in range(3, 6):
            late.log({"loss": 5.0 - step}, step=step)
        wait_for_length(page, late.id, 6)

    assert page.locator(".run-set .run-set-count").inner_text() == "2 runs"
    assert f"line-{outside.id}" not in page.evaluate(
        """() => document.querySelector('.report-grid .plot[data-key="loss"]')
            .data.map((trace) => trace.uid)"""
    )


def test_revoked_link_stops_working(
    browser: Browser,
    sqlite_server: RunningServer,
    shared: SharedReport,
    opened: list[Page],
) -> None:
    report_id = shared.report_id
    share = create_share(sqlite_server, report_id, "view")
    page = open_link(browser, share["url"], opened)
    with sqlite_server.client() as client:
        revoked = client.delete(f"/api/v1/reports/{report_id}/shares/{share['id']}")
    assert revoked.status_code == 204
    page.wait_for_selector("body[data-link-revoked]")
    shown = page.locator(".report-messages").inner_text()
    page.reload()
    reloaded = page.locator("h1").inner_text()

    assert "This share link no longer works" in shown
    assert "revoked" in shown
    assert reloaded == "This share link no longer works"
    assert "invalid, revoked or expired" in page.locator("body").inner_text()


def test_edit_link_gets_full_editor(
    browser: Browser,
    sqlite_server: RunningServer,
    shared: SharedReport,
    opened: list[Page],
) -> None:
    report_id = shared.report_id
    share = create_share(sqlite_server, report_id, "edit")
    page = open_link(browser, share["url"], opened)
    page.click(".report-title .cm-content")
    page.keyboard.press("End")
    page.keyboard.type(" (edited)")
    page.wait_for_function(
        "() => window.assayReport.doc.getText('title').toString().endsWith('(edited)')"
    )
    page.click("button.add-block:text('Add text')")
    page.wait_for_selector(".block-markdown .cm-content")

    assert page.locator(".read-only-notice").count() == 0
    assert page.locator(".run-set input.run-set-filter").is_enabled()
    assert page.locator(".panel-tools button").count() > 0
    # Managing links needs a project role, which a link never grants.
    assert page.locator("button.share-report").count() == 0
    stored = None
    for _ in range(100):
        stored = report_content(sqlite_server, report_id)
        if stored["title"].endswith("(edited)") and len(stored["blocks"]) == 2:
            break
        page.wait_for_timeout(100)
    assert stored is not None
    assert stored["title"] == "Shared findings (edited)"
    assert [block["type"] for block in stored["blocks"]] == ["panel_grid", "markdown"]


def test_viewer_member_sees_read_only(
    browser: Browser,
    sqlite_server: RunningServer,
    shared: SharedReport,
    opened: list[Page],
) -> None:
    key = add_user(sqlite_server, "vera")
    with sqlite_server.client() as client:
        added = client.put(f"/api/v1/projects/{PROJECT}/members/vera", json={"role": "viewer"})
    assert added.status_code == 200, added.text
    page = sign_in_as(
        browser, sqlite_server, key, f"/projects/{PROJECT}/reports/{shared.report_id}"
    )
    opened.append(page)
    wait_for_lines(page, [shared.runs["wild"]])
    page.locator("details.versions summary").click()

    assert page.locator(".read-only-notice").is_visible()
    assert page.locator("button.add-block").count() == 0
    assert page.locator(".run-set input.run-set-filter").is_disabled()
    assert page.locator("button.share-report").count() == 0
    assert page.locator("button.save-version").count() == 0
    assert page.locator("button.restore-version").count() == 0
    assert page.locator("button.sign-out").count() == 1


def test_view_link_follows_changed_filter(
    browser: Browser,
    sqlite_server: RunningServer,
    shared: SharedReport,
    opened: list[Page],
    tmp_path: Path,
) -> None:
    runs = shared.runs
    report_id = shared.report_id
    with start_run(sqlite_server, tmp_path, PROJECT, name="slow", config={"lr": 0.1}) as slow:
        for step in range(3):
            slow.log({"loss": 0.3}, step=step)
        viewer = open_link(browser, create_share(sqlite_server, report_id, "view")["url"], opened)
        editor = open_link(browser, create_share(sqlite_server, report_id, "edit")["url"], opened)
        wait_for_lines(viewer, [runs["wild"]])
        editor.locator(".run-set input.run-set-filter").fill("config.lr < 0.5")
        editor.locator(".run-set input.run-set-filter").press("Enter")
        wait_for_lines(viewer, [runs["calm"], slow.id])
        # The run set selects slow only after the viewer subscribed, so its new
        # points reach the viewer only if the page subscribes again.
        for step in range(3, 6):
            slow.log({"loss": 0.3}, step=step)
        wait_for_length(viewer, slow.id, 6)

    assert viewer.locator(".run-set input.run-set-filter").input_value() == "config.lr < 0.5"
    assert viewer.locator(".run-set .run-set-count").inner_text() == "2 runs"


def wait_for_length(page: Page, run_id: str, count: int) -> None:
    """Wait until the loss panel's line for ``run_id`` has at least ``count`` points."""
    page.wait_for_function(
        """([uid, count]) => {
            const plot = document.querySelector('.report-grid .plot[data-key="loss"]');
            const found = (plot?.data ?? []).find((trace) => trace.uid === uid);
            return found !== undefined && found.x.length >= count;
        }""",
        arg=[f"line-{run_id}", count],
    )


def test_link_revoked_before_app_loads(
    browser: Browser, sqlite_server: RunningServer, shared: SharedReport
) -> None:
    report_id = shared.report_id
    share = create_share(sqlite_server, report_id, "view")
    context = browser.new_context()
    opened_page = context.new_page()
    errors: list[str] = []
    opened_page.on("pageerror", lambda error: errors.append(str(error)))

    def revoke_then_serve(route: Route) -> None:
        # The page's HTML passed the server's check. The link is revoked
        # before the app makes its first request.
        with sqlite_server.client() as client:
            revoked = client.delete(f"/api/v1/reports/{report_id}/shares/{share['id']}")
        assert revoked.status_code == 204
        route.continue_()

    opened_page.route("**/static/app.js*", revoke_then_serve)
    opened_page.goto(share["url"])
    opened_page.wait_for_selector("main.report-failure")
    heading = opened_page.locator("h1").inner_text()
    text = opened_page.locator("main").inner_text()
    context.close()

    assert heading == "This share link no longer works"
    assert "invalid, revoked or expired" in text
    assert errors == []


def test_link_draws_metric_x_axis(
    browser: Browser,
    sqlite_server: RunningServer,
    shared: SharedReport,
    opened: list[Page],
    tmp_path: Path,
) -> None:
    with start_run(sqlite_server, tmp_path, PROJECT, name="paired", config={"lr": 3.0}) as run:
        for step in range(3):
            run.log({"loss": 1.0 / (step + 1), "tokens": 100.0 * step}, step=step)
    editor = open_report(browser, sqlite_server, shared.report_id)
    opened.append(editor)
    editor.locator(".panel-controls select.x-axis").select_option("metric:tokens")
    wait_until_stored(
        sqlite_server,
        shared.report_id,
        lambda grid: grid["panels"][0]["options"].get("x") == "metric:tokens",
    )
    page = open_link(browser, create_share(sqlite_server, shared.report_id, "view")["url"], opened)
    wait_for_lines(page, [shared.runs["wild"], run.id])
    plot = page.locator('.report-grid .plot[data-key="loss"]')
    x = page.evaluate(
        """(uid) => Array.from(document.querySelector('.report-grid .plot[data-key="loss"]')
            .data.find((trace) => trace.uid === uid).x)""",
        f"line-{run.id}",
    )

    assert plot.get_attribute("data-error") is None
    assert x == [0.0, 100.0, 200.0]
    assert page.locator(".panel-controls select.x-axis").input_value() == "metric:tokens"


def test_public_visitor_reads_report(
    browser: Browser, sqlite_server: RunningServer, shared: SharedReport, opened: list[Page]
) -> None:
    with sqlite_server.client() as client:
        made_public = client.patch(f"/api/v1/projects/{PROJECT}", json={"visibility": "public"})
    assert made_public.status_code == 200, made_public.text
    page = open_link(
        browser, f"{sqlite_server.url}/projects/{PROJECT}/reports/{shared.report_id}", opened
    )
    wait_for_lines(page, [shared.runs["wild"]])

    assert page.locator(".read-only-notice").is_visible()
    assert page.locator("button.add-block").count() == 0
    assert page.locator("button.share-report").count() == 0
    assert page.evaluate("() => window.assayReport.doc.getText('title').toString()") == (
        "Shared findings"
    )


def test_edit_link_adds_drawn_metric_panel(
    browser: Browser, sqlite_server: RunningServer, shared: SharedReport, opened: list[Page]
) -> None:
    share = create_share(sqlite_server, shared.report_id, "edit")
    page = open_link(browser, share["url"], opened)
    form = page.locator(".report-grid .add-panel-form")
    form.locator("summary").click()
    form.locator("select.panel-type").select_option("line")
    offered = form.locator("select[name=key] option").all_inner_texts()
    form.locator("button.add-panel").click()
    page.wait_for_function(
        "() => document.querySelectorAll('.report-grid .plot[data-key=\"loss\"]').length === 2"
    )
    page.wait_for_function(
        """(uid) => [...document.querySelectorAll('.report-grid .plot[data-key="loss"]')]
            .every((plot) => (plot.data ?? []).some((trace) => trace.uid === uid))""",
        arg=f"line-{shared.runs['wild']}",
    )
    errors = page.locator('.report-grid .plot[data-key="loss"][data-error]').count()

    # The link may draw only what the report draws, so only "loss" is offered.
    assert offered == ["loss"]
    assert errors == 0


def test_expired_link_stops_working(
    browser: Browser, sqlite_server: RunningServer, shared: SharedReport, opened: list[Page]
) -> None:
    with sqlite_server.client() as client:
        created = client.post(
            f"/api/v1/reports/{shared.report_id}/shares",
            json={"role": "view", "expires_at": time.time() + 4},
        )
    assert created.status_code == 201, created.text
    page = open_link(browser, created.json()["url"], opened)
    loaded_at = time.monotonic()
    page.wait_for_selector("body[data-link-revoked]")

    assert time.monotonic() - loaded_at < 15
    assert "This share link no longer works" in page.locator(".report-messages").inner_text()
    assert page.locator("body").get_attribute("data-runs-live") == "offline"


def limited_report(server: RunningServer, tmp_path: Path) -> tuple[str, dict[str, Any]]:
    """Create a report in a project with one run, and a view link to it."""
    log_runs(server, tmp_path, {"calm": 0.01})
    report_id = create_report(server, "Limited")
    return report_id, create_share(server, report_id, "view")


def guess_share_link(server: RunningServer, report_id: str) -> None:
    """Open the report with a wrong token from this address, which reaches the limit of one."""
    response = httpx.get(
        f"{server.url}/api/v1/projects/{PROJECT}/reports/{report_id}",
        params={"share": "a-guessed-token"},
    )
    assert response.status_code == 401, response.text


def test_limited_link_shows_retry_time(
    browser: Browser, limited_server: RunningServer, opened: list[Page], tmp_path: Path
) -> None:
    report_id, share = limited_report(limited_server, tmp_path)
    guess_share_link(limited_server, report_id)
    page = open_page(browser, "about:blank")
    opened.append(page)
    page.clock.install()
    page.goto(share["url"])
    page.wait_for_selector("main.rate-limited")
    heading = page.locator("h1").inner_text()
    wait = page.locator(".retry-wait").inner_text()
    countdown = re.fullmatch(r"Try again in (\d+) seconds?, at .+\.", wait)
    page.clock.fast_forward(ratelimit.SHARE_WINDOW * 1000)
    page.wait_for_selector(".retry-wait[data-seconds-left='0']")

    assert heading == "Too many share-link look-ups"
    assert countdown is not None, wait
    assert 1 <= int(countdown.group(1)) <= ratelimit.SHARE_WINDOW
    assert "Something went wrong" not in page.locator("body").inner_text()
    assert page.locator(".retry-wait").inner_text() == "You can try again now."
    assert page.locator("button.try-again").is_visible()


def test_limited_link_opens_after_wait(
    browser: Browser, limited_server: RunningServer, opened: list[Page], tmp_path: Path
) -> None:
    report_id, share = limited_report(limited_server, tmp_path)
    guess_share_link(limited_server, report_id)
    page = open_page(browser, share["url"])
    opened.append(page)
    page.wait_for_selector("main.rate-limited")
    # Forget the failed look-up, as the end of the limit's window would.
    limited_server.app.state.limits.store.counters.clear()
    page.click("button.try-again")
    page.wait_for_selector("body[data-loaded]")

    assert page.locator("main.rate-limited").count() == 0
    assert document_json(page)["title"] == "Limited"


def test_link_limited_after_page_counts_down(
    browser: Browser, limited_server: RunningServer, tmp_path: Path
) -> None:
    report_id, share = limited_report(limited_server, tmp_path)
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    statuses: list[int] = []
    page.on(
        "response",
        lambda response: (
            statuses.append(response.status) if response.url == share["url"] else None
        ),
    )

    def guess_then_serve(route: Route) -> None:
        # The page passed the limit. The guess reaches it before the app's first request.
        guess_share_link(limited_server, report_id)
        route.continue_()

    page.route("**/static/app.js*", guess_then_serve)
    page.goto(share["url"])
    page.wait_for_selector("main.rate-limited")
    root = page.locator("#app").get_attribute("data-retry-after")
    wait = page.locator(".retry-wait").inner_text()
    context.close()

    # The page came with 200, so the wait is the API's Retry-After header.
    assert statuses == [200]
    assert root is None
    assert re.fullmatch(r"Try again in \d+ seconds?, at .+\.", wait), wait
    assert errors == []


def watch_statuses(page: Page, marker: str) -> list[int]:
    """Record the status of each response whose URL contains ``marker``, in order."""
    statuses: list[int] = []
    page.on(
        "response",
        lambda response: statuses.append(response.status) if marker in response.url else None,
    )
    return statuses


def zoom_loss_panel(page: Page) -> None:
    """Drag across the middle of the loss panel, as a user zooms in on x."""
    area = page.locator('.report-grid .plot[data-key="loss"] .nsewdrag').bounding_box()
    assert area is not None
    middle = area["y"] + area["height"] / 2
    page.mouse.move(area["x"] + area["width"] * 0.3, middle)
    page.mouse.down()
    page.mouse.move(area["x"] + area["width"] * 0.7, middle, steps=5)
    page.mouse.up()


def test_limited_panel_fetch_shows_wait(
    browser: Browser, limited_server: RunningServer, opened: list[Page], tmp_path: Path
) -> None:
    log_runs(limited_server, tmp_path, {"calm": 0.01, "wild": 1.0})
    report_id = build_grid_report(browser, limited_server, "Limited grid")
    share = create_share(limited_server, report_id, "view")
    page = open_link(browser, share["url"], opened)
    page.wait_for_selector('.report-grid .plot[data-key="loss"][data-revision]')
    zoomed = watch_statuses(page, "min_step=")
    guess_share_link(limited_server, report_id)
    zoom_loss_panel(page)
    page.wait_for_selector(".rate-limit-notice .retry-wait")
    heading = page.locator(".rate-limit-notice strong").inner_text()
    wait = page.locator(".rate-limit-notice .retry-wait").inner_text()
    countdown = re.fullmatch(r"Try again in (\d+) seconds?, at .+\.", wait)
    revision = int(
        page.locator('.report-grid .plot[data-key="loss"]').get_attribute("data-revision") or 0
    )
    # Forget the failed look-up, as the end of the limit's window would.
    limited_server.app.state.limits.store.counters.clear()
    page.click(".rate-limit-notice button.retry-now")
    page.wait_for_selector(".rate-limit-notice", state="hidden")
    page.wait_for_function(
        """(before) => Number(document.querySelector(
            '.report-grid .plot[data-key="loss"]').dataset.revision) > before""",
        arg=revision,
    )

    assert heading == "Too many share-link look-ups"
    assert countdown is not None, wait
    assert 1 <= int(countdown.group(1)) <= ratelimit.SHARE_WINDOW
    # The zoom's figure request got 429, then was sent again after the click.
    assert zoomed == [429, 200]
    assert page.locator("main.report .blocks").is_visible()
    assert "Something went wrong" not in page.locator("body").inner_text()


def test_limited_request_retries_after_wait(
    browser: Browser, briefly_limited_server: RunningServer, opened: list[Page], tmp_path: Path
) -> None:
    report_id, share = limited_report(briefly_limited_server, tmp_path)
    page = open_link(browser, share["url"], opened)
    versions = watch_statuses(page, "/versions")
    guess_share_link(briefly_limited_server, report_id)
    page.click("details.versions summary")
    page.wait_for_selector(".rate-limit-notice .retry-wait")
    wait = page.locator(".rate-limit-notice .retry-wait").inner_text()
    countdown = re.fullmatch(r"Try again in (\d+) seconds?, at .+\.", wait)
    # Nothing is clicked: the page sends the request again when the wait ends.
    page.wait_for_selector(".rate-limit-notice", state="hidden")
    page.wait_for_selector(".version-list li")

    assert countdown is not None, wait
    assert 1 <= int(countdown.group(1)) <= BRIEF_SHARE_WINDOW
    # A retry sent before the window ended would have got a second 429.
    assert versions == [429, 200]
    assert page.locator(".version-list").inner_text() == "No saved versions yet."
    assert page.locator(".report-messages").inner_text() == ""


def test_limit_without_wait_retries_on_click(
    browser: Browser, limited_server: RunningServer, opened: list[Page], tmp_path: Path
) -> None:
    report_id, share = limited_report(limited_server, tmp_path)
    page = open_link(browser, share["url"], opened)
    versions = watch_statuses(page, "/versions")

    def drop_retry_after(route: Route) -> None:
        # The page gets the server's own 429 without its wait, as behind a proxy that drops it.
        response = route.fetch()
        headers = {k: v for k, v in response.headers.items() if k.lower() != "retry-after"}
        route.fulfill(response=response, headers=headers)

    page.route("**/versions?*", drop_retry_after)
    guess_share_link(limited_server, report_id)
    page.click("details.versions summary")
    page.wait_for_selector(".rate-limit-notice button.retry-now")
    reason = page.locator(".rate-limit-notice p").inner_text()
    countdowns = page.locator(".rate-limit-notice .retry-wait").count()
    # Forget the failed look-up, as the end of the limit's window would.
    limited_server.app.state.limits.store.counters.clear()
    page.click(".rate-limit-notice button.retry-now")
    page.wait_for_selector(".version-list li")

    assert reason.startswith("Too many share-link look-ups: at most 1 in 60 seconds; retry in ")
    assert countdowns == 0
    assert versions == [429, 200]
    assert page.locator(".rate-limit-notice").is_hidden()
    assert page.locator(".version-list").inner_text() == "No saved versions yet."
