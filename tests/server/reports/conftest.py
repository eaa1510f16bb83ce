"""Fixtures for report tests: a project, a report, and Node Yjs clients."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import assay
from conftest import RunningServer
from reports.support import PROJECT, NodeClient, create_report


@pytest.fixture
def project(server: RunningServer, tmp_path: Path) -> str:
    assay.init(PROJECT, server=server.url, api_key=server.api_key, spool_dir=tmp_path).finish()
    return PROJECT


@pytest.fixture
def report(server: RunningServer, project: str) -> dict[str, Any]:
    return create_report(server)


@pytest.fixture
def node_clients() -> Iterator[Any]:
    """Start ``NodeClient`` processes that are stopped when the test ends."""
    started: list[NodeClient] = []

    def start(*args: str) -> NodeClient:
        client = NodeClient(*args)
        started.append(client)
        return client

    yield start
    for client in started:
        client.stop()


@pytest.fixture
def project_factory(tmp_path: Path) -> Any:
    """Create the test project on a server started by the test; return a new report."""

    def make(server: RunningServer) -> dict[str, Any]:
        assay.init(PROJECT, server=server.url, api_key=server.api_key, spool_dir=tmp_path).finish()
        return create_report(server)

    return make
