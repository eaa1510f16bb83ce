"""Attacker-style checks: script payloads in names, tags, config and reports stay inert text."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import Browser, Page

from conftest import RunningServer
from userkeys import add_user
from web.browsing import start_run
from web.reports import PROJECT, create_report, insert_text
from web.sharing import close_page, create_share, open_page, sign_in_as

PAYLOADS = [
    "<img src=x onerror=window.__xss=1>",
    "<script>window.__xss=1</script>",
    '"><svg onload=window.__xss=1>',
    '<a href="javascript:window.__xss=1">click</a>',
    "javascript:window.__xss=1",
]
MARKDOWN = "\n\n".join(
    [
        *PAYLOADS,
        "[a link](javascript:window.__xss=1)",
        '<iframe src="javascript:window.__xss=1"></iframe>',
        "$\\href{javascript:window.__xss=1}{x}$",
    ]
)

#: Whether the page shows a sign of a payload that ran or could run when clicked.
TRACES = """() => ({
    xss: window.__xss,
    handlers: document.querySelectorAll('[onerror], [onload], [onclick]').length,
    scripts: [...document.scripts].filter((script) => !script.src.includes('/static/app.js'))
        .length,
    frames: document.querySelectorAll('iframe, object, embed').length,
    links: [...document.querySelectorAll('a')].filter((link) => {
        const href = link.getAttribute('href') ?? link.getAttribute('xlink:href') ?? '';
        return href.trim().toLowerCase().startsWith('javascript:');
    }).length,
})"""


@pytest.fixture
def hostile(sqlite_server: RunningServer, tmp_path: Path) -> dict[str, str]:
    """Runs whose names, tags and config values are script payloads."""
    ids = {}
    for index, payload in enumerate(PAYLOADS):
        with start_run(
            sqlite_server,
            tmp_path,
            PROJECT,
            name=payload,
            tags=[payload],
            group=payload,
            notes=payload,
            config={"lr": 0.1 * (index + 1), "note": payload},
        ) as run:
            for step in range(3):
                run.log({"loss": 1.0 / (step + 1 + index)}, step=step)
            ids[payload] = run.id
    return ids


def assert_inert(page: Page) -> None:
    # onerror and onload fire asynchronously, so give them time before looking.
    page.wait_for_timeout(500)
    traces = page.evaluate(TRACES)
    dialogs = page.dialogs  # type: ignore[attr-defined]

    assert traces["xss"] is None
    assert traces["handlers"] == 0
    assert traces["scripts"] == 0
    assert traces["frames"] == 0
    assert traces["links"] == 0
    assert dialogs == []


def test_workspace_shows_payloads_as_text(
    browser: Browser, sqlite_server: RunningServer, hostile: dict[str, str]
) -> None:
    page = sign_in_as(browser, sqlite_server, sqlite_server.api_key, f"/projects/{PROJECT}")
    page.wait_for_selector(".plot[data-key=loss][data-revision]")
    page.locator(".run-table input[type=search]").first.fill("onerror")
    table = page.locator(".run-table").inner_text()

    assert PAYLOADS[0] in table
    assert_inert(page)
    close_page(page)


@pytest.mark.parametrize("index", range(len(PAYLOADS)))
def test_run_page_shows_payloads_as_text(
    browser: Browser, sqlite_server: RunningServer, hostile: dict[str, str], index: int
) -> None:
    payload = PAYLOADS[index]
    page = sign_in_as(
        browser,
        sqlite_server,
        sqlite_server.api_key,
        f"/projects/{PROJECT}/runs/{hostile[payload]}",
    )
    text = page.locator("main").inner_text()

    assert payload in text
    assert_inert(page)
    close_page(page)


def test_shared_report_shows_payloads_as_text(
    browser: Browser, sqlite_server: RunningServer, hostile: dict[str, str]
) -> None:
    report_id = create_report(sqlite_server, PAYLOADS[2] + PAYLOADS[0])
    editor = sign_in_as(
        browser, sqlite_server, sqlite_server.api_key, f"/projects/{PROJECT}/reports/{report_id}"
    )
    editor.click("button.add-block:text('Add text')")
    editor.wait_for_selector(".block-markdown .cm-content")
    insert_text(editor, 0, MARKDOWN)
    editor.click("button.add-block:text('Add panel grid')")
    form = editor.locator(".report-grid .add-panel-form")
    form.locator("summary").click()
    form.locator("select.panel-type").select_option("bar")
    form.locator("select[name=field]").select_option("config.lr")
    form.locator("button.add-panel").click()
    editor.wait_for_selector(".report-grid .panel[data-panel-type=bar] .plot[data-revision]")
    assert_inert(editor)
    close_page(editor)
    share = create_share(sqlite_server, report_id, "view")

    page = open_page(browser, share["url"])
    page.wait_for_selector(".block-markdown .rendered[data-revision]")
    page.wait_for_function(
        """(count) => (document.querySelector('.report-grid .panel[data-panel-type=bar] .plot')
            ?.data?.[0]?.y ?? []).length === count""",
        arg=len(PAYLOADS),
    )
    title = page.locator(".report-title").inner_text()
    rendered = page.locator(".block-markdown .rendered").inner_text()
    bars = page.locator(".report-grid .panel[data-panel-type=bar] .plot").inner_text()

    assert PAYLOADS[0] in title
    assert "<script>window.__xss=1</script>" in rendered or "window.__xss=1" in rendered
    assert "onerror" in bars
    assert_inert(page)
    close_page(page)


def test_user_name_payload_inert(
    browser: Browser, sqlite_server: RunningServer, hostile: dict[str, str]
) -> None:
    name = PAYLOADS[0]
    key = add_user(sqlite_server, name)
    with sqlite_server.client() as client:
        added = client.put(
            f"/api/v1/projects/{PROJECT}/members/{quote(name, safe='')}", json={"role": "editor"}
        )
    assert added.status_code == 200, added.text
    report_id = create_report(sqlite_server, "Names")
    page = sign_in_as(browser, sqlite_server, key, f"/projects/{PROJECT}/reports/{report_id}")
    page.click("button.share-report")
    page.click("button.create-share")
    page.wait_for_selector("dialog.share-dialog[data-shares='1']")
    created_by = page.locator("table.share-list tbody td").nth(1).inner_text()
    assert_inert(page)
    page.goto(f"{sqlite_server.url}/projects/{PROJECT}/members")
    page.wait_for_selector(".members-body[data-role=editor]")
    listed = page.locator("table.member-list").inner_text()

    assert created_by == name
    assert name in listed
    assert_inert(page)
    close_page(page)
