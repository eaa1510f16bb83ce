"""Fuzz the report editor's markdown renderer (markdown-it, KaTeX, DOMPurify) in Chromium.

The test bundles ``client/web/src/markdown.ts``, the module the app renders
report blocks with, and calls its ``renderMarkdown`` in Debian's Chromium.
Hypothesis builds the markdown from raw HTML, ``javascript:`` links in many
spellings, KaTeX macros that link or set attributes, unterminated delimiters
and deep nesting. Each render must return a string, and the HTML must hold no
``<script>``, no ``on*`` attribute and no ``javascript:`` URL. Each example
renders ``BATCH`` inputs in one page call. ``ASSAY_FUZZ_EXAMPLES`` sets the
number of examples (default 200).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from playwright.sync_api import Page, sync_playwright
from web.browsing import CHROMIUM, CHROMIUM_ARGS, require

from conftest import ROOT

EXAMPLES = int(os.environ.get("ASSAY_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
#: Markdown inputs rendered per example, in one call into the page.
BATCH = 10

WEB = ROOT / "client" / "web"
ENTRY = Path(__file__).with_name("markdown_entry.ts")

# Attributes whose value the browser loads or follows as a URL.
URL_ATTRIBUTES = (
    "href",
    "src",
    "action",
    "formaction",
    "xlink:href",
    "data",
    "poster",
    "background",
    "cite",
)

# Renders each source and walks the result parsed in an inert <template>, so
# nothing in it runs. Returns {html, problems} or {error} per source. A URL's
# scheme comes from the browser's own URL parser, which drops the whitespace and
# control characters that a plain text search would trip over.
RENDER_AND_CHECK = r"""
([sources, urlAttributes]) => sources.map((source) => {
  const scheme = (url) => {
    try {
      return new URL(url, "https://base.invalid/").protocol;
    } catch {
      return "invalid";
    }
  };
  let html;
  try {
    html = window.renderMarkdown(source);
  } catch (error) {
    return { error: String(error && error.stack ? error.stack : error) };
  }
  if (typeof html !== "string") return { error: `returned ${typeof html}` };
  const template = document.createElement("template");
  template.innerHTML = html;
  const problems = [];
  for (const element of template.content.querySelectorAll("*")) {
    const tag = element.tagName.toLowerCase();
    if (tag === "script") problems.push("a script element");
    for (const attribute of element.attributes) {
      const name = attribute.name.toLowerCase();
      if (name.startsWith("on")) problems.push(`${tag} has the attribute ${name}`);
      if (urlAttributes.includes(name) && scheme(attribute.value) === "javascript:") {
        problems.push(`${tag} has ${name}=${attribute.value}`);
      }
      if (name === "srcset" && attribute.value.split(",").some(
        (candidate) => scheme(candidate.trim().split(/\s+/)[0]) === "javascript:")) {
        problems.push(`${tag} has srcset=${attribute.value}`);
      }
      if (name === "style" && /javascript:/i.test(attribute.value.replace(/[\s\\]/g, ""))) {
        problems.push(`${tag} has style=${attribute.value}`);
      }
    }
  }
  return { html, problems };
})
"""

HOSTILE_HTML = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//x.test/a.js></SCRIPT>",
    '<img src=x onerror="alert(1)">',
    "<svg onload=alert(1)><circle/></svg>",
    '<a href="javascript:alert(1)">a</a>',
    "<iframe src=javascript:alert(1)></iframe>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    '<form action="javascript:alert(1)"><button>b</button></form>',
    "<details open ontoggle=alert(1)>",
    "<!--<img src=x onerror=alert(1)>-->",
    '<div style="background:url(javascript:alert(1))">d</div>',
]
HOSTILE_LINKS = [
    "[a](javascript:alert(1))",
    "[a](JaVaScRiPt:alert(1))",
    "[a](java\tscript:alert(1))",
    "[a](&#106;avascript:alert(1))",
    "[a](javascript&colon;alert(1))",
    "[a](%6Aavascript:alert(1))",
    "[a]( javascript:alert(1) )",
    '[a](<javascript:alert(1)> "t")',
    "<javascript:alert(1)>",
    "![i](javascript:alert(1))",
    "[a](vbscript:msgbox(1))",
    "[a](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[a][r]\n\n[r]: javascript:alert(1)",
    "[a](\x00javascript:alert(1))",
]
HOSTILE_LATEX = [
    r"$\href{javascript:alert(1)}{x}$",
    r"$$\href{javascript:alert(1)}{x}$$",
    r"$\url{javascript:alert(1)}$",
    r"$\includegraphics{javascript:alert(1)}$",
    r"$\htmlData{onclick=alert(1)}{x}$",
    r"$\htmlData{foo=bar, onload=alert(1)}{x}$",
    r'$\htmlClass{a" onclick="alert(1)}{x}$',
    r"$\htmlStyle{background:url(javascript:alert(1))}{x}$",
    r"$\htmlId{x onmouseover=alert(1)}{y}$",
    r"$\def\a{\a}\a$",
    r"$\def\a{\a\a}\a$",
    r"$\newcommand{\x}{\x}\x$",
    r"$\text{<script>alert(1)</script>}$",
    r"$\textbf{<img src=x onerror=alert(1)>}$",
    r"$\rule{10000em}{10000em}$",
    r"$\frac{1}{$",
    r"$$\begin{matrix} a & b",
    r"$\color{javascript:alert(1)}{x}$",
    r"$\mathrm{\\}$",
]
DELIMITERS = ["$", "$$", "`", "```", "**", "_", "[", "](", "<", "![", "\\", "~~~", "|", "\n"]


def nested(opening: str, closing: str = "") -> st.SearchStrategy[str]:
    return st.integers(10, 500).map(lambda depth: opening * depth + "x" + closing * depth)


pieces = st.one_of(
    st.sampled_from(HOSTILE_HTML),
    st.sampled_from(HOSTILE_LINKS),
    st.sampled_from(HOSTILE_LATEX),
    st.sampled_from(DELIMITERS),
    st.text(max_size=30),
    nested("> "),
    nested("- "),
    nested("  - "),
    nested("["),
    nested("*", "*"),
    nested("$\\sqrt{", "}$"),
    nested("{", "}").map(lambda body: f"${body}$"),
    nested("\\left(", "\\right)").map(lambda body: f"$${body}$$"),
)
separators = st.sampled_from(["", " ", "\n", "\n\n", "\n$$\n"])
markdown_sources = st.lists(st.tuples(pieces, separators), max_size=12).map(
    lambda parts: "".join(piece + separator for piece, separator in parts)
)


class ScriptParser(HTMLParser):
    """Python's own HTML parser as a second reader of the output: script tags and on* names."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.problems.append("a script tag")
        self.problems.extend(f"{tag} has {name}" for name, _ in attrs if name.startswith("on"))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    esbuild = WEB / "node_modules" / ".bin" / "esbuild"
    require(
        esbuild.exists(),
        f"{esbuild} is missing; install the web app's packages with `npm ci` in client/web",
    )
    output = tmp_path_factory.mktemp("markdown") / "markdown.js"
    # KaTeX's stylesheet does not change the HTML, so CSS imports bundle as nothing.
    subprocess.run(
        [
            str(esbuild),
            str(ENTRY),
            "--bundle",
            "--format=iife",
            f"--outfile={output}",
            "--loader:.css=empty",
            "--log-level=warning",
        ],
        check=True,
        cwd=WEB,
    )
    return output


@pytest.fixture(scope="module")
def render_page(bundle: Path) -> Iterator[Page]:
    require(CHROMIUM.exists(), f"{CHROMIUM} is missing; install Debian's chromium package")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.set_content("<!doctype html><html><body></body></html>")
        page.add_script_tag(path=str(bundle))
        yield page
        browser.close()
    assert errors == [], f"the page raised: {errors}"


def render(page: Page, sources: list[str]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = page.evaluate(RENDER_AND_CHECK, [sources, URL_ATTRIBUTES])
    return results


def test_fuzz_markdown_renderer(render_page: Page) -> None:
    tried = {"inputs": 0}

    @FUZZ
    @given(sources=st.lists(markdown_sources, min_size=BATCH, max_size=BATCH))
    def render_batch(sources: list[str]) -> None:
        tried["inputs"] += len(sources)
        for source, result in zip(sources, render(render_page, sources), strict=True):
            assert "error" not in result, (source, result["error"])
            assert result["problems"] == [], (source, result["html"])
            parser = ScriptParser()
            parser.feed(result["html"])
            assert parser.problems == [], (source, result["html"])
            assert not re.search(r"<script", result["html"], re.IGNORECASE), source

    render_batch()
    print(f"\nfuzz markdown renderer: {tried['inputs']} inputs")

    assert tried["inputs"] >= BATCH * min(EXAMPLES, 100)


def test_renderer_checks_catch_unsafe_html(render_page: Page) -> None:
    # The checks themselves: HTML that skipped DOMPurify must fail each of them.
    unsafe = '<img src=x onerror=alert(1)><a href=" java\tscript:alert(1)">a</a><script></script>'
    result = render_page.evaluate(
        RENDER_AND_CHECK.replace("window.renderMarkdown(source)", "source"),
        [[unsafe], URL_ATTRIBUTES],
    )[0]
    parser = ScriptParser()
    parser.feed(unsafe)

    assert "img has the attribute onerror" in result["problems"]
    assert "a script element" in result["problems"]
    assert any(problem.startswith("a has href=") for problem in result["problems"])
    assert parser.problems == ["img has onerror", "a script tag"]


def test_renderer_keeps_safe_markdown(render_page: Page) -> None:
    source = "# T\n\n[site](https://example.com) and $e^{i\\pi}$ with <b>raw</b>"
    result = render(render_page, [source])[0]

    assert result["problems"] == []
    assert '<a href="https://example.com">site</a>' in result["html"]
    assert 'class="katex"' in result["html"]
    assert "&lt;b&gt;raw&lt;/b&gt;" in result["html"]
