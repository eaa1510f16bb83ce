"""The report editor in Chromium: co-editing, markdown with LaTeX, blocks and Add to report."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from conftest import RunningServer
from web.browsing import start_run
from web.reports import (
    PROJECT,
    block_text,
    create_report,
    document_json,
    editor_text,
    open_report,
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
    page.evaluate(
        "(source) => window.assayReport.doc.getArray('blocks').get(0).get('text').insert(0, source)",
        source,
    )
    rendered = other.locator(".block-markdown .rendered")
    rendered.locator(".katex").first.wait_for()

    assert rendered.locator("a").count() == 0
    assert rendered.locator("img").count() == 0
    titles = [error.get_attribute("title") or "" for error in rendered.locator(".katex-error").all()]
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
    page.evaluate(
        "(source) => window.assayReport.doc.getArray('blocks').get(0).get('text').insert(0, source)",
        "\n\n".join(XSS_PAYLOADS),
    )
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
