"""Typing in a report keeps the focus while other people add blocks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from conftest import RunningServer
from web.reports import create_report, open_report
from web.sharing import close_page, log_runs


@pytest.fixture
def editors(
    browser: Browser, sqlite_server: RunningServer, tmp_path: Path
) -> Iterator[list[Page]]:
    log_runs(sqlite_server, tmp_path, {"calm": 0.01})
    report_id = create_report(sqlite_server, "Focus")
    pages = [open_report(browser, sqlite_server, report_id) for _ in range(2)]
    pages[0].click("button.add-block:text('Add panel grid')")
    pages[1].wait_for_selector(".run-set input.run-set-filter")
    yield pages
    for page in pages:
        close_page(page)


def test_filter_keeps_focus_when_peer_adds(editors: list[Page]) -> None:
    first, second = editors
    filter_input = first.locator(".run-set input.run-set-filter")
    filter_input.click()
    first.keyboard.type("config.lr")
    second.click("button.add-block:text('Add text')")
    first.wait_for_selector(".blocks[data-count='2']")
    focused = first.evaluate(
        "() => document.activeElement?.classList.contains('run-set-filter') ?? false"
    )
    first.keyboard.type(" > 0")
    first.keyboard.press("Enter")
    first.wait_for_function(
        """() => window.assayReport.doc.getArray('blocks').get(0)
            .get('run_sets').get(0).get('filter') === 'config.lr > 0'"""
    )

    assert focused is True
    assert filter_input.input_value() == "config.lr > 0"
    assert first.locator(".block").count() == 2


def test_filter_keeps_focus_when_run_arrives(
    editors: list[Page], sqlite_server: RunningServer, tmp_path: Path
) -> None:
    first, _ = editors
    count = first.locator(".run-set .run-set-count")
    count.filter(has_text="1 runs").wait_for()
    first.locator(".run-set input.run-set-filter").click()
    first.keyboard.type("config.lr")
    log_runs(sqlite_server, tmp_path, {"late": 0.5})
    count.filter(has_text="2 runs").wait_for()
    focused = first.evaluate(
        "() => document.activeElement?.classList.contains('run-set-filter') ?? false"
    )
    first.keyboard.type(" > 0.1")
    first.keyboard.press("Enter")
    first.wait_for_function(
        """() => window.assayReport.doc.getArray('blocks').get(0)
            .get('run_sets').get(0).get('filter') === 'config.lr > 0.1'"""
    )

    assert focused is True
    assert first.locator(".run-set input.run-set-filter").input_value() == "config.lr > 0.1"
