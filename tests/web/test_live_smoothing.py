"""Smoothing in the browser agrees with the server's for lines that grow live."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from playwright.sync_api import Page

from conftest import RunningServer
from web.browsing import sign_in, start_run, trace, wait_for_points


@pytest.mark.parametrize(("method", "parameter"), [("ema", 0.6), ("average", 5), ("gaussian", 5)])
def test_live_smoothing_matches_server(
    sqlite_server: RunningServer, page: Page, tmp_path: Path, method: str, parameter: float
) -> None:
    with start_run(sqlite_server, tmp_path, "smooth") as first:
        first.log({"loss": 1.0}, step=0)
    sign_in(page, sqlite_server, "/projects/smooth")
    page.wait_for_selector("body[data-live=subscribed]")
    panel = page.locator('.panel:has(.plot[data-key="loss"])')
    panel.locator("select.smoothing").select_option(method)
    wait_for_points(page, "loss", f"raw-{first.id}", 1)
    run = start_run(sqlite_server, tmp_path, "smooth", name="growing")
    run.log({"loss": 3.0}, step=0)
    wait_for_points(page, "loss", f"line-{run.id}", 1)

    values = [2.5, math.nan, 2.0, 2.2, 1.0, 1.5, 0.5, 0.7, 0.4]
    for step, value in enumerate(values, start=1):
        run.log({"loss": value}, step=step)
    wait_for_points(page, "loss", f"line-{run.id}", 10)
    drawn = trace(page, "loss", f"line-{run.id}")
    run.finish()
    server_figure = page.evaluate(
        """async (query) => {
            const response = await fetch(`/api/v1/projects/smooth/figure?${query}`);
            return (await response.json()).figure.data;
        }""",
        f"key=loss&smoothing={method}&parameter={parameter}&runs={run.id}",
    )
    expected = next(t for t in server_figure if t["uid"] == f"line-{run.id}")

    assert drawn is not None
    assert drawn["customdata"] == expected["customdata"]
    assert drawn["y"][2] is None
    assert drawn["y"] == pytest.approx(expected["y"])
