"""Run-table and run-summary panels in Chromium: table tools, scatter, bar, scalar, parallel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

from conftest import RunningServer
from web.browsing import save_screenshot, sign_in, start_run

PROJECT = "sweep"


@pytest.fixture
def sweep(sqlite_server: RunningServer, page: Page, tmp_path: Path) -> Page:
    """A workspace with three finished runs of different lr, depth and final loss."""
    for index, (lr, depth, loss) in enumerate([(0.1, 2, 0.9), (0.01, 4, 0.4), (0.001, 8, 0.2)]):
        config = {"lr": lr, "depth": depth}
        # Fixed ids, so that no random id contains the "r1" the search test types.
        run_id = f"sweep-{index}"
        with start_run(
            sqlite_server, tmp_path, PROJECT, id=run_id, name=f"r{index}", config=config
        ) as run:
            run.log({"loss": loss}, step=0)
    sign_in(page, sqlite_server, f"/projects/{PROJECT}")
    page.wait_for_selector("body[data-live=subscribed]")
    return page


def add_panel(page: Page, kind: str, **choices: str | list[str]) -> None:
    form = page.locator(".add-panel-form")
    if not form.evaluate("(el) => el.open"):
        form.locator("summary").click()
    form.locator("select.panel-type").select_option(kind)
    for name, value in choices.items():
        form.locator(f"select[name={name}]").select_option(value)
    form.locator("button.add-panel").click()
    page.wait_for_selector(f'.panel[data-panel-type="{kind}"] .plot[data-revision]')


def plot_data(page: Page, kind: str) -> list[dict[str, Any]]:
    return page.locator(f'.panel[data-panel-type="{kind}"] .plot').evaluate(  # type: ignore[no-any-return]
        "(el) => el.data.map((t) => JSON.parse(JSON.stringify(t)))"
    )


def table_names(page: Page) -> list[str]:
    return page.locator("tbody tr td:nth-child(2)").all_inner_texts()


def test_table_search_filters_rows(sweep: Page) -> None:
    sweep.fill(".run-search", "r1")

    assert table_names(sweep) == ["r1"]


def test_table_sorts_by_config_column(sweep: Page) -> None:
    sweep.locator('th[data-column="config.lr"]').click()
    ascending = table_names(sweep)
    sweep.locator('th[data-column="config.lr"]').click()
    descending = table_names(sweep)

    assert ascending == ["r2", "r1", "r0"]
    assert descending == ["r0", "r1", "r2"]


def test_column_picker_adds_column(sweep: Page) -> None:
    headers_before = sweep.locator("th[data-column]").all_inner_texts()
    sweep.locator(".column-picker summary").click()
    sweep.locator('.column-picker input[value="config.lr"]').uncheck()
    headers_after = sweep.locator("th[data-column]").all_inner_texts()

    assert any(header.startswith("config.lr") for header in headers_before)
    assert not any(header.startswith("config.lr") for header in headers_after)


def test_scatter_plots_config_against_summary(sweep: Page) -> None:
    add_panel(sweep, "scatter", x="config.lr", y="summary.loss")

    trace = plot_data(sweep, "scatter")[0]

    assert sorted(trace["x"]) == [0.001, 0.01, 0.1]
    assert sorted(trace["y"]) == [0.2, 0.4, 0.9]
    assert sorted(trace["text"]) == ["r0", "r1", "r2"]


def test_bar_shows_summary_per_run(sweep: Page) -> None:
    add_panel(sweep, "bar", field="summary.loss")

    trace = plot_data(sweep, "bar")[0]

    assert dict(zip(trace["y"], trace["x"], strict=True)) == {"r0": 0.9, "r1": 0.4, "r2": 0.2}


def test_scalar_shows_minimum(sweep: Page) -> None:
    add_panel(sweep, "scalar", field="summary.loss", aggregate="min")

    text = sweep.locator('.panel[data-panel-type="scalar"] .scalar').inner_text()

    assert text == "0.20000"


def test_parallel_coordinates_map_config_to_summary(sweep: Page, tmp_path: Path) -> None:
    add_panel(sweep, "parallel", fields=["config.depth", "config.lr", "summary.loss"])

    trace = plot_data(sweep, "parallel")[0]
    save_screenshot(sweep, tmp_path, "panels.png")

    assert trace["type"] == "parcoords"
    assert [d["label"] for d in trace["dimensions"]] == [
        "config.depth",
        "config.lr",
        "summary.loss",
    ]
    assert sorted(trace["dimensions"][0]["values"]) == [2, 4, 8]


def test_summary_panel_follows_live_run(
    sweep: Page, sqlite_server: RunningServer, tmp_path: Path
) -> None:
    add_panel(sweep, "bar", field="summary.loss")
    run = start_run(sqlite_server, tmp_path, PROJECT, name="late", config={"lr": 0.5})
    run.log({"loss": 0.05}, step=0)

    sweep.wait_for_function(
        """() => {
            const plot = document.querySelector('.panel[data-panel-type="bar"] .plot');
            return (plot?.data?.[0]?.y ?? []).includes("late");
        }"""
    )
    run.finish()
    trace = plot_data(sweep, "bar")[0]

    assert dict(zip(trace["y"], trace["x"], strict=True))["late"] == 0.05
