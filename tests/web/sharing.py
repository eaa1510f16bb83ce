"""Helpers for the sharing tests: a report with a panel grid, share links, other browsers."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page

from conftest import RunningServer
from web.browsing import WAIT_MS, sign_in, start_run
from web.reports import PROJECT, create_report, open_report

#: The filter of the shared report's run set: every run whose lr is 0.5 or more.
WILD = "config.lr >= 0.5"
#: The window of ``briefly_limited_server``'s share-link limit, in seconds. It
#: is long enough for a test to see the rate-limit notice, and short enough to wait out.
BRIEF_SHARE_WINDOW = 4.0


def log_runs(server: RunningServer, tmp_path: Path, runs: dict[str, float]) -> dict[str, str]:
    """Log finished runs named as ``runs``'s keys with ``lr`` its values; return their ids."""
    ids = {}
    for name, lr in runs.items():
        with start_run(server, tmp_path, PROJECT, name=name, config={"lr": lr}) as run:
            for step in range(3):
                run.log({"loss": lr * (3 - step)}, step=step)
            ids[name] = run.id
    return ids


def build_grid_report(browser: Browser, server: RunningServer, title: str) -> str:
    """Create a report through the editor: one grid whose run set is ``WILD``, a loss line."""
    report_id = create_report(server, title)
    editor = open_report(browser, server, report_id)
    editor.click("button.add-block:text('Add panel grid')")
    editor.wait_for_selector(".run-set input.run-set-filter")
    # The filter is set in the page's Y.Doc, as a peer's edit arrives, because
    # these tests are about sharing. Typing into the run-set bar has its own tests.
    editor.evaluate(
        """(filter) => window.assayReport.doc.getArray('blocks').get(0)
            .get('run_sets').get(0).set('filter', filter)""",
        WILD,
    )
    form = editor.locator(".report-grid .add-panel-form")
    form.locator("summary").click()
    form.locator("select.panel-type").select_option("line")
    form.locator("select[name=key]").select_option("loss")
    form.locator("button.add-panel").click()
    editor.wait_for_selector('.report-grid .plot[data-key="loss"][data-revision]')
    # The editor stays connected until the server has stored its edits.
    wait_until_stored(server, report_id)
    errors = editor.errors  # type: ignore[attr-defined]
    editor.context.close()
    assert errors == [], f"the editor page raised: {errors}"
    return report_id


def has_grid(grid: dict[str, Any]) -> bool:
    return bool(grid["panels"]) and grid["run_sets"][0]["filter"] == WILD


def wait_until_stored(
    server: RunningServer,
    report_id: str,
    condition: Callable[[dict[str, Any]], bool] = has_grid,
) -> None:
    """Wait until ``condition`` holds for the first panel grid of the server's copy."""
    deadline = time.monotonic() + WAIT_MS / 1000
    grids: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        with server.client() as client:
            content = client.get(f"/api/v1/projects/{PROJECT}/reports/{report_id}").json()
        grids = [b for b in content["content"]["blocks"] if b.get("type") == "panel_grid"]
        if grids and condition(grids[0]):
            return
        time.sleep(0.1)
    raise AssertionError(f"report {report_id} never stored the expected grid; it has {grids}")


def create_share(server: RunningServer, report_id: str, role: str) -> dict[str, Any]:
    with server.client() as client:
        response = client.post(f"/api/v1/reports/{report_id}/shares", json={"role": role})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def open_page(browser: Browser, url: str) -> Page:
    """Open ``url`` in a new browser context with no session; record errors and requests."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    errors: list[str] = []
    requests: list[str] = []
    sockets: list[str] = []
    dialogs: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", lambda request: requests.append(request.url))
    page.on("websocket", lambda socket: sockets.append(socket.url))
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.errors = errors  # type: ignore[attr-defined]
    page.requests = requests  # type: ignore[attr-defined]
    page.sockets = sockets  # type: ignore[attr-defined]
    page.dialogs = dialogs  # type: ignore[attr-defined]
    page.goto(url)
    return page


def sign_in_as(browser: Browser, server: RunningServer, key: str, path: str) -> Page:
    """Open ``path`` in a new browser context signed in with API key ``key``."""
    page = open_page(browser, "about:blank")
    sign_in(page, server, path, key)
    return page


def close_page(page: Page) -> None:
    errors = page.errors  # type: ignore[attr-defined]
    page.context.close()
    assert errors == [], f"the page raised: {errors}"
