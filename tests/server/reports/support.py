"""Helpers for report tests: Node Yjs clients and report creation over HTTP."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

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
    """``yjs_client.cjs`` in a child process; each output line is a JSON event."""

    def __init__(self, *args: str) -> None:
        node = shutil.which("node")
        if node is None:
            pytest.fail("node is missing; install Node.js 18 or newer (make install needs it too)")
        self.process = subprocess.Popen(
            [node, str(NODE_CLIENT), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def next_event(self) -> dict[str, Any]:
        assert self.process.stdout is not None
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
