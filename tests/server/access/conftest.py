"""Access tests reuse the report tests' Node clients, and share a report fixture."""

from __future__ import annotations

from pathlib import Path

import pytest
from reports.conftest import node_clients

import assay
from conftest import RunningServer

__all__ = ["node_clients"]


@pytest.fixture
def report_id(server: RunningServer, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """Create a report in the test module's ``PROJECT``, made by the admin's first run."""
    return create_report(server, request.module.PROJECT, tmp_path)


def create_report(server: RunningServer, project: str, spool: Path) -> str:
    """Create ``project`` with a finished run of the admin, and a report in it; return its id."""
    assay.init(project, server=server.url, api_key=server.api_key, spool_dir=spool).finish()
    with server.client() as admin:
        response = admin.post(f"/api/v1/projects/{project}/reports", json={"title": "Notes"})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])
