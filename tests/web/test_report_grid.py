"""Panel grids in a report: run sets and panels edited together, and runs that arrive live."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Request, WebSocketRoute

from conftest import RunningServer
from web.browsing import start_run
from web.reports import (
    PROJECT,
    add_panel,
    create_report,
    document_json,
    line_uids,
    open_grid_editors,
    open_report,
    wait_for_lines,
)
from web.sharing import close_page


@pytest.fixture
def runs(sqlite_server: RunningServer, tmp_path: Path) -> dict[str, str]:
    ids = {}
    for name, lr in (("calm", 0.01), ("wild", 1.0)):
        with start_run(sqlite_server, tmp_path, PROJECT, name=name, config={"lr": lr}) as run:
            for step in range(3):
                run.log({"loss": lr * (3 - step)}, step=step)
            ids[name] = run.id
    return ids


@pytest.fixture
def pages(
    browser: Browser, sqlite_server: RunningServer, runs: dict[str, str]
) -> Iterator[list[Page]]:
    """Two editors of one report whose first block is a grid with a loss line panel."""
    report = create_report(sqlite_server, "Grid")
    opened = open_grid_editors(browser, sqlite_server, report)
    yield opened
    for page in opened:
        close_page(page)


def panel_types(page: Page) -> list[str]:
    return [
        element.get_attribute("data-panel-type") or ""
        for element in page.locator(".report-grid .panel").all()
    ]


def test_grid_edits_reach_other_editor(pages: list[Page], runs: dict[str, str]) -> None:
    first, second = pages
    add_panel(first, "bar", {"field": "config.lr"})
    second.wait_for_selector(".report-grid .panel[data-panel-type=bar]")
    first.locator(".panel[data-panel-type=bar] button[data-action='move earlier']").click()
    second.wait_for_function(
        "() => document.querySelector('.report-grid .panel').dataset.panelType === 'bar'"
    )
    first.locator(".panel[data-panel-type=bar] button[data-action='wider']").click()
    first.locator(".run-set input.run-set-active").uncheck()
    wait_for_lines(second, [])
    unchecked = second.locator(".run-set input.run-set-active").is_checked()
    first.locator(".run-set input.run-set-filter").fill("config.lr >= 0.5")
    first.locator(".run-set input.run-set-filter").press("Enter")
    first.locator(".run-set input.run-set-active").check()
    wait_for_lines(second, [runs["wild"]])
    # The figure reads the filter from the document at once, while the count
    # waits for the server's next report_runs message.
    second.wait_for_function(
        "() => document.querySelector('.run-set .run-set-count').innerText === '1 runs'"
    )
    panels = document_json(second)["blocks"][0]["panels"]

    assert unchecked is False
    assert second.locator(".run-set input.run-set-filter").input_value() == "config.lr >= 0.5"
    assert second.locator(".run-set .run-set-count").inner_text() == "1 runs"
    assert panel_types(second) == ["bar", "line"]
    assert [panel["type"] for panel in panels] == ["bar", "line"]
    assert panels[0]["w"] == 6
    assert document_json(first) == document_json(second)


class HeldReportSocket:
    """A page's report socket whose messages to the server a test can hold back."""

    def __init__(self) -> None:
        self.holding = False
        self.held: list[str | bytes] = []
        self.server: WebSocketRoute | None = None

    def route(self, socket: WebSocketRoute) -> None:
        self.server = socket.connect_to_server()
        socket.on_message(self.from_page)

    def from_page(self, message: str | bytes) -> None:
        assert self.server is not None
        if self.holding:
            self.held.append(message)
        else:
            self.server.send(message)

    def release(self) -> None:
        assert self.server is not None
        self.holding = False
        for message in self.held:
            self.server.send(message)
        self.held.clear()


def test_toggle_redraws_once_server_has_it(
    browser: Browser, sqlite_server: RunningServer, runs: dict[str, str]
) -> None:
    socket = HeldReportSocket()
    page = open_report(
        browser, sqlite_server, create_report(sqlite_server, "Toggle"), socket.route
    )
    try:
        page.click("button.add-block:text('Add panel grid')")
        add_panel(page, "line", {"key": "loss"})
        page.wait_for_selector("body[data-runs-live=subscribed]")
        wait_for_lines(page, list(runs.values()))
        page.locator(".run-set input.run-set-active").uncheck()
        wait_for_lines(page, [])
        socket.holding = True
        page.locator(".run-set input.run-set-active").check()
        # The page fetches the figure at once, and the server, whose copy
        # lacks the toggle, draws no run set.
        page.wait_for_timeout(1500)
        before_server_has_it = line_uids(page)
        socket.release()
        wait_for_lines(page, list(runs.values()))
    finally:
        close_page(page)

    assert before_server_has_it == []


def test_bad_filter_shows_error(pages: list[Page]) -> None:
    first, second = pages
    first.locator(".run-set input.run-set-filter").fill("config.lr >>> 1")
    first.locator(".run-set input.run-set-filter").press("Enter")
    error = second.locator(".run-set .run-set-error")
    error.wait_for(state="visible")

    assert "invalid filter" in error.inner_text()
    assert second.locator(".run-set .run-set-count").inner_text() == "0 runs"


def test_new_run_appears_unless_frozen(
    pages: list[Page], runs: dict[str, str], sqlite_server: RunningServer, tmp_path: Path
) -> None:
    first, second = pages
    with start_run(sqlite_server, tmp_path, PROJECT, name="late-1") as late:
        late.log({"loss": 0.5}, step=0)
    wait_for_lines(second, [*runs.values(), late.id])
    first.locator(".run-set input.run-set-frozen").check()
    second.wait_for_function("() => document.querySelector('.run-set-frozen').checked")
    first.click(".report-grid button.add-run-set")
    watcher = first.locator(".run-set").nth(1)
    watcher.locator("input.run-set-filter").fill('name = "late-2"')
    watcher.locator("input.run-set-filter").press("Enter")
    watcher.locator("input.run-set-active").uncheck()
    second.wait_for_selector(".run-set:nth-child(2) .run-set-count:text('0 runs')")
    with start_run(sqlite_server, tmp_path, PROJECT, name="late-2") as ignored:
        ignored.log({"loss": 0.5}, step=0)
    # The unfrozen run set counts late-2 once the server sends its new members.
    second.wait_for_selector(".run-set:nth-child(2) .run-set-count:text('1 runs')")

    assert second.locator(".run-set").first.locator(".run-set-count").inner_text() == "3 runs"
    assert f"line-{ignored.id}" not in line_uids(second)
    assert f"line-{late.id}" in line_uids(second)


def test_freeze_bounds_filter_for_later_pages(
    browser: Browser,
    pages: list[Page],
    runs: dict[str, str],
    sqlite_server: RunningServer,
    tmp_path: Path,
) -> None:
    first, second = pages
    report_id = first.url.rstrip("/").rsplit("/", 1)[1]
    filter_box = first.locator(".run-set input.run-set-filter")
    filter_box.fill("config.lr >= 0")
    filter_box.press("Enter")
    wait_for_lines(second, list(runs.values()))
    first.locator(".run-set input.run-set-frozen").check()
    second.wait_for_function("() => document.querySelector('.run-set-frozen').checked")
    frozen_text = document_json(second)["blocks"][0]["run_sets"][0]["filter"]
    with start_run(
        sqlite_server, tmp_path, PROJECT, name="after-freeze", config={"lr": 0.5}
    ) as late:
        late.log({"loss": 0.5}, step=0)
    # A page opened after the freeze evaluates the filter afresh, without the
    # members the first pages kept, and still leaves the new run out.
    later = open_report(browser, sqlite_server, report_id)
    later.wait_for_selector('.report-grid .plot[data-key="loss"][data-revision]')
    wait_for_lines(later, list(runs.values()))
    later_count = later.locator(".run-set .run-set-count").inner_text()
    first.locator(".run-set input.run-set-frozen").uncheck()
    later.wait_for_function("() => !document.querySelector('.run-set-frozen').checked")
    thawed_text = document_json(later)["blocks"][0]["run_sets"][0]["filter"]
    wait_for_lines(later, [*runs.values(), late.id])
    later.context.close()

    assert frozen_text.startswith("(config.lr >= 0) and created_at <= ")
    assert frozen_text.endswith("Z")
    assert later_count == "2 runs"
    assert thawed_text == "config.lr >= 0"


def test_live_points_extend_report_line(
    pages: list[Page], sqlite_server: RunningServer, tmp_path: Path
) -> None:
    _, second = pages
    run = start_run(sqlite_server, tmp_path, PROJECT, name="streaming")
    for step in range(3):
        run.log({"loss": 1.0 - step * 0.1}, step=step)
    wait_for_points(second, run.id, 3)
    for step in range(3, 6):
        run.log({"loss": 1.0 - step * 0.1}, step=step)
    wait_for_points(second, run.id, 6)
    steps = second.evaluate(
        """(uid) => Array.from(document.querySelector('.report-grid .plot[data-key="loss"]')
            .data.find((trace) => trace.uid === uid).customdata)""",
        f"line-{run.id}",
    )
    run.finish()

    assert steps == [0, 1, 2, 3, 4, 5]


def wait_for_points(page: Page, run_id: str, count: int) -> None:
    page.wait_for_function(
        """([uid, count]) => {
            const plot = document.querySelector('.report-grid .plot[data-key="loss"]');
            const found = (plot?.data ?? []).find((trace) => trace.uid === uid);
            return found !== undefined && found.x.length >= count;
        }""",
        arg=[f"line-{run_id}", count],
    )


def test_grid_follows_document_edits(
    pages: list[Page], runs: dict[str, str], sqlite_server: RunningServer, tmp_path: Path
) -> None:
    """The server sends the second page its runs: it lists none itself and never reloads."""
    first, second = pages
    listed: list[str] = []

    def record_listing(request: Request) -> None:
        if urlsplit(request.url).path.endswith("/runs"):
            listed.append(request.url)

    second.on("request", record_listing)
    second.evaluate("() => { window.notReloaded = true; }")
    followed = second.locator(".run-set").nth(0)
    first.locator(".run-set input.run-set-filter").fill("config.lr >= 0.5")
    first.locator(".run-set input.run-set-filter").press("Enter")
    followed.locator(".run-set-count:text('1 runs')").wait_for()
    wait_for_lines(second, [runs["wild"]])
    first.click(".report-grid button.add-run-set")
    frozen_row = first.locator(".run-set").nth(1)
    frozen_row.locator("input.run-set-filter").fill("config.lr >= 0.5")
    frozen_row.locator("input.run-set-filter").press("Enter")
    frozen = second.locator(".run-set").nth(1)
    frozen.locator(".run-set-count:text('1 runs')").wait_for()
    frozen_row.locator("input.run-set-frozen").check()
    # The page stores the run sets as the server last sent them.
    second.wait_for_function(
        """() => Object.values(window.assayReport.grids)
            .some((runSets) => Object.values(runSets).some((runSet) => runSet.frozen))"""
    )
    with start_run(sqlite_server, tmp_path, PROJECT, name="wilder", config={"lr": 2.0}) as wilder:
        wilder.log({"loss": 2.0}, step=0)
    followed.locator(".run-set-count:text('2 runs')").wait_for()
    wait_for_lines(second, [runs["wild"], wilder.id])

    assert frozen.locator(".run-set-count").inner_text() == "1 runs"
    assert second.locator(".report-grid").get_attribute("data-runs") == "2"
    assert second.evaluate("() => window.notReloaded === true")
    assert listed == []
