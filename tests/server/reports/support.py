"""Helpers for report tests: Node Yjs clients and report creation over HTTP."""

from __future__ import annotations

import json
import select
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pycrdt import (
    Array,
    Doc,
    Map,
    Text,
    create_sync_message,
    create_update_message,
    handle_sync_message,
    read_message,
)
from websockets.sync.client import ClientConnection, connect

from conftest import RunningServer

NODE_CLIENT = Path(__file__).with_name("yjs_client.cjs")
PROJECT = "reports"


def create_report(server: RunningServer, title: str = "Findings") -> dict[str, Any]:
    with server.client() as http:
        response = http.post(f"/api/v1/projects/{PROJECT}/reports", json={"title": title})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def yjs_url(server: RunningServer) -> str:
    return server.url.replace("http://", "ws://") + "/yjs/reports"


class NodeClient:
    """A Node client script, ``yjs_client.cjs`` by default, in a child process.

    Each line it prints is a JSON event.
    """

    def __init__(self, *args: str, script: Path = NODE_CLIENT) -> None:
        node = shutil.which("node")
        if node is None:
            pytest.fail("node is missing; install Node.js 18 or newer (make install needs it too)")
        self.process = subprocess.Popen(
            [node, str(script), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def next_event(self, timeout: float | None = None) -> dict[str, Any]:
        """Return the next event; with ``timeout``, fail when none arrives in that many seconds.

        The timeout looks at the pipe, not at Python's buffer, so use it only
        when no earlier line can be waiting there.
        """
        assert self.process.stdout is not None
        if timeout is not None:
            ready, _, _ = select.select([self.process.stdout], [], [], timeout)
            if not ready:
                raise AssertionError(f"no event from the node client within {timeout} s")
        line = self.process.stdout.readline()
        if not line:
            assert self.process.stderr is not None
            raise AssertionError(f"node client exited: {self.process.stderr.read()}")
        return json.loads(line)  # type: ignore[no-any-return]

    def wait(self, timeout: float = 30) -> int:
        return self.process.wait(timeout)

    def stop(self) -> None:
        """Close stdin, which ends a ``write`` client, and wait for the process."""
        try:
            self.process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()


class YClient:
    """A y-websocket client in Python, on pycrdt's sync helpers, for frame-level tests."""

    def __init__(self, server: RunningServer, report_id: str, **headers: str) -> None:
        extra = headers or {"Authorization": f"Bearer {server.api_key}"}
        self.socket: ClientConnection = connect(
            f"{yjs_url(server)}/{report_id}", additional_headers=extra, max_size=None, legacy=True
        )
        self.doc: Doc[Any] = Doc()
        self.denials: list[str] = []

    def sync(self) -> None:
        """Send sync step 1 and apply the server's step 2."""
        self.socket.send(create_sync_message(self.doc))
        self.next_frame(lambda frame: frame[:2] == b"\x00\x01")

    def next_frame(self, wanted: Callable[[bytes], bool], timeout: float = 10) -> bytes:
        """Return the first frame ``wanted`` accepts, applying sync frames on the way."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.socket.recv(timeout=max(0.01, deadline - time.monotonic()))
            assert isinstance(frame, bytes), f"expected a binary frame, got {frame!r}"
            if frame[0] == 0:
                reply = handle_sync_message(frame[1:], self.doc)
                if reply is not None:
                    self.socket.send(reply)
            if frame[0] == 2:
                self.denials.append(denial_reason(frame))
            if wanted(frame):
                return frame

    def pump(self, timeout: float = 0.2) -> None:
        """Apply whatever frames arrive within ``timeout`` seconds."""
        try:
            self.next_frame(lambda frame: False, timeout)
        except TimeoutError:
            pass

    def next_denial(self, timeout: float = 10) -> str:
        """Return the reason of the next permission-denied message from the server."""
        if self.denials:
            return self.denials.pop(0)
        self.next_frame(lambda frame: frame[0] == 2, timeout)
        return self.denials.pop(0)

    def send_update(self, update: bytes) -> None:
        self.socket.send(create_update_message(update))

    def edit(self, change: Callable[[Doc[Any]], None]) -> None:
        """Make ``change`` on the local document and send the update it produces."""
        before = self.doc.get_state()
        change(self.doc)
        self.send_update(self.doc.get_update(before))

    def close(self) -> None:
        self.socket.close()


def denial_reason(frame: bytes) -> str:
    """Decode an auth message ``2 0 varString(reason)``."""
    assert frame[:2] == b"\x02\x00", f"expected a permission-denied message, got {frame[:8]!r}"
    return read_message(frame[2:]).decode()


def add_markdown(doc: Doc[Any], block_id: str, text: str) -> None:
    doc.get("blocks", type=Array).append(
        Map({"id": block_id, "type": "markdown", "text": Text(text)})
    )


def report_content(server: RunningServer, report_id: str) -> dict[str, Any]:
    with server.client() as http:
        response = http.get(f"/api/v1/projects/{PROJECT}/reports/{report_id}")
    assert response.status_code == 200, response.text
    return response.json()["content"]  # type: ignore[no-any-return]


def wait_for(condition: Callable[[], bool], timeout: float = 10, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)
