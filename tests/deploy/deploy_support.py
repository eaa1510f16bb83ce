"""Helpers for the deployment tests: waiting, log parsing, programs that may be missing."""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import ClientConnection, connect

import assay
from assay import protocol
from conftest import ROOT, live_messages

NODE_CLIENT = ROOT / "tests" / "server" / "reports" / "yjs_client.cjs"

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
        """Subscribe with no cursors; return the ``subscribed`` or ``resync`` answer."""
        self.socket.send(protocol.pack({"type": "subscribe", "cursors": {}}))
        return self.next_of("subscribed", "resync")

    def watch(self, runsets: dict[str, str]) -> dict[str, Any]:
        """Send a ``watch`` of run sets (id to filter text) and return the reply."""
        self.socket.send(protocol.pack({"type": "watch", "runsets": runsets}))
        return self.next_of("members", "error")

    def next_of(self, *kinds: str, timeout: float = 15) -> dict[str, Any]:
        """Return the next message of one of ``kinds``, skipping others."""
        deadline = time.monotonic() + timeout
        while True:
            message = self._next(max(0.01, deadline - time.monotonic()))
            if message["type"] in kinds:
                return message

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


def create_report(server_url: str, api_key: str, project: str, spool_dir: Path) -> str:
    """Create ``project`` with one finished run and a report in it, and return the report's id."""
    assay.init(project, server=server_url, api_key=api_key, spool_dir=spool_dir).finish()
    response = httpx.post(
        f"{server_url}/api/v1/projects/{project}/reports",
        json={"title": "Cluster notes"},
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def yjs_url(server_url: str) -> str:
    """Return the base URL of the report websockets, to which a client adds the report id."""
    return server_url.replace("http://", "ws://") + "/yjs/reports"


def open_sockets(server_url: str) -> dict[str, float]:
    """Return one instance's ``assay_open_sockets`` gauge by kind (ingest, live, report)."""
    text = httpx.get(server_url + "/metrics", timeout=10).text
    return {
        sample.labels["kind"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "assay_open_sockets"
    }


def metric_value(server_url: str, name: str, **labels: str) -> float:
    """Return one sample of an instance's ``/metrics``, 0 when the instance has none yet."""
    text = httpx.get(server_url + "/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


class ReportEditor:
    """``yjs_client.cjs append``: a Node y-websocket client of one report, driven from the test.

    A thread reads the client's JSON events, so that the test can wait for
    them with a timeout. ``texts`` lists the block texts of the client's
    latest document, ``syncs`` counts its syncs with a server and
    ``close_codes`` lists the code of each close frame it received.
    """

    def __init__(self, url: str, report_id: str, token: str, log_path: Path) -> None:
        node = shutil.which("node")
        require(node is not None, "node is missing; install Node.js 18 or newer")
        assert node is not None
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.process = subprocess.Popen(
            [node, str(NODE_CLIENT), "append", url, report_id, token],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.texts: list[str] = []
        self.syncs = 0
        self.close_codes: list[int] = []
        assert self.process.stdout is not None
        self.reader = threading.Thread(target=self._read, args=(self.process.stdout,))
        self.reader.start()

    def _read(self, output: IO[str]) -> None:
        for line in output:
            self.events.put(json.loads(line))
        self.events.put(None)

    def add_block(self, text: str) -> None:
        """Add a markdown block containing ``text`` to the client's document."""
        assert self.process.stdin is not None
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()

    def wait_for(
        self, condition: Callable[[ReportEditor], bool], what: str, timeout: float = 20
    ) -> None:
        """Apply the client's events until ``condition(self)`` holds, for ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not condition(self):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"report client: no {what} within {timeout} s: {self.texts}")
            try:
                event = self.events.get(timeout=remaining)
            except queue.Empty:
                continue
            if event is None:
                code = self.process.wait()
                output = self.log_path.read_text()[-2000:]
                raise AssertionError(f"report client exited with code {code}: {output}")
            if event["event"] == "synced":
                self.syncs += 1
            elif event["event"] == "texts":
                self.texts = event["texts"]
            elif event["event"] == "closed":
                self.close_codes.append(event["code"])

    def close(self) -> None:
        """Close stdin, which ends the client, and wait for the process."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.reader.join(10)
        assert self.process.stdout is not None
        self.process.stdout.close()
        self.log.close()
