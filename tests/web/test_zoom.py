"""Zooming a line plot requests the range again and draws it at full resolution."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page

from conftest import RunningServer
from web.browsing import sign_in, start_run, trace


def test_zoom_reloads_full_resolution(
    sqlite_server: RunningServer, page: Page, tmp_path: Path
) -> None:
    with start_run(sqlite_server, tmp_path, "zoom") as run:
        for step in range(3000):
            run.log({"loss": float(step % 7)}, step=step)
    sign_in(page, sqlite_server, "/projects/zoom")
    page.wait_for_selector('.plot[data-key="loss"][data-revision="1"]')
    overview = trace(page, "loss", f"line-{run.id}")
    area = page.locator('.plot[data-key="loss"] .nsewdrag').bounding_box()
    assert area is not None

    # Drag across the middle tenth of the plot, as a user zooms in on x.
    middle = area["y"] + area["height"] / 2
    page.mouse.move(area["x"] + area["width"] * 0.45, middle)
    page.mouse.down()
    page.mouse.move(area["x"] + area["width"] * 0.55, middle, steps=5)
    page.mouse.up()
    page.wait_for_selector('.plot[data-key="loss"][data-revision="2"]')
    zoomed = trace(page, "loss", f"line-{run.id}")

    assert overview is not None
    assert len(overview["customdata"]) <= 1000
    assert zoomed is not None
    steps = zoomed["customdata"]
    assert 100 < len(steps) < 1000
    assert steps == list(range(steps[0], steps[0] + len(steps)))
