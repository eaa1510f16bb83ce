"""The workspace in Chromium: live lines, marked NaN, smoothing, layouts and panels."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from playwright.sync_api import Page

from conftest import RunningServer
from web.browsing import save_screenshot, sign_in, start_run, trace, wait_for_points

PROJECT = "vision"


@pytest.fixture
def workspace(server: RunningServer, page: Page, tmp_path: Path) -> Page:
    """The workspace of a project with one finished run, open and subscribed to live."""
    with start_run(server, tmp_path, PROJECT, name="baseline", config={"lr": 0.1}) as run:
        for step in range(5):
            run.log({"loss": 1.0 / (step + 1)}, step=step)
    sign_in(page, server, f"/projects/{PROJECT}")
    page.wait_for_selector("body[data-live=subscribed]")
    page.wait_for_selector('.plot[data-key="loss"][data-revision]')
    return page


def test_live_run_line_grows(workspace: Page, server: RunningServer, tmp_path: Path) -> None:
    page = workspace
    page.evaluate("window.openedOnce = true")
    run = start_run(server, tmp_path, PROJECT, name="live-one")
    for step in range(3):
        run.log({"loss": 2.0 - step * 0.1}, step=step)

    page.wait_for_selector(f'tr[data-run-id="{run.id}"]')
    wait_for_points(page, "loss", f"line-{run.id}", 3)
    first = trace(page, "loss", f"line-{run.id}")
    for step in range(3, 8):
        run.log({"loss": 2.0 - step * 0.1}, step=step)
    wait_for_points(page, "loss", f"line-{run.id}", 8)
    grown = trace(page, "loss", f"line-{run.id}")
    run.finish()
    save_screenshot(
        page, Path(tmp_path), f"workspace-live-{server.settings.redis_url is not None}.png"
    )

    assert first is not None
    assert grown is not None
    assert grown["customdata"] == list(range(8))
    assert grown["y"][7] == pytest.approx(1.3)
    assert page.evaluate("window.openedOnce") is True


def test_nan_point_is_marked(workspace: Page, server: RunningServer, tmp_path: Path) -> None:
    page = workspace
    run = start_run(server, tmp_path, PROJECT, name="diverging")
    for step, value in enumerate([0.5, 0.4, math.nan, 0.3, math.inf]):
        run.log({"loss": value}, step=step)

    wait_for_points(page, "loss", f"marks-{run.id}", 2)
    marks = trace(page, "loss", f"marks-{run.id}")
    line = trace(page, "loss", f"line-{run.id}")
    run.finish()

    assert marks is not None
    assert line is not None
    assert marks["x"] == [2, 4]
    assert marks["y"] == [0.4, 0.3]
    assert marks["symbols"] == ["x", "triangle-up"]
    assert marks["customdata"][0][0].startswith("NaN")
    assert marks["customdata"][1][0].startswith("+Inf")
    assert line["y"][2] is None


def test_nan_mark_survives_reload(workspace: Page, server: RunningServer, tmp_path: Path) -> None:
    page = workspace
    with start_run(server, tmp_path, PROJECT, name="stored-nan") as run:
        run.log({"loss": 1.0}, step=0)
        run.log({"loss": math.nan}, step=1)
    page.reload()
    page.wait_for_selector('.plot[data-key="loss"][data-revision]')
    wait_for_points(page, "loss", f"marks-{run.id}", 1)

    marks = trace(page, "loss", f"marks-{run.id}")

    assert marks is not None
    assert marks["x"] == [1]
    assert marks["y"] == [1.0]
    assert marks["symbols"] == ["x"]


def test_smoothing_control_changes_line(workspace: Page) -> None:
    page = workspace
    run_id = page.locator("tr[data-run-id]").first.get_attribute("data-run-id")
    before = trace(page, "loss", f"line-{run_id}")
    panel = page.locator('.panel:has(.plot[data-key="loss"])')

    panel.locator("select.smoothing").select_option("ema")
    page.wait_for_function(
        """(uid) => (document.querySelector('.plot[data-key="loss"]').data ?? [])
            .some((t) => t.uid === uid)""",
        arg=f"raw-{run_id}",
    )
    after = trace(page, "loss", f"line-{run_id}")
    raw = trace(page, "loss", f"raw-{run_id}")

    assert before is not None
    assert after is not None
    assert raw is not None
    assert after["y"] != before["y"]
    assert raw["y"] == before["y"]
    assert raw["opacity"] < 1
    # Weight 0.6 over 1.0, 0.5: (0.6 * 0.4 + 0.4 * 0.5) / (1 - 0.6**2) = 0.44 / 0.64.
    assert after["y"][1] == pytest.approx(0.6875)


def add_bar_panel(page: Page) -> None:
    """Add a bar panel of config.lr through the workspace's "Add panel" form."""
    form = page.locator(".add-panel-form")
    form.locator("summary").click()
    form.locator("select.panel-type").select_option("bar")
    form.locator("select[name=field]").select_option("config.lr")
    form.locator("button.add-panel").click()
    page.wait_for_selector('.panel[data-panel-type="bar"] .plot[data-revision]')


def test_layout_survives_reload(workspace: Page) -> None:
    page = workspace
    add_bar_panel(page)
    page.wait_for_function("() => document.body.dataset.layoutSaves >= 1")
    line_panel = page.locator('.panel[data-panel-type="line"]').first
    line_panel.locator('button[data-action="wider"]').click()
    page.wait_for_function("() => document.body.dataset.layoutSaves >= 2")
    widths_before = line_panel.evaluate("(el) => el.style.gridColumn")

    page.reload()
    page.wait_for_selector('.panel[data-panel-type="bar"] .plot[data-revision]')
    types = page.locator(".panel").evaluate_all("(els) => els.map((el) => el.dataset.panelType)")
    widths_after = page.locator('.panel[data-panel-type="line"]').first.evaluate(
        "(el) => el.style.gridColumn"
    )

    assert types == ["line", "bar"]
    assert widths_after == widths_before
    assert "span 6" in widths_after


def test_charts_offer_no_cloud_upload(workspace: Page) -> None:
    page = workspace
    add_bar_panel(page)
    page.locator('.plot[data-key="loss"]').hover()
    titles = page.locator(".modebar-btn").evaluate_all(
        "(buttons) => buttons.map((button) => button.dataset.title ?? '')"
    )
    # Each chart's config as plotly.js applied it.
    configs = page.locator(".js-plotly-plot").evaluate_all(
        """(plots) => plots.map((plot) => [plot._context.showSendToCloud,
            plot._context.plotlyServerURL])"""
    )

    assert titles, "no toolbar was drawn"
    assert not [title for title in titles if "cloud" in title.lower() or "share" in title.lower()]
    assert len(configs) == 2
    assert configs == [[False, ""]] * 2


def test_removed_panel_stays_removed(workspace: Page) -> None:
    page = workspace
    page.locator('.panel[data-panel-type="line"] button[data-action="remove"]').click()
    page.wait_for_function("() => document.body.dataset.layoutSaves >= 1")

    page.reload()
    page.wait_for_selector("body[data-loaded]")

    assert page.locator(".panel").count() == 0


def test_reconnect_misses_no_points(
    workspace: Page, server: RunningServer, tmp_path: Path
) -> None:
    page = workspace
    run = start_run(server, tmp_path, PROJECT, name="steady")
    run.log({"loss": 0.0}, step=0)
    wait_for_points(page, "loss", f"line-{run.id}", 1)

    page.evaluate("window.assayLive.dropForTest()")
    page.wait_for_selector("body[data-live=offline]", state="attached")
    for step in range(1, 6):
        run.log({"loss": float(step)}, step=step)
    page.wait_for_selector("body[data-live=subscribed]", state="attached")
    wait_for_points(page, "loss", f"line-{run.id}", 6)
    line = trace(page, "loss", f"line-{run.id}")
    run.finish()

    assert line is not None
    assert line["customdata"] == [0, 1, 2, 3, 4, 5]
    assert line["y"] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert page.evaluate("document.body.dataset.loaded") == "1"
