"""The report editor in Chromium: co-editing, LaTeX, XSS, blocks, versions and rejected edits."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from playwright.sync_api import Browser, Page

from assay_server.settings import Settings
from conftest import RunningServer
from web.browsing import WAIT_MS, start_run
from web.reports import (
    PROJECT,
    block_text,
    create_report,
    document_json,
    editor_text,
    insert_text,
    open_report,
    report_content,
)


@pytest.fixture
def report(sqlite_server: RunningServer, tmp_path: Path) -> str:
    """An empty report in a project with two finished runs."""
    for name, lr in (("base-a", 0.01), ("wild-b", 1.0)):
        with start_run(sqlite_server, tmp_path, PROJECT, name=name, config={"lr": lr}) as run:
            for step in range(4):
                run.log({"loss": lr * (4 - step)}, step=step)
    return create_report(sqlite_server, "Sweep notes")


@pytest.fixture
def pages(browser: Browser, sqlite_server: RunningServer, report: str) -> Iterator[list[Page]]:
    opened = [open_report(browser, sqlite_server, report) for _ in range(2)]
    yield opened
    for page in opened:
        errors = page.errors  # type: ignore[attr-defined]
        page.context.close()
        assert errors == [], f"the page raised: {errors}"


T = TypeVar("T")


def subsequence(part: str, whole: str) -> bool:
    letters = iter(whole)
    return all(char in letters for char in part)


def test_two_editors_converge(pages: list[Page]) -> None:
    first, second = pages
    first.click("button.add-block:text('Add text')")
    second.wait_for_selector(".block-markdown .cm-content")
    first.click(".block-markdown .cm-content")
    second.click(".block-markdown .cm-content")
    typed = {first: "alpha beta gamma ", second: "one two three "}
    # Alternate short bursts without waiting, so each types into a text the
    # other has changed in ways it has not yet seen.
    for start in range(0, 18, 3):
        for page, text in typed.items():
            page.keyboard.type(text[start : start + 3])
    first.wait_for_function(
        "(n) => window.assayReport.doc.getArray('blocks').get(0).get('text').length === n",
        arg=sum(len(text) for text in typed.values()),
    )
    second.wait_for_function(
        "(n) => window.assayReport.doc.getArray('blocks').get(0).get('text').length === n",
        arg=sum(len(text) for text in typed.values()),
    )
    texts = [block_text(page, 0) for page in pages]

    assert texts[0] == texts[1]
    assert subsequence(typed[first], texts[0])
    assert subsequence(typed[second], texts[0])
    assert editor_text(first, ".block-markdown") == texts[0]
    assert editor_text(second, ".block-markdown") == texts[0]
    assert document_json(first) == document_json(second)
    assert first.locator(".block-markdown .cm-ySelectionInfo").inner_text() == "admin"


def test_markdown_with_latex_renders(pages: list[Page], sqlite_server: RunningServer) -> None:
    page, other = pages
    requests: list[str] = []
    other.on("request", lambda request: requests.append(request.url))
    page.click("button.add-block:text('Add text')")
    page.click(".block-markdown .cm-content")
    page.keyboard.type("## Results\n\nThe loss is $L = \\frac{1}{n}\\sum_i \\ell_i$ here.\n\n")
    page.keyboard.type("$$\nE = mc^2\n$$\n\nA price of $5 and $6 stays text.")
    rendered = other.locator(".block-markdown .rendered")
    rendered.locator(".katex-display").wait_for()
    other.wait_for_function("() => document.fonts.status === 'loaded'")

    assert rendered.locator("h2").inner_text() == "Results"
    assert rendered.locator("p .katex").count() == 1
    assert rendered.locator("p .katex .katex-html .mfrac").count() == 1
    display = rendered.locator(".katex-display .katex-html").inner_text()
    assert "".join(display.split()) == "E=mc2"
    assert "A price of $5 and $6 stays text." in rendered.inner_text()
    assert other.evaluate("() => document.fonts.check('16px KaTeX_Main')")
    assert [url for url in requests if not url.startswith(sqlite_server.url)] == []


def test_latex_url_macros_disabled(pages: list[Page]) -> None:
    page, other = pages
    page.click("button.add-block:text('Add text')")
    source = (
        r"$\href{javascript:window.hacked=1}{click}$ $\url{https://example.com}$ "
        r"$\includegraphics{https://example.com/x.png}$ "
        r"$\def\a{\a\a}\a$"
    )
    insert_text(page, 0, source)
    rendered = other.locator(".block-markdown .rendered")
    rendered.locator(".katex").first.wait_for()

    assert rendered.locator("a").count() == 0
    assert rendered.locator("img").count() == 0
    errors = rendered.locator(".katex-error").all()
    titles = [error.get_attribute("title") or "" for error in errors]
    assert any("Too many expansions" in title for title in titles), titles
    assert other.evaluate("() => window.hacked") is None


XSS_PAYLOADS = [
    '<img src="x" onerror="window.hacked = 1">',
    "<script>window.hacked = 2</script>",
    "[link](javascript:window.hacked=3)",
    '<svg onload="window.hacked = 4"></svg>',
    "![image](javascript:window.hacked=5)",
    '<a href="javascript:window.hacked=6">raw link</a>',
    "[data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
]


def test_xss_payloads_render_inert(pages: list[Page]) -> None:
    page, other = pages
    page.click("button.add-block:text('Add text')")
    insert_text(page, 0, "\n\n".join(XSS_PAYLOADS))
    rendered = other.locator(".block-markdown .rendered")
    rendered.locator("p").nth(len(XSS_PAYLOADS) - 1).wait_for()
    other.wait_for_timeout(200)  # gives an onerror or onload handler time to run
    text = rendered.inner_text()

    assert other.evaluate("() => window.hacked") is None
    assert rendered.locator("script, svg, img, iframe").count() == 0
    assert rendered.locator("[onerror], [onload]").count() == 0
    assert rendered.locator("a[href^='javascript'], a[href^='data']").count() == 0
    assert '<img src="x" onerror="window.hacked = 1">' in text
    assert "<script>window.hacked = 2</script>" in text


def block_types(page: Page) -> list[str]:
    return [block["type"] for block in document_json(page)["blocks"]]


def test_blocks_add_move_delete(
    pages: list[Page], sqlite_server: RunningServer, report: str
) -> None:
    page, other = pages
    for label in ("Add text", "Add heading", "Add panel grid"):
        page.click(f"button.add-block:text('{label}')")
    page.locator(".block-heading .cm-content").click()
    page.keyboard.type("Method")
    page.locator(".block-heading select.heading-level").select_option("3")
    other.wait_for_selector(".blocks[data-count='3']")
    added = block_types(other)
    page.locator(".block-heading button[data-action='move block up']").click()
    other.wait_for_function(
        "() => document.querySelector('.blocks .block').dataset.blockType === 'heading'"
    )
    moved = block_types(other)
    page.locator(".block-markdown button[data-action='delete block']").click()
    other.wait_for_selector(".blocks[data-count='2']")
    kept = document_json(other)["blocks"]

    assert added == ["markdown", "heading", "panel_grid"]
    assert moved == ["heading", "markdown", "panel_grid"]
    assert [block["type"] for block in kept] == ["heading", "panel_grid"]
    assert kept[0]["text"] == "Method"
    assert kept[0]["level"] == 3
    assert kept[1]["run_sets"][0]["name"] == "all runs"
    assert other.locator(".block-heading select.heading-level").input_value() == "3"
    stored = poll(lambda: report_content(sqlite_server, report)["blocks"], len, 2)
    assert [block["id"] for block in stored] == [block["id"] for block in kept]


def poll(read: Callable[[], T], measure: Callable[[T], object], expected: object) -> T:
    """Read until ``measure`` of the value is ``expected``, for at most the browser wait."""
    deadline = time.monotonic() + WAIT_MS / 1000
    while True:
        value = read()
        if measure(value) == expected or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_rejected_update_shows_error(
    pages: list[Page], sqlite_server: RunningServer, report: str
) -> None:
    page, other = pages
    page.click("button.add-block:text('Add text')")
    other.wait_for_selector(".blocks[data-count='1']")
    page.evaluate(
        """() => {
            const blocks = window.assayReport.doc.getArray('blocks');
            const video = new (blocks.get(0).constructor)();
            video.set('id', 'v1');
            video.set('type', 'video');
            blocks.push([video]);
        }"""
    )
    message = page.locator(".report-messages .error")
    message.wait_for()
    other.wait_for_timeout(300)  # the other editor must not receive the rejected block

    assert "unknown type 'video'" in message.inner_text()
    assert "Reload the page" in message.inner_text()
    assert block_types(other) == ["markdown"]
    assert [block["type"] for block in report_content(sqlite_server, report)["blocks"]] == [
        "markdown"
    ]


MARKDOWN_SHOWS = """([text, shown]) => {
    const rendered = document.querySelector('.block-markdown .rendered');
    return rendered !== null && rendered.textContent.includes(text) === shown;
}"""


def test_restored_version_reaches_editors(pages: list[Page]) -> None:
    page, other = pages
    page.click("button.add-block:text('Add text')")
    page.click(".block-markdown .cm-content")
    page.keyboard.type("first draft")
    page.click("button.save-version")
    page.wait_for_selector("body[data-versions='1']")
    page.click(".block-markdown .cm-content")
    page.keyboard.press("End")
    page.keyboard.type(", then a mistake")
    other.wait_for_function(MARKDOWN_SHOWS, arg=["mistake", True])
    page.locator("details.versions summary").click()
    page.locator(".version-list li button.restore-version").click()
    other.wait_for_function(MARKDOWN_SHOWS, arg=["mistake", False])
    page.locator(".report-messages .message:text('Restored the version')").wait_for()

    assert page.locator(".version-list li").count() == 1
    assert block_text(other, 0) == "first draft"
    assert editor_text(other, ".block-markdown") == "first draft"
    assert document_json(page) == document_json(other)


def test_editors_on_two_instances_converge(
    browser: Browser, postgres_settings: Settings, start_server: Any, tmp_path: Path
) -> None:
    servers = [start_server(postgres_settings) for _ in range(2)]
    with start_run(servers[0], tmp_path, PROJECT, name="only"):
        pass
    report = create_report(servers[0], "Across instances")
    first, second = [open_report(browser, server, report) for server in servers]
    first.click("button.add-block:text('Add text')")
    second.wait_for_selector(".block-markdown .cm-content")
    first.click(".block-markdown .cm-content")
    second.click(".block-markdown .cm-content")
    for start in range(0, 12, 3):
        first.keyboard.type("on the first"[start : start + 3])
        second.keyboard.type("on the other"[start : start + 3])
    for page in (first, second):
        page.wait_for_function(
            "() => window.assayReport.doc.getArray('blocks').get(0).get('text').length === 24"
        )
    texts = [block_text(page, 0) for page in (first, second)]
    errors = [page.errors for page in (first, second)]  # type: ignore[attr-defined]
    for page in (first, second):
        page.context.close()

    assert texts[0] == texts[1]
    assert subsequence("on the first", texts[0])
    assert subsequence("on the other", texts[0])
    assert errors == [[], []]


def test_title_stays_one_line(pages: list[Page]) -> None:
    page, other = pages
    page.click(".report-title .cm-content")
    page.keyboard.press("End")
    page.keyboard.press("Enter")
    page.keyboard.type("!")
    other.wait_for_function(
        "() => window.assayReport.doc.getText('title').toString().endsWith('!')"
    )

    assert document_json(other)["title"] == "Sweep notes!"
    assert editor_text(other, ".report-title") == "Sweep notes!"
