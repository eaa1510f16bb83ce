"""Chromium on single instances of the cluster, while SDK runs and other browsers use others.

Each page is opened directly on one instance, not through nginx, so what it
shows from the other instances can only have come through PostgreSQL and Redis.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page
from web.browsing import trace, wait_for_points
from web.reports import block_text, editor_text

import assay
from conftest import ServerProcess
from deploy.conftest import Cluster
from deploy.deploy_support import (
    FAST_RETRY,
    create_report,
    metric_value,
    open_sockets,
    wait_until,
)

PROJECT = "cluster"
RUNS = 3
STEPS = 10
DIVERGED_COLOUR = "#d62728"
HEALTHY_COLOUR = "#1f77b4"

OpenPage = Callable[[ServerProcess, str], Page]


def create_runset(cluster: Cluster, **fields: Any) -> str:
    response = httpx.post(
        f"{cluster.url}/api/v1/projects/{PROJECT}/runsets",
        json=fields,
        headers={"Authorization": f"Bearer {cluster.api_key}"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def host_of(cluster: Cluster, run_id: str) -> int:
    """Return the index of the instance whose log shows that it attached ``run_id``."""
    attached = f"attached run {PROJECT}/{run_id} "

    def hosts() -> list[int]:
        return [
            index
            for index, server in enumerate(cluster.servers)
            if attached in server.log_path.read_text()
        ]

    wait_until(lambda: len(hosts()) == 1, timeout=30, describe=lambda: f"{run_id}: {hosts()}")
    return hosts()[0]


def wait_for_count(page: Page, runset_id: str, text: str) -> None:
    """Wait until the sidebar shows ``text`` (such as "1 run") as the run set's member count."""
    page.wait_for_function(
        """([id, text]) => document.querySelector(
            `.runset[data-runset-id="${id}"] .runset-count`)?.textContent === text""",
        arg=[runset_id, text],
    )


def loss(run_index: int, step: int) -> float:
    return (run_index + 1) / (step + 1)


def log_steps(runs: list[assay.Run], steps: range) -> None:
    for step in steps:
        for index, run in enumerate(runs):
            run.log({"loss": loss(index, step)}, step=step)


def test_browser_follows_runs_on_other_instances(
    cluster: Cluster, open_page: OpenPage, tmp_path: Path
) -> None:
    with assay.init(
        PROJECT, server=cluster.url, api_key=cluster.api_key, spool_dir=tmp_path / "first"
    ) as first:
        first.log({"loss": 0.5}, step=0)
    diverged = create_runset(
        cluster, name="diverged", filter="summary.loss is nan", colour=DIVERGED_COLOUR
    )
    healthy = create_runset(
        cluster, name="healthy", filter="summary.loss is finite", colour=HEALTHY_COLOUR
    )
    runs = [
        assay.init(
            PROJECT,
            server=cluster.url,
            api_key=cluster.api_key,
            spool_dir=tmp_path / f"spool-{index}",
            settings=FAST_RETRY,
        )
        for index in range(RUNS)
    ]
    hosts = [host_of(cluster, run.id) for run in runs]
    # The browser watches the instance that serves the fewest runs' ingest sockets.
    watching = min(range(len(cluster.servers)), key=hosts.count)
    remote = [run for run, host in zip(runs, hosts, strict=True) if host != watching]
    page = open_page(cluster.servers[watching], f"/projects/{PROJECT}")
    page.wait_for_selector("body[data-live=subscribed]")
    wait_for_count(page, diverged, "0 runs")
    wait_for_count(page, healthy, "1 run")

    log_steps(runs, range(STEPS // 2))
    for run in runs:
        wait_for_points(page, "loss", f"line-{run.id}", STEPS // 2)
    half = {run.id: trace(page, "loss", f"line-{run.id}") for run in runs}
    log_steps(runs, range(STEPS // 2, STEPS))
    for run in runs:
        wait_for_points(page, "loss", f"line-{run.id}", STEPS)
    grown = {run.id: trace(page, "loss", f"line-{run.id}") for run in runs}
    wait_for_count(page, healthy, f"{RUNS + 1} runs")

    moving = remote[0]
    moving.log({"loss": math.nan}, step=STEPS)
    wait_for_count(page, diverged, "1 run")
    wait_for_count(page, healthy, f"{RUNS} runs")
    page.wait_for_function(
        """([uid, colour]) => (document.querySelector('.plot[data-key="loss"]')?.data ?? [])
            .some((t) => t.uid === uid && t.line.color === colour)""",
        arg=[f"line-{moving.id}", DIVERGED_COLOUR],
    )
    ingest_on_watching = open_sockets(cluster.servers[watching].url).get("ingest", 0.0)
    for run in runs:
        run.finish(timeout=60)

    # Ingest sockets reached the instances through nginx, and at most one is
    # on the instance that serves the browser.
    assert len(remote) >= RUNS - 1
    assert ingest_on_watching == RUNS - len(remote)
    for index, run in enumerate(runs):
        first_half, whole = half[run.id], grown[run.id]
        assert first_half is not None, run.id
        assert whole is not None, run.id
        assert first_half["customdata"][: STEPS // 2] == list(range(STEPS // 2)), run.id
        assert whole["customdata"] == list(range(STEPS)), run.id
        expected = [loss(index, step) for step in range(STEPS)]
        assert whole["y"] == pytest.approx(expected), run.id


def wait_for_text(page: Page, expected: str) -> None:
    """Wait until the first block's text in the page's Y.Doc is ``expected``."""
    page.wait_for_function(
        """(expected) => {
            const blocks = window.assayReport?.doc.getArray('blocks');
            return blocks?.length > 0 && blocks.get(0).get('text').toString() === expected;
        }""",
        arg=expected,
    )


def stored_texts(cluster: Cluster, report_id: str) -> list[str]:
    response = httpx.get(
        f"{cluster.url}/api/v1/projects/{PROJECT}/reports/{report_id}",
        headers={"Authorization": f"Bearer {cluster.api_key}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return [block["text"] for block in response.json()["content"]["blocks"]]


def test_browsers_on_two_instances_edit_report(
    cluster: Cluster, open_page: OpenPage, tmp_path: Path
) -> None:
    report_id = create_report(cluster.url, cluster.api_key, PROJECT, tmp_path / "first")
    path = f"/projects/{PROJECT}/reports/{report_id}"
    first, second = open_page(cluster.servers[0], path), open_page(cluster.servers[1], path)
    for page in (first, second):
        page.wait_for_selector(".report-title .cm-content")

    def report_sockets() -> list[float]:
        return [open_sockets(server.url).get("report", 0.0) for server in cluster.servers]

    wait_until(lambda: report_sockets() == [1.0, 1.0, 0.0], 10, lambda: str(report_sockets()))
    rooms = [metric_value(server.url, "assay_open_reports") for server in cluster.servers]

    first.click("button.add-block:text('Add text')")
    second.wait_for_selector(".block-markdown .cm-content")
    first.click(".block-markdown .cm-content")
    first.keyboard.type("Typed on instance 0.")
    wait_for_text(second, "Typed on instance 0.")
    second.click(".block-markdown .cm-content")
    second.keyboard.press("Control+End")
    second.keyboard.type(" Typed on instance 1.")
    both = "Typed on instance 0. Typed on instance 1."
    wait_for_text(first, both)
    wait_until(
        lambda: stored_texts(cluster, report_id) == [both],
        timeout=10,
        describe=lambda: str(stored_texts(cluster, report_id)),
    )

    assert rooms == [1.0, 1.0, 0.0]
    for page in (first, second):
        assert block_text(page, 0) == both
        assert editor_text(page, ".block-markdown") == both
