"""Helpers for the report editor tests: create a report, open it, read its document."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from playwright.sync_api import Browser, Page, WebSocketRoute

from conftest import RunningServer
from web.browsing import WAIT_MS, sign_in

PROJECT = "sweep"


def create_report(server: RunningServer, title: str = "") -> str:
    with server.client() as client:
        response = client.post(f"/api/v1/projects/{PROJECT}/reports", json={"title": title})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def report_content(server: RunningServer, report_id: str) -> dict[str, Any]:
    with server.client() as client:
        response = client.get(f"/api/v1/projects/{PROJECT}/reports/{report_id}")
    assert response.status_code == 200, response.text
    return response.json()["content"]  # type: ignore[no-any-return]


def open_report(
    browser: Browser,
    server: RunningServer,
    report_id: str,
    route_report_socket: Callable[[WebSocketRoute], Any] | None = None,
) -> Page:
    """A new signed-in browser context with the report open and synced.

    ``route_report_socket`` receives the page's report socket, to forward or hold its messages.
    """
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(WAIT_MS)
    if route_report_socket is not None:
        context.route_web_socket("**/yjs/reports/**", route_report_socket)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors  # type: ignore[attr-defined]
    sign_in(page, server, f"/projects/{PROJECT}/reports/{report_id}")
    page.wait_for_selector(".report-title .cm-content")
    return page


def add_panel(page: Page, kind: str, choices: dict[str, str]) -> None:
    """Add a panel of ``kind`` to the first report grid through its "Add panel" form."""
    form = page.locator(".report-grid .add-panel-form")
    if form.get_attribute("open") is None:
        form.locator("summary").click()
    form.locator("select.panel-type").select_option(kind)
    for name, value in choices.items():
        form.locator(f"select[name={name}]").select_option(value)
    form.locator("button.add-panel").click()


def open_grid_editors(browser: Browser, server: RunningServer, report_id: str) -> list[Page]:
    """Open two editors of a report and add a grid with a loss line panel through the first.

    Returns once both pages draw the panel and follow the live socket.
    """
    opened = [open_report(browser, server, report_id) for _ in range(2)]
    first = opened[0]
    first.click("button.add-block:text('Add panel grid')")
    add_panel(first, "line", {"key": "loss"})
    for page in opened:
        page.wait_for_selector('.report-grid .plot[data-key="loss"][data-revision]')
        page.wait_for_selector("body[data-runs-live=subscribed]")
    return opened


def document_json(page: Page) -> dict[str, Any]:
    """The report document as this page's Y.Doc contains it."""
    return page.evaluate(  # type: ignore[no-any-return]
        """() => {
            const doc = window.assayReport.doc;
            return {title: doc.getText('title').toString(),
                    blocks: doc.getArray('blocks').toJSON()};
        }"""
    )


def block_text(page: Page, index: int) -> str:
    return page.evaluate(  # type: ignore[no-any-return]
        "(index) => window.assayReport.doc.getArray('blocks').get(index).get('text').toString()",
        index,
    )


def editor_text(page: Page, block: str) -> str:
    """The text the CodeMirror editor in ``block`` shows, without other people's cursors."""
    return page.evaluate(  # type: ignore[no-any-return]
        r"""(block) => {
            const content = document.querySelector(`${block} .cm-content`).cloneNode(true);
            content.querySelectorAll('.cm-ySelectionCaret').forEach((caret) => caret.remove());
            return [...content.querySelectorAll('.cm-line')]
                .map((line) => line.textContent.replaceAll('\u2060', '')).join('\n');
        }""",
        block,
    )


def insert_text(page: Page, index: int, text: str) -> None:
    """Insert ``text`` at the start of block ``index`` in the page's Y.Doc, as a peer does."""
    page.evaluate(
        "([index, text]) => window.assayReport.doc.getArray('blocks')"
        ".get(index).get('text').insert(0, text)",
        [index, text],
    )


def line_uids(page: Page) -> list[str]:
    """The uids of the line traces that the report grid's loss panel draws, sorted."""
    return page.evaluate(  # type: ignore[no-any-return]
        """() => (document.querySelector('.report-grid .plot[data-key="loss"]').data ?? [])
            .map((trace) => trace.uid).filter((uid) => uid.startsWith('line-')).sort()"""
    )


def wait_for_lines(page: Page, run_ids: list[str]) -> None:
    """Wait until the report grid's loss panel draws a line for exactly ``run_ids``."""
    page.wait_for_function(
        """(expected) => {
            const plot = document.querySelector('.report-grid .plot[data-key="loss"]');
            const uids = (plot?.data ?? []).map((t) => t.uid).filter((u) => u.startsWith('line-'));
            return JSON.stringify(uids.sort()) === JSON.stringify(expected);
        }""",
        arg=sorted(f"line-{run_id}" for run_id in run_ids),
    )
