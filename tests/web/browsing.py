"""Helpers for the browser tests: Chromium's settings, sign-in, runs and plot traces.

Chromium is never downloaded: the tests use ``/usr/bin/chromium`` (Debian's
``chromium`` package, which ``make test`` installs when it runs as root).
Without it the tests are skipped, except when ``CI`` is set, where they fail.

Pages run under the server's Content-Security-Policy, which forbids ``eval``.
Playwright evaluates a bare expression given to ``wait_for_function`` with
``eval`` in the page, so pass a function (``"() => ..."``) instead.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

import assay
from conftest import ROOT, RunningServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
BUNDLE = ROOT / "server" / "assay_server" / "static" / "app.js"
ARTIFACTS = ROOT / "tests" / "artifacts"
#: Long enough for a loaded CI machine; every wait returns as soon as its condition holds.
WAIT_MS = 20_000


def require(condition: bool, message: str) -> None:
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set, so this fails instead of skipping)")
    pytest.skip(message)


def sign_in(page: Page, server: RunningServer, path: str, key: str | None = None) -> None:
    """Sign in through the ``/login?token=`` link and its confirmation, and land on ``path``.

    ``key`` defaults to the server's admin key.
    """
    page.goto(f"{server.url}/login?token={key or server.api_key}&next={path}")
    page.click("button.confirm-sign-in")
    page.wait_for_selector("body[data-loaded]")


def start_run(server: RunningServer, tmp_path: Path, project: str, **kwargs: Any) -> assay.Run:
    """A run whose points leave the SDK within about 10 ms."""
    return assay.init(
        project,
        server=server.url,
        api_key=server.api_key,
        spool_dir=tmp_path / "spool",
        settings=assay.SenderOptions(flush_interval=0.01),
        **kwargs,
    )


def save_screenshot(page: Page, tmp_path: Path, name: str) -> Path:
    """Save a screenshot under the test's tmp dir and under tests/artifacts/ (git-ignored)."""
    path = tmp_path / name
    page.screenshot(path=path, full_page=True)
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(path, ARTIFACTS / name)
    return path


def trace(page: Page, key: str, uid: str) -> dict[str, Any] | None:
    """The plotly trace ``uid`` (``ROLE-RUN_ID``) of the line panel for ``key``, as drawn."""
    return page.evaluate(  # type: ignore[no-any-return]
        """([key, uid]) => {
            const plot = document.querySelector(`.plot[data-key="${key}"]`);
            const found = (plot?.data ?? []).find((t) => t.uid === uid);
            if (!found) return null;
            const symbols = [].concat(found.marker?.symbol ?? []);
            return {x: Array.from(found.x), y: Array.from(found.y),
                    customdata: Array.from(found.customdata ?? []),
                    opacity: found.opacity ?? 1, symbols};
        }""",
        [key, uid],
    )


def wait_for_points(page: Page, key: str, uid: str, count: int) -> None:
    """Wait until trace ``uid`` in the panel for ``key`` has at least ``count`` x values."""
    page.wait_for_function(
        """([key, uid, count]) => {
            const plot = document.querySelector(`.plot[data-key="${key}"]`);
            const found = (plot?.data ?? []).find((t) => t.uid === uid);
            return found !== undefined && found.x.length >= count;
        }""",
        arg=[key, uid, count],
    )
