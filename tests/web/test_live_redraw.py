"""Live points that arrive while a line panel fetches a new figure are drawn once."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import msgpack
from playwright.sync_api import Page, Route, WebSocket

from conftest import RunningServer
from web.browsing import WAIT_MS, sign_in, start_run, trace, wait_for_points


def pump_until(page: Page, condition: Callable[[], bool], describe: str) -> None:
    """Run the page's event handlers until ``condition`` is true, or fail after ``WAIT_MS``."""
    deadline = time.monotonic() + WAIT_MS / 1000
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {describe}"
        page.wait_for_timeout(20)


def test_points_during_two_redraws_drawn_once(
    sqlite_server: RunningServer, page: Page, tmp_path: Path
) -> None:
    steps_seen: list[int] = []

    def watch(socket: WebSocket) -> None:
        def frame(payload: str | bytes) -> None:
            # The live socket sends MessagePack frames.
            message = msgpack.unpackb(payload, strict_map_key=False)
            inner = message.get("messages", []) if message["type"] == "batch" else [message]
            for entry in inner:
                if entry["type"] == "points" and "loss" in entry["metrics"]:
                    steps_seen.extend(entry["metrics"]["loss"]["steps"])

        socket.on("framereceived", frame)

    page.on("websocket", watch)
    run = start_run(sqlite_server, tmp_path, "redraw")
    for step in range(5):
        run.log({"loss": 1.0 / (step + 1)}, step=step)
    sign_in(page, sqlite_server, "/projects/redraw")
    page.wait_for_selector("body[data-live=subscribed]")
    wait_for_points(page, "loss", f"line-{run.id}", 5)

    # Hold each figure request until the test lets it through.
    held_routes: list[Route] = []
    page.route("**/figure?**", lambda route: held_routes.append(route))
    smoothing = page.locator('.panel:has(.plot[data-key="loss"]) select.smoothing')
    smoothing.select_option("ema")
    smoothing.select_option("none")
    pump_until(page, lambda: len(held_routes) == 1, "the first figure request")
    held_routes[0].continue_()
    # The first figure is drawn. The second request is under way when the
    # points come, so its figure contains them as well as the live message.
    pump_until(page, lambda: len(held_routes) == 2, "the second figure request")
    for step in range(5, 10):
        run.log({"loss": 1.0 / (step + 1)}, step=step)
    pump_until(page, lambda: 9 in steps_seen, "step 9 on the live socket")
    held_routes[1].continue_()
    page.unroute("**/figure?**")
    # A later point is drawn after any update queued before it.
    run.log({"loss": 0.05}, step=10)
    wait_for_points(page, "loss", f"line-{run.id}", 11)
    drawn = trace(page, "loss", f"line-{run.id}")
    run.finish()

    assert drawn is not None
    assert drawn["customdata"] == list(range(11))
