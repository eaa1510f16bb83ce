"""The projects list and the run page in Chromium."""

from __future__ import annotations

import math
from pathlib import Path

from playwright.sync_api import ConsoleMessage, Page

from conftest import RunningServer
from web.browsing import save_screenshot, sign_in, start_run, trace, wait_for_points


def test_projects_list_links_workspace(
    sqlite_server: RunningServer, page: Page, tmp_path: Path
) -> None:
    start_run(sqlite_server, tmp_path, "atlas").finish()
    sign_in(page, sqlite_server, "/")

    page.wait_for_selector('tr[data-project="atlas"]')
    page.locator('tr[data-project="atlas"] a').click()
    page.wait_for_selector("body[data-live=subscribed]")

    assert page.url.endswith("/projects/atlas")
    assert page.locator("h1").inner_text() == "atlas"


def test_run_page_shows_documents_and_charts(
    sqlite_server: RunningServer, page: Page, tmp_path: Path
) -> None:
    run = start_run(sqlite_server, tmp_path, "atlas", name="wide", config={"depth": 12})
    run.log({"loss": 0.5, "acc": 0.1}, step=0)
    run.summary["best"] = math.inf
    run.finish(exit_code=3)
    sign_in(page, sqlite_server, f"/projects/atlas/runs/{run.id}")

    wait_for_points(page, "loss", f"line-{run.id}", 1)
    wait_for_points(page, "acc", f"line-{run.id}", 1)
    config = page.locator(".document.config").inner_text()
    summary = page.locator(".document.summary").inner_text()
    state = page.locator(".run-meta .state").inner_text()
    loss = trace(page, "loss", f"line-{run.id}")
    save_screenshot(page, tmp_path, "run-page.png")

    assert "depth" in config
    assert "12" in config
    assert "best" in summary
    assert "+Inf" in summary
    assert state == "failed"
    assert loss is not None
    assert loss["y"] == [0.5]


def test_run_page_follows_live_points(
    sqlite_server: RunningServer, page: Page, tmp_path: Path
) -> None:
    run = start_run(sqlite_server, tmp_path, "atlas", name="growing")
    run.log({"loss": 1.0}, step=0)
    sign_in(page, sqlite_server, f"/projects/atlas/runs/{run.id}")
    page.wait_for_selector("body[data-live=subscribed]")
    wait_for_points(page, "loss", f"line-{run.id}", 1)

    run.log({"loss": 0.5, "lr": 0.01}, step=1)
    wait_for_points(page, "loss", f"line-{run.id}", 2)
    wait_for_points(page, "lr", f"line-{run.id}", 1)
    run.finish()
    page.wait_for_selector('.run-meta .state[data-state="finished"]')

    assert trace(page, "loss", f"line-{run.id}") is not None


def test_missing_run_shows_not_found(
    sqlite_server: RunningServer, page: Page, tmp_path: Path
) -> None:
    with start_run(sqlite_server, tmp_path, "atlas") as run:
        run.log({"loss": 1.0})
    errors: list[str] = []

    def note_error(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", note_error)
    page.on("pageerror", lambda error: errors.append(str(error)))

    sign_in(page, sqlite_server, "/")
    page.goto(f"{sqlite_server.url}/projects/atlas/runs/doesnotexist")
    page.wait_for_selector("h1:text('Run not found')")
    message = page.locator("main p").inner_text()

    assert "doesnotexist" in message
    assert page.locator("a[href='/projects/atlas']").count() == 1
    assert page.locator("nav.top-bar").count() == 1, "the top bar is missing"
    assert [error for error in errors if "404" not in error] == []
