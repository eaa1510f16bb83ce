"""A live-socket client that keeps its cursors across reconnects, as a browser does."""

from __future__ import annotations

import threading
import time
from typing import Any

from websockets.exceptions import WebSocketException
from websockets.sync.client import ClientConnection, connect

from assay import protocol


class LiveWatcher:
    """Gathers the steps of one metric per run from ``/api/v1/projects/{p}/live``.

    A thread reads the socket. When the connection is lost it reconnects and
    subscribes with the cursors of the last entry handled from each stream
    (see docs/live.md). A ``resync`` is recorded; the watcher then subscribes
    again with empty cursors, as the browser does before it reloads.
    """

    def __init__(self, server_url: str, project: str, api_key: str, metric: str) -> None:
        self.url = server_url.replace("http://", "ws://") + f"/api/v1/projects/{project}/live"
        self.api_key = api_key
        self.metric = metric
        self.cursors: dict[str, str] = {}
        self.steps: dict[str, list[int]] = {}
        self.values: dict[str, list[Any]] = {}
        self.resyncs: list[str] = []
        self.errors: list[dict[str, Any]] = []
        self.connections = 0
        #: ``subscribed`` messages received, counting resubscriptions after a resync.
        self.subscriptions = 0
        self.subscribed = threading.Event()
        self.lock = threading.Lock()
        self.running = True
        self.socket: ClientConnection | None = None
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def drop(self) -> None:
        """Close the current connection, as a lost network would; the thread reconnects."""
        socket = self.socket
        if socket is not None:
            socket.close()

    def seen(self, run_id: str) -> list[int]:
        with self.lock:
            return list(self.steps.get(run_id, []))

    def has_all(self, run_ids: list[str], count: int) -> bool:
        return all(len(set(self.seen(run_id))) >= count for run_id in run_ids)

    def describe(self) -> str:
        with self.lock:
            counts = {run_id: len(set(steps)) for run_id, steps in self.steps.items()}
        return f"steps seen {counts}, resyncs {self.resyncs}, errors {self.errors}"

    def close(self) -> None:
        self.running = False
        self.drop()
        self.thread.join(10)

    def _watch(self) -> None:
        while self.running:
            try:
                self._serve_one_connection()
            except (OSError, WebSocketException, TimeoutError):
                time.sleep(0.2)

    def _serve_one_connection(self) -> None:
        headers = {"Authorization": f"Bearer {self.api_key}"}
        with connect(
            self.url, additional_headers=headers, open_timeout=5, max_size=None
        ) as socket:
            self.socket = socket
            self.connections += 1
            socket.send(protocol.pack({"type": "subscribe", "cursors": self.cursors}))
            while self.running:
                try:
                    frame = socket.recv(timeout=0.2)
                except TimeoutError:
                    continue
                self._handle(protocol.unpack(frame), socket)  # type: ignore[arg-type]

    def _handle(self, message: dict[str, Any], socket: ClientConnection) -> None:
        if message["type"] == "batch":
            for inner in message["messages"]:
                self._handle(inner, socket)
            return
        if "stream" in message:
            self.cursors[message["stream"]] = message["id"]
        kind = message["type"]
        if kind == "subscribed":
            self.subscriptions += 1
            for stream, start in message["cursors"].items():
                self.cursors.setdefault(stream, start)
            self.subscribed.set()
        elif kind == "resync":
            self.resyncs.append(message["reason"])
            self.cursors = {}
            socket.send(protocol.pack({"type": "subscribe", "cursors": {}}))
        elif kind == "error":
            self.errors.append(message)
        elif kind == "points" and self.metric in message["metrics"]:
            column = message["metrics"][self.metric]
            with self.lock:
                self.steps.setdefault(message["run_id"], []).extend(column["steps"])
                self.values.setdefault(message["run_id"], []).extend(column["values"])


def live_gaps(watcher: LiveWatcher, run_ids: list[str], count: int) -> list[str]:
    """Return, per run, what the watcher missed or received twice of steps 0 to count - 1."""
    problems: list[str] = []
    for run_id in run_ids:
        steps = watcher.seen(run_id)
        missing = sorted(set(range(count)) - set(steps))
        duplicates = len(steps) - len(set(steps))
        if missing:
            problems.append(f"{run_id}: {len(missing)} steps missing, first {missing[:5]}")
        if duplicates:
            problems.append(f"{run_id}: {duplicates} steps received twice")
    return problems
