"""The run-set sidebar in Chromium: toggle, rename, filter editing, clone, freeze, live counts."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Locator, Page

from conftest import RunningServer
from web.browsing import save_screenshot, sign_in, start_run

PROJECT = "sets"
RUNSETS = f"/api/v1/projects/{PROJECT}/runsets"


def create(server: RunningServer, **fields: Any) -> dict[str, Any]:
    with server.client() as client:
        response = client.post(RUNSETS, json=fields)
    assert response.status_code == 201, response.text
    return dict(response.json())


def stored(server: RunningServer) -> dict[str, dict[str, Any]]:
    with server.client() as client:
        found = client.get(RUNSETS).json()["runsets"]
    return {runset["name"]: runset for runset in found}


def wait_stored(server: RunningServer, check: Any, timeout: float = 20) -> dict[str, Any]:
    """Poll the stored run sets until ``check(by_name)`` is true; return them."""
    deadline = time.monotonic() + timeout
    while True:
        found = stored(server)
        if check(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def item(page: Page, runset_id: str) -> Locator:
    return page.locator(f'.runset[data-runset-id="{runset_id}"]')


def plot_uids(page: Page, key: str) -> list[str]:
    return page.evaluate(  # type: ignore[no-any-return]
        """(key) => {
            const plot = document.querySelector(`.plot[data-key="${key}"]`);
            return (plot?.data ?? []).map((t) => t.uid);
        }""",
        key,
    )


def open_workspace(page: Page, server: RunningServer) -> None:
    sign_in(page, server, f"/projects/{PROJECT}")
    page.wait_for_selector("body[data-live=subscribed]")
    page.wait_for_selector("body[data-membership]")


@pytest.fixture
def sweep(sqlite_server: RunningServer, tmp_path: Path) -> RunningServer:
    """Four finished runs: lr 0.1 and 1.0 by batch size 8 and 64, each with a loss curve."""
    for lr in (0.1, 1.0):
        for batch_size in (8, 64):
            with start_run(
                sqlite_server,
                tmp_path,
                PROJECT,
                name=f"lr{lr}-bs{batch_size}",
                config={"lr": lr, "batch_size": batch_size},
            ) as run:
                for step in range(4):
                    run.log({"loss": lr * (step + 1) + batch_size / 100}, step=step)
    return sqlite_server


def test_sidebar_shows_counts_and_toggles(sweep: RunningServer, page: Page) -> None:
    high = create(sweep, name="high lr", filter="config.lr >= 1")
    everything = create(sweep, name="all")
    open_workspace(page, sweep)

    page.wait_for_function(
        "() => document.querySelector('.runset-count')?.textContent === '2 runs'"
    )
    item(page, everything["id"]).locator(".runset-active").uncheck()
    found = wait_stored(sweep, lambda by_name: by_name["all"]["active"] is False)

    assert item(page, high["id"]).locator(".runset-name").input_value() == "high lr"
    assert item(page, everything["id"]).locator(".runset-count").text_content() == "4 runs"
    assert found["all"]["active"] is False
    assert found["high lr"]["active"] is True


def test_filter_error_shows_column(sweep: RunningServer, page: Page) -> None:
    runset = create(sweep, name="broken", filter="state = finished")
    open_workspace(page, sweep)
    box = item(page, runset["id"])

    box.locator(".runset-filter").fill("config.lr >")
    error = box.locator(".runset-error")
    error.wait_for(state="visible")

    assert error.get_attribute("data-column") == "12"
    assert "expected a value" in (error.text_content() or "")
    assert box.locator(".runset-caret").text_content() == "config.lr >\n           ^"
    assert stored(sweep)["broken"]["filter"] == "state = finished"


def test_completion_suggests_keys(sweep: RunningServer, page: Page) -> None:
    runset = create(sweep, name="small batch")
    open_workspace(page, sweep)
    filter_input = item(page, runset["id"]).locator(".runset-filter")

    filter_input.click()
    filter_input.press_sequentially("config.b")
    completions = item(page, runset["id"]).locator(".runset-completion")
    completions.first.wait_for()
    offered = completions.all_text_contents()
    filter_input.press("Tab")
    filter_input.press_sequentially(" < 32")
    found = wait_stored(
        sweep, lambda by_name: by_name["small batch"]["filter"] == "config.batch_size < 32"
    )

    assert offered == ["config.batch_size"]
    assert filter_input.input_value() == "config.batch_size < 32"
    assert found["small batch"]["filter"] == "config.batch_size < 32"


def test_summary_completion_offers_statistics(sweep: RunningServer, page: Page) -> None:
    runset = create(sweep, name="stats")
    open_workspace(page, sweep)
    filter_input = item(page, runset["id"]).locator(".runset-filter")

    filter_input.click()
    filter_input.press_sequentially("summary.loss.h")
    completions = item(page, runset["id"]).locator(".runset-completion")
    completions.first.wait_for()

    assert completions.all_text_contents() == [
        "summary.loss.has_inf",
        "summary.loss.has_nan",
        "summary.loss.has_null",
    ]


def test_rename_clone_and_freeze(sweep: RunningServer, page: Page) -> None:
    runset = create(sweep, name="before", filter="config.lr >= 1")
    open_workspace(page, sweep)
    box = item(page, runset["id"])

    box.locator(".runset-name").fill("after")
    box.locator(".runset-name").press("Enter")
    wait_stored(sweep, lambda by_name: "after" in by_name)
    box.locator(".runset-clone").click()
    page.locator(".runset").nth(1).wait_for()
    box.locator(".runset-freeze").click()
    page.wait_for_function(
        f"""() => document.querySelector('.runset[data-runset-id="{runset["id"]}"] '
            + '.runset-filter').value.includes('created_at <=')"""
    )
    found = stored(sweep)

    assert sorted(found) == ["after", "after (copy)"]
    assert found["after (copy)"]["filter"] == "config.lr >= 1"
    assert found["after"]["filter"].startswith("(config.lr >= 1) and created_at <= ")
    assert page.locator(".runset .runset-name").nth(1).input_value() == "after (copy)"


def test_grouped_runset_draws_group_lines(
    sweep: RunningServer, page: Page, tmp_path: Path
) -> None:
    runset = create(
        sweep,
        name="by lr",
        grouping={"keys": ["config.lr"], "aggregate": "mean", "band": "minmax"},
        colour="#2ca02c",
    )
    open_workspace(page, sweep)
    page.wait_for_function(
        """() => (document.querySelector('.plot[data-key="loss"]')?.data ?? [])
            .some((t) => t.uid.startsWith('group-'))"""
    )
    grouped = plot_uids(page, "loss")
    save_screenshot(page, tmp_path, "runsets-grouped.png")

    item(page, runset["id"]).locator(".runset-active").uncheck()
    page.wait_for_function(
        """() => (document.querySelector('.plot[data-key="loss"]')?.data ?? [])
            .some((t) => t.uid.startsWith('line-'))"""
    )
    ungrouped = plot_uids(page, "loss")

    assert f"group-{runset['id']}.0" in grouped
    assert f"group-{runset['id']}.1" in grouped
    assert f"band-{runset['id']}.0" in grouped
    assert not any(uid.startswith("line-") for uid in grouped)
    assert not any(uid.startswith("group-") for uid in ungrouped)


def test_group_keys_edit_regroups(sweep: RunningServer, page: Page) -> None:
    runset = create(sweep, name="regroup")
    open_workspace(page, sweep)
    box = item(page, runset["id"])

    box.locator(".runset-group-keys").fill("config.batch_size")
    box.locator(".runset-group-keys").press("Enter")
    box.locator(".runset-band").select_option("none")
    found = wait_stored(sweep, lambda by_name: by_name["regroup"]["grouping"]["band"] == "none")
    # The keys are saved first, so a figure with the default band may come before this one.
    page.wait_for_function(
        """() => {
            const uids = (document.querySelector('.plot[data-key="loss"]')?.data ?? [])
                .map((t) => t.uid);
            return uids.some((uid) => uid.startsWith('group-'))
                && !uids.some((uid) => uid.startsWith('band-'));
        }"""
    )
    uids = plot_uids(page, "loss")

    assert found["regroup"]["grouping"]["keys"] == ["config.batch_size"]
    assert f"group-{runset['id']}.1" in uids
    assert not any(uid.startswith("band-") for uid in uids)


def test_bad_group_key_is_shown(sweep: RunningServer, page: Page) -> None:
    runset = create(sweep, name="bad group")
    open_workspace(page, sweep)
    box = item(page, runset["id"])

    box.locator(".runset-group-keys").fill("created_at")
    box.locator(".runset-group-keys").press("Enter")
    error = box.locator(".runset-error")
    error.wait_for(state="visible")

    assert "cannot group by 'created_at'" in (error.text_content() or "")
    assert stored(sweep)["bad group"]["grouping"]["keys"] == []


def test_runsets_follow_divergence_live(server: RunningServer, page: Page, tmp_path: Path) -> None:
    with start_run(server, tmp_path, PROJECT, name="steady") as run:
        run.log({"loss": 0.5}, step=0)
    diverged = create(
        server,
        name="diverged",
        filter="summary.loss.has_nan = true or summary.loss.has_inf = true",
        colour="#d62728",
    )
    healthy = create(
        server,
        name="healthy",
        filter="not (summary.loss.has_nan = true or summary.loss.has_inf = true)",
        colour="#1f77b4",
    )
    open_workspace(page, server)
    count = item(page, diverged["id"]).locator(".runset-count")
    healthy_count = item(page, healthy["id"]).locator(".runset-count")
    page.wait_for_function(
        '(id) => document.querySelector(`.runset[data-runset-id="${id}"] .runset-count`)'
        "?.textContent === '0 runs'",
        arg=diverged["id"],
    )

    run = start_run(server, tmp_path, PROJECT, name="diverging")
    run.log({"loss": 1.0}, step=0)
    page.wait_for_function(
        '(id) => document.querySelector(`.runset[data-runset-id="${id}"] .runset-count`)'
        "?.textContent === '2 runs'",
        arg=healthy["id"],
    )
    run.log({"loss": math.nan}, step=1)
    page.wait_for_function(
        '(id) => document.querySelector(`.runset[data-runset-id="${id}"] .runset-count`)'
        "?.textContent === '1 run'",
        arg=diverged["id"],
    )
    page.wait_for_function(
        f"""() => (document.querySelector('.plot[data-key="loss"]')?.data ?? [])
            .some((t) => t.uid === 'line-{run.id}' && t.line.color === '#d62728')"""
    )
    run.finish()

    assert count.text_content() == "1 run"
    assert healthy_count.text_content() == "1 run"
