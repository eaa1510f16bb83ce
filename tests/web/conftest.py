"""Browser fixtures: Debian's Chromium driven by Playwright (see ``browsing.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from assay_server import ratelimit
from assay_server.settings import Settings
from conftest import RunningServer
from web.browsing import BUNDLE, CHROMIUM, CHROMIUM_ARGS, WAIT_MS, require
from web.sharing import BRIEF_SHARE_WINDOW


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    require(CHROMIUM.exists(), f"{CHROMIUM} is missing; install Debian's chromium package")
    require(
        BUNDLE.exists(),
        f"{BUNDLE} is missing; build the web app with `make install` "
        "or `npm ci && npm run build` in client/web",
    )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(WAIT_MS)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert errors == [], f"the page raised: {errors}"


@pytest.fixture
def limited_server(
    monkeypatch: pytest.MonkeyPatch, sqlite_settings: Settings, start_server: Any
) -> RunningServer:
    """Start a server that rejects share links from an address after one failed look-up."""
    monkeypatch.setattr(ratelimit, "SHARE_LOOKUPS", 1)
    return start_server(sqlite_settings)  # type: ignore[no-any-return]


@pytest.fixture
def briefly_limited_server(
    monkeypatch: pytest.MonkeyPatch, sqlite_settings: Settings, start_server: Any
) -> RunningServer:
    """Start a server that rejects share links for a few seconds after one failed look-up."""
    monkeypatch.setattr(ratelimit, "SHARE_LOOKUPS", 1)
    monkeypatch.setattr(ratelimit, "SHARE_WINDOW", BRIEF_SHARE_WINDOW)
    return start_server(sqlite_settings)  # type: ignore[no-any-return]
