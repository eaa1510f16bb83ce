"""From a workspace panel to a titled, saved report with LaTeX and run sets, in Chromium."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page

from conftest import RunningServer
from web.browsing import save_screenshot, sign_in, start_run
from web.reports import PROJECT, document_json, editor_text, wait_for_lines


@pytest.fixture
def runs(sqlite_server: RunningServer, tmp_path: Path) -> dict[str, str]:
    """Run ids by name: one stable run and one that diverges to NaN."""
    ids = {}
    for name, lr in (("Base-a", 0.01), ("wild-b", 1.0)):
        with start_run(sqlite_server, tmp_path, PROJECT, name=name, config={"lr": lr}) as run:
            for step in range(4):
                run.log(
                    {"loss": lr * (4 - step) if lr < 0.5 or step < 2 else float("nan")}, step=step
                )
            ids[name] = run.id
    return ids


def test_panel_goes_to_new_report(
    page: Page, sqlite_server: RunningServer, runs: dict[str, str], tmp_path: Path
) -> None:
    sign_in(page, sqlite_server, f"/projects/{PROJECT}")
    page.wait_for_selector('.plot[data-key="loss"][data-revision]')
    page.fill("input.run-search", "BASE")
    panel = page.locator('.panel[data-panel-type="line"]').first
    # Plain text, because a symbol missing from the browser's fonts shows as an empty box.
    label = panel.locator('button[data-action="add to report"]').inner_text()
    panel.locator('button[data-action="add to report"]').click()
    dialog = page.locator("dialog.add-to-report")
    dialog.locator("input.report-title-input").fill("Diverged runs")
    dialog.locator("button.confirm-add-to-report").click()
    page.wait_for_url("**/reports/*")
    page.wait_for_selector(".report-grid .run-set")
    wait_for_lines(page, [runs["Base-a"]])
    carried = document_json(page)["blocks"][0]

    assert label == "+ report"
    assert editor_text(page, ".report-title") == "Diverged runs"
    assert carried["type"] == "panel_grid"
    assert carried["panels"][0]["type"] == "line"
    assert carried["panels"][0]["options"]["key"] == "loss"
    assert carried["run_sets"][0]["active"] is True
    assert "Base-a" not in carried["run_sets"][0]["filter"]
    assert page.locator(".run-set .run-set-count").first.inner_text() == "1 runs"

    page.click("button.add-run-set")
    second = page.locator(".run-set").nth(1)
    second.locator("input.run-set-filter").fill("summary.loss.has_nan = true")
    second.locator("input.run-set-filter").press("Enter")
    wait_for_lines(page, [runs["Base-a"], runs["wild-b"]])
    page.locator(".run-set").first.locator("input.run-set-active").uncheck()
    wait_for_lines(page, [runs["wild-b"]])
    second.locator("input.run-set-active").uncheck()
    wait_for_lines(page, [])
    page.locator(".run-set").first.locator("input.run-set-active").check()
    wait_for_lines(page, [runs["Base-a"]])

    page.click("button.add-block:text('Add text')")
    page.locator(".block-markdown .cm-content").click()
    page.keyboard.type("Runs with $\\eta \\geq 0.5$ diverge:\n\n$$\\eta_{max} = 0.1$$")
    page.locator(".block-markdown .rendered .katex-display").wait_for()
    page.locator(".report-title .cm-content").click()
    page.keyboard.press("End")
    page.keyboard.type(" at high learning rate")
    page.click("button.save-version")
    page.wait_for_selector("body[data-versions='1']")
    save_screenshot(page, tmp_path, "report-seed-story.png")
    with sqlite_server.client() as client:
        versions = client.get(f"/api/v1/projects/{PROJECT}/reports").json()["reports"]
        saved = client.get(
            f"/api/v1/projects/{PROJECT}/reports/{versions[0]['id']}/versions"
        ).json()["versions"]
    run_sets = document_json(page)["blocks"][0]["run_sets"]

    assert [run_set["active"] for run_set in run_sets] == [True, False]
    assert run_sets[1]["filter"] == "summary.loss.has_nan = true"
    assert page.locator(".block-markdown .rendered p .katex").count() == 1
    assert len(saved) == 1
    assert saved[0]["title"] == "Diverged runs at high learning rate"


def test_grouped_run_set_carried_unchanged(
    page: Page, sqlite_server: RunningServer, runs: dict[str, str]
) -> None:
    grouping = {"keys": ["config.lr"], "aggregate": "max", "band": "minmax"}
    sort = {"field": "config.lr", "direction": "asc"}
    with sqlite_server.client() as client:
        created = client.post(
            f"/api/v1/projects/{PROJECT}/runsets",
            json={"name": "by lr", "grouping": grouping, "sort": sort},
        )
    assert created.status_code == 201, created.text
    sign_in(page, sqlite_server, f"/projects/{PROJECT}")
    page.wait_for_selector('.plot[data-key="loss"][data-revision]')
    panel = page.locator('.panel[data-panel-type="line"]').first
    panel.locator('button[data-action="add to report"]').click()
    dialog = page.locator("dialog.add-to-report")
    dialog.locator("input.report-title-input").fill("Grouped")
    dialog.locator("button.confirm-add-to-report").click()
    page.wait_for_url("**/reports/*")
    page.wait_for_function(
        """() => {
            const plot = document.querySelector('.report-grid .plot[data-key="loss"]');
            return (plot?.data ?? []).some((t) => String(t.uid).startsWith('group-'));
        }"""
    )
    carried = document_json(page)["blocks"][0]["run_sets"][0]
    uids = page.evaluate(
        """() => document.querySelector('.report-grid .plot[data-key="loss"]')
            .data.map((t) => t.uid)"""
    )

    assert carried["grouping"] == grouping
    assert carried["sort"] == sort
    assert carried["name"] == "by lr"
    assert not any(uid.startswith("line-") for uid in uids)
