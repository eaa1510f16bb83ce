"""Listing runs page by page: cursors over HTTP and ``Api.runs`` following them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import assay
from assay import protocol
from assay._connection import IngestClient
from conftest import RunningServer

PROJECT = "paging"
#: Three runs share this start time, so pages must break the tie by insertion order.
SHARED_START = 1_700_000_000.0


def add_run(server: RunningServer, run_id: str, created_at: float) -> None:
    """Create a finished run with a given start time, as an importer does."""
    client = IngestClient(server.url, server.api_key)
    client.open(
        {
            "type": "hello",
            "protocol": protocol.PROTOCOL_VERSION,
            "project": PROJECT,
            "session": 1,
            "resume": "never",
            "run": {"id": run_id, "created_at": created_at},
        }
    )
    client.send(protocol.pack({"type": "finish", "exit_code": 0}))
    client.receive(10)
    client.close()


@pytest.fixture
def seven_runs(server: RunningServer) -> list[str]:
    """Create seven runs; return their ids newest first, the order the server lists them."""
    starts = {
        "r1": SHARED_START - 20,
        "r2": SHARED_START,
        "r3": SHARED_START,
        "r4": SHARED_START,
        "r5": SHARED_START + 10,
        "r6": SHARED_START + 20,
        "r7": SHARED_START + 30,
    }
    for run_id, created_at in starts.items():
        add_run(server, run_id, created_at)
    return ["r7", "r6", "r5", "r4", "r3", "r2", "r1"]


@pytest.fixture
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


@pytest.fixture
def reader(server: RunningServer) -> Iterator[assay.Api]:
    with assay.Api(server=server.url, api_key=server.api_key) as api:
        yield api


@pytest.mark.parametrize("per_page", [1, 3, 7, 1000])
def test_runs_read_in_pages(reader: assay.Api, seven_runs: list[str], per_page: int) -> None:
    found = reader.runs(PROJECT, per_page=per_page)

    assert [run.id for run in found] == seven_runs


def test_run_created_between_pages_not_repeated(
    server: RunningServer, http: httpx.Client, seven_runs: list[str]
) -> None:
    path = f"/api/v1/projects/{PROJECT}/runs"
    first = http.get(path, params={"limit": 3}).json()
    add_run(server, "newest", SHARED_START + 100)
    second = http.get(path, params={"limit": 3, "cursor": first["next"]}).json()
    third = http.get(path, params={"limit": 3, "cursor": second["next"]}).json()

    listed = [run["id"] for page in (first, second, third) for run in page["runs"]]
    assert listed == seven_runs
    assert third["next"] is None


def test_long_filter_read_in_pages(reader: assay.Api, seven_runs: list[str]) -> None:
    # Over the SDK's 4 KiB limit for URLs, so the pages are POSTed.
    text = 'name != "' + "x" * 5000 + '" and id != "r4"'
    found = reader.runs(PROJECT, filter=text, per_page=2)

    assert [run.id for run in found] == [run_id for run_id in seven_runs if run_id != "r4"]


def test_filtered_pages_keep_filter(reader: assay.Api, seven_runs: list[str]) -> None:
    found = reader.runs(PROJECT, filter=f"created_at = {SHARED_START}", per_page=2)

    assert [run.id for run in found] == ["r4", "r3", "r2"]


@pytest.mark.parametrize(
    "cursor",
    ["", "not-a-cursor", "bmFuLzE", "MS4wLy0x", "aW5mLzE"],
    ids=["empty", "garbage", "nan", "negative-pk", "infinite"],
)
def test_bad_cursor_rejected(http: httpx.Client, seven_runs: list[str], cursor: str) -> None:
    response = http.get(f"/api/v1/projects/{PROJECT}/runs", params={"cursor": cursor})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_cursor"
    assert "pass the 'next' value of the previous page" in error["message"]


def test_cursor_without_padding_accepted(http: httpx.Client, seven_runs: list[str]) -> None:
    # "1.0/1", base64 without its padding: a cursor after every run.
    response = http.get(f"/api/v1/projects/{PROJECT}/runs", params={"cursor": "MS4wLzE"})

    assert response.status_code == 200
    assert response.json() == {"runs": [], "next": None}


@pytest.mark.parametrize("cursor", [5, ["x"], "garbage"])
def test_bad_cursor_in_body_rejected(
    http: httpx.Client, seven_runs: list[str], cursor: Any
) -> None:
    response = http.post(f"/api/v1/projects/{PROJECT}/runs/query", json={"cursor": cursor})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_cursor"


@pytest.mark.parametrize("per_page", [0, 10_001])
def test_per_page_out_of_range(reader: assay.Api, per_page: int) -> None:
    with pytest.raises(ValueError, match="per_page must be from 1 to 10000"):
        reader.runs(PROJECT, per_page=per_page)
