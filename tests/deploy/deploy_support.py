"""Helpers for the deployment tests: waiting, log parsing, programs that may be missing."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import ClientConnection, connect

import assay
from assay import protocol
from conftest import live_messages

#: Retries fast, so that a client whose server went away finds another within a second.
FAST_RETRY = assay.SenderOptions(flush_interval=0.05, batch_rows=500, backoff_max=0.5)


def require(condition: bool, message: str) -> None:
    """Skip the test unless ``condition`` holds; when ``CI`` is set, fail instead."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set, so this fails instead of skipping)")
    pytest.skip(message)


def wait_until(
    condition: Callable[[], bool], timeout: float, describe: Callable[[], str] = lambda: ""
) -> None:
    """Poll ``condition`` every 20 ms; raise TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s {describe()}")
        time.sleep(0.02)


def json_log(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Return the JSON objects of a log file and the lines that did not parse as one."""
    entries: list[dict[str, Any]] = []
    bad: list[str] = []
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            bad.append(line)
            continue
        if isinstance(entry, dict):
            entries.append(entry)
        else:
            bad.append(line)
    return entries, bad


def metric_count(server_url: str, api_key: str, project: str, run_id: str, key: str) -> int:
    """Return the stored ``count`` of one metric through the read API, 0 before its first point."""
    with assay.Api(server=server_url, api_key=api_key) as api:
        metrics = api.run(project, run_id).metrics()
    return int(metrics[key]["count"]) if key in metrics else 0


class LiveSocket:
    """A client of the live socket (see docs/live.md) that gathers each run's logged steps."""

    def __init__(self, server_url: str, project: str, api_key: str) -> None:
        url = server_url.replace("http://", "ws://") + f"/api/v1/projects/{project}/live"
        self.socket: ClientConnection = connect(
            url, additional_headers={"Authorization": f"Bearer {api_key}"}, legacy=True
        )
        self.steps: dict[str, list[int]] = {}
        self.pending: list[dict[str, Any]] = []

    def subscribe(self) -> dict[str, Any]:
        self.socket.send(protocol.pack({"type": "subscribe", "cursors": {}}))
        return self._next()

    def gather(self, key: str, done: Callable[[], bool], timeout: float) -> None:
        """Add the steps of ``key`` from each ``points`` message to ``steps`` until ``done``."""
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"live socket: not all points within {timeout} s: {self.steps}")
            try:
                message = self._next(max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                continue
            if message["type"] == "resync":
                raise AssertionError(f"live socket was told to resync: {message['reason']}")
            if message["type"] == "points" and key in message["metrics"]:
                steps = self.steps.setdefault(message["run_id"], [])
                steps.extend(message["metrics"][key]["steps"])

    def _next(self, timeout: float = 15) -> dict[str, Any]:
        if not self.pending:
            self.pending = live_messages(self.socket.recv(timeout=timeout))
        return self.pending.pop(0)

    def close(self) -> None:
        self.socket.close()


def open_sockets(server_url: str) -> dict[str, float]:
    """Return one instance's ``assay_open_sockets`` gauge by kind (ingest, live)."""
    text = httpx.get(server_url + "/metrics", timeout=10).text
    return {
        sample.labels["kind"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "assay_open_sockets"
    }
