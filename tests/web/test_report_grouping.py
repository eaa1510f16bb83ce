"""Grouping and sort of a report's run sets, edited in the run-set bar by two editors at once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page

from assay_server import runset_shape
from assay_server.errors import BadRequest
from conftest import RunningServer
from web.browsing import start_run
from web.reports import PROJECT, create_report, document_json, open_grid_editors
from web.sharing import close_page, create_share, open_page, wait_until_stored

#: Per run name, its config.lr and the offset added to its loss. The runs of
#: one lr differ, so a group's mean, max and band differ too.
RUNS = {"a": (0.01, 0.0), "b": (0.01, 1.0), "c": (1.0, 0.0), "d": (1.0, 2.0)}


def loss(lr: float, offset: float, step: int) -> float:
    return offset + lr * (3 - step)


@pytest.fixture
def runs(sqlite_server: RunningServer, tmp_path: Path) -> dict[str, str]:
    ids = {}
    for name, (lr, offset) in RUNS.items():
        with start_run(sqlite_server, tmp_path, PROJECT, name=name, config={"lr": lr}) as run:
            for step in range(3):
                run.log({"loss": loss(lr, offset, step)}, step=step)
            ids[name] = run.id
    return ids


@pytest.fixture
def report(sqlite_server: RunningServer, runs: dict[str, str]) -> str:
    return create_report(sqlite_server, "Grouped")


@pytest.fixture
def pages(browser: Browser, sqlite_server: RunningServer, report: str) -> Iterator[list[Page]]:
    """Two editors of one report whose first block is a grid with a loss line panel."""
    opened = open_grid_editors(browser, sqlite_server, report)
    for page in opened:
        page.wait_for_selector(".run-set .run-set-count:text('4 runs')")
    yield opened
    for page in opened:
        close_page(page)


def row(page: Page) -> Locator:
    return page.locator(".run-set").first


def run_set_id(page: Page) -> str:
    return str(document_json(page)["blocks"][0]["run_sets"][0]["id"])


def traces(page: Page) -> list[dict[str, Any]]:
    """The uid, name and y values of every trace of the grid's loss panel, in drawing order."""
    return page.evaluate(  # type: ignore[no-any-return]
        """() => (document.querySelector('.report-grid .plot[data-key="loss"]').data ?? [])
            .map((t) => ({uid: String(t.uid), name: t.name ?? '', y: Array.from(t.y ?? [])}))"""
    )


def wait_for_uids(page: Page, condition: str) -> None:
    """Wait until ``condition``, JavaScript over the loss panel's ``uids``, holds."""
    page.wait_for_function(
        f"""() => {{
            const plot = document.querySelector('.report-grid .plot[data-key="loss"]');
            const uids = (plot?.data ?? []).map((t) => String(t.uid));
            return {condition};
        }}"""
    )


def wait_for_order(page: Page, expected: list[str]) -> None:
    """Wait until the loss panel draws lines with exactly the uids ``expected``, in that order."""
    page.wait_for_function(
        """(expected) => {
            const plot = document.querySelector('.report-grid .plot[data-key="loss"]');
            const uids = (plot?.data ?? []).map((t) => String(t.uid))
                .filter((uid) => uid.startsWith('line-'));
            return JSON.stringify(uids) === JSON.stringify(expected);
        }""",
        arg=expected,
    )


def set_group_keys(page: Page, keys: str) -> None:
    field = row(page).locator("input.runset-group-keys")
    field.fill(keys)
    field.press("Enter")


def set_sort(page: Page, field: str, direction: str) -> None:
    row(page).locator("select.runset-sort-direction").select_option(direction)
    sort_field = row(page).locator("input.runset-sort-field")
    sort_field.fill(field)
    sort_field.press("Enter")


def test_grouping_reaches_other_editor(pages: list[Page]) -> None:
    first, second = pages
    second.evaluate("() => { window.notReloaded = true; }")
    keys = row(first).locator("input.runset-group-keys")
    keys.fill("config.l")
    completion = row(first).locator(".runset-completion").first
    completion.wait_for()
    suggested = completion.inner_text()
    keys.press("Tab")
    keys.press("Enter")
    runset = run_set_id(first)
    wait_for_uids(
        second,
        f"uids.includes('group-{runset}.0') && uids.includes('group-{runset}.1')"
        " && !uids.some((uid) => uid.startsWith('line-'))",
    )
    grouped = {trace["uid"]: trace for trace in traces(second)}
    row(first).locator("select.runset-aggregate").select_option("max")
    row(first).locator("select.runset-band").select_option("minmax")
    second.wait_for_function(
        "() => document.querySelector('.run-set select.runset-band').value === 'minmax'"
    )
    wait_for_uids(first, f"uids.includes('band-{runset}.1')")
    second.wait_for_function(
        """(uid) => {
            const plot = document.querySelector('.report-grid .plot[data-key="loss"]');
            const line = (plot?.data ?? []).find((t) => t.uid === uid);
            return line !== undefined && line.y[0] === 1.03;
        }""",
        arg=f"group-{runset}.0",
    )
    maxed = {trace["uid"]: trace for trace in traces(second)}
    stored = document_json(second)["blocks"][0]["run_sets"][0]

    assert suggested == "config.lr"
    assert stored["grouping"] == {"keys": ["config.lr"], "aggregate": "max", "band": "minmax"}
    assert second.evaluate("() => window.notReloaded") is True
    assert row(second).locator("input.runset-group-keys").input_value() == "config.lr"
    assert row(second).locator("select.runset-aggregate").input_value() == "max"
    # Mean over runs a and b (lr 0.01), then over c and d (lr 1.0), at steps 0, 1, 2.
    assert grouped[f"group-{runset}.0"]["y"] == pytest.approx([0.53, 0.52, 0.51])
    assert grouped[f"group-{runset}.1"]["y"] == pytest.approx([4.0, 3.0, 2.0])
    assert "(2 runs)" in grouped[f"group-{runset}.0"]["name"]
    assert f"band-{runset}.0" in grouped
    assert f"band-{runset}.1" in grouped
    assert maxed[f"group-{runset}.0"]["y"] == pytest.approx([1.03, 1.02, 1.01])
    assert maxed[f"group-{runset}.1"]["y"] == pytest.approx([5.0, 4.0, 3.0])
    # With minmax the band runs from the group's minimum to its maximum.
    assert maxed[f"bandlow-{runset}.1"]["y"] == pytest.approx([3.0, 2.0, 1.0])
    assert maxed[f"band-{runset}.1"]["y"] == pytest.approx([5.0, 4.0, 3.0])
    assert not any(uid.startswith("line-") for uid in maxed)


def test_sort_change_reorders(pages: list[Page], runs: dict[str, str]) -> None:
    first, second = pages
    # summary.loss is the last loss each run logged: a 0.01, b 1.01, c 1.0, d 3.0.
    ascending = [f"line-{runs[name]}" for name in ("a", "c", "b", "d")]
    set_sort(first, "summary.loss", "asc")
    wait_for_order(second, ascending)
    stored_ascending = document_json(second)["blocks"][0]["run_sets"][0]["sort"]
    row(first).locator("select.runset-sort-direction").select_option("desc")
    wait_for_order(second, list(reversed(ascending)))
    descending = [trace["uid"] for trace in traces(second) if trace["uid"].startswith("line-")]
    set_sort(first, "", "desc")
    second.wait_for_function(
        "() => window.assayReport.doc.getArray('blocks').get(0)"
        ".get('run_sets').get(0).get('sort') === null"
    )

    assert stored_ascending == {"field": "summary.loss", "direction": "asc"}
    assert descending == list(reversed(ascending))
    assert row(second).locator("input.runset-sort-field").input_value() == ""
    assert row(second).locator("select.runset-sort-direction").input_value() == "desc"


def test_invalid_group_key_rejected_inline(pages: list[Page]) -> None:
    first, second = pages
    set_group_keys(first, "config.lr, created_at")
    error = row(first).locator(".run-set-field-error[data-part=grouping]")
    error.wait_for(state="visible")
    message = error.inner_text()
    invalid = row(first).locator("input.runset-group-keys").get_attribute("aria-invalid")
    typed = row(first).locator("input.runset-group-keys").input_value()
    set_sort(first, "summary.loss.mean", "asc")
    sort_error = row(first).locator(".run-set-field-error[data-part=sort]")
    sort_error.wait_for(state="visible")
    sort_message = sort_error.inner_text()
    set_group_keys(first, "config.lr")
    error.wait_for(state="hidden")
    second.wait_for_function(
        "() => document.querySelector('.run-set input.runset-group-keys').value === 'config.lr'"
    )
    stored = document_json(second)["blocks"][0]["run_sets"][0]

    assert message == (
        'cannot group by "created_at"; group by config.KEY or one of name, state, id, group, tags'
    )
    assert invalid == "true"
    assert typed == "config.lr, created_at"
    assert "summary.loss.mean" in sort_message
    assert "unknown statistic 'mean'" in sort_message
    assert sort_error.is_visible()
    assert stored["grouping"]["keys"] == ["config.lr"]
    assert stored["sort"] is None
    assert first.locator(".report-messages .error").count() == 0


#: Grouping keys the run-set bar must judge as the server does.
GROUP_KEYS = [
    "config.lr",
    "config . lr",
    'config."learning rate"',
    'config."a,b"',
    "config.optimizer.lr",
    "config.in",
    "config.train/lr-2",
    "name",
    "state",
    "tags",
    "created_at",
    "summary.loss",
    "config",
    "config.",
    "config.1",
    "Config.lr",
    "lr",
    "not config.lr",
    "config.lr exists",
    "config.lr = 1",
    "(config.lr)",
    'config."open',
    "config.'lr'",
    'config."$float"',
    'config."\\u0000"',
    "name.first",
    "config.λ",
    'config."é"."ü"."ß"',
]


def server_accepts_key(key: str) -> bool:
    try:
        runset_shape.check_group_key(key)
    except BadRequest:
        return False
    return True


def test_group_keys_judged_as_server(pages: list[Page]) -> None:
    """The bar writes exactly the keys that the server accepts."""
    first, second = pages
    judged: dict[str, bool] = {}
    for key in GROUP_KEYS:
        set_group_keys(first, key)
        error = row(first).locator(".run-set-field-error[data-part=grouping]")
        judged[key] = not error.is_visible()
    expected = {key: server_accepts_key(key) for key in GROUP_KEYS}
    set_group_keys(first, "config.lr")
    second.wait_for_function(
        "() => document.querySelector('.run-set input.runset-group-keys').value === 'config.lr'"
    )

    assert judged == expected
    assert first.locator(".report-messages .error").count() == 0
    assert second.locator(".report-messages .error").count() == 0


def test_view_link_shows_values_only(
    browser: Browser, sqlite_server: RunningServer, pages: list[Page], report: str
) -> None:
    first, _ = pages
    set_group_keys(first, "config.lr")
    set_sort(first, "config.lr", "asc")
    wait_until_stored(
        sqlite_server,
        report,
        lambda grid: grid["run_sets"][0]["sort"] == {"field": "config.lr", "direction": "asc"},
    )
    share = create_share(sqlite_server, report, "view")
    viewer = open_page(browser, share["url"])
    try:
        viewer.wait_for_selector("body[data-runs-live=subscribed]")
        summary = viewer.locator(".run-set .run-set-grouping-summary")
        summary.wait_for()
        text = summary.inner_text()
        controls = viewer.locator(
            ".run-set .runset-grouping, .run-set input.runset-group-keys,"
            " .run-set select.runset-aggregate, .run-set input.runset-sort-field"
        ).count()
    finally:
        close_page(viewer)

    assert text == "grouped by config.lr: mean, band std; sorted by config.lr ascending"
    assert controls == 0
