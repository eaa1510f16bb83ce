"""Long filters: the POST query endpoint, the SDK's use of it and the length setting."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import assay
from assay_server.settings import Settings, SettingsError
from conftest import RunningServer

PROJECT = "long-filters"
QUERY = f"/api/v1/projects/{PROJECT}/runs/query"


@pytest.fixture
def client(server: RunningServer, tmp_path: Path) -> Iterator[httpx.Client]:
    for run_id in ("a", "b"):
        assay.init(
            PROJECT, id=run_id, server=server.url, api_key=server.api_key, spool_dir=tmp_path
        ).finish()
    with server.client() as authorized:
        yield authorized


def test_query_body_selects_runs(client: httpx.Client) -> None:
    response = client.post(QUERY, json={"filter": 'id = "a"'})

    assert response.status_code == 200
    assert [run["id"] for run in response.json()["runs"]] == ["a"]


def test_query_without_filter_selects_all(client: httpx.Client) -> None:
    response = client.post(QUERY, json={"limit": 1, "offset": 1})

    assert [run["id"] for run in response.json()["runs"]] == ["a"]


def test_100_kb_body_filter_is_json_400(client: httpx.Client) -> None:
    response = client.post(QUERY, json={"filter": "name = " + "x" * 100_000})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "filter_too_long"
    assert "filter of 100,007 characters is too long" in error["message"]
    assert "ASSAY_MAX_FILTER_LENGTH" in error["message"]


def test_huge_body_is_413(client: httpx.Client) -> None:
    response = client.post(QUERY, json={"filter": "x" * 2_000_000})

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"filter": 1}, "'filter' must be a string"),
        ({"limit": 0}, "'limit' must be an integer from 1"),
        ({"offset": -1}, "'offset' must be an integer from 0"),
        ({"where": "x"}, "invalid body: unknown field 'where'; the fields are filter, limit"),
        ([1], "the body must be a JSON object"),
    ],
)
def test_bad_query_body_is_400(client: httpx.Client, body: object, message: str) -> None:
    response = client.post(QUERY, json=body)

    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


def test_sdk_posts_long_filter(server: RunningServer, client: httpx.Client) -> None:
    # Over the SDK's 4 KiB limit for URLs, within the server's 10,000 characters.
    text = 'name != "' + "x" * 5000 + '" and id = "b"'
    with assay.Api(server=server.url, api_key=server.api_key) as reader:
        found = reader.runs(PROJECT, filter=text)

    assert len(text) > 4096
    assert [run.id for run in found] == ["b"]


def test_sdk_reports_too_long_filter(server: RunningServer, client: httpx.Client) -> None:
    with assay.Api(server=server.url, api_key=server.api_key) as reader:
        with pytest.raises(assay.ServerError) as caught:
            reader.runs(PROJECT, filter="name = " + "x" * 100_000)

    assert caught.value.code == "filter_too_long"
    assert "at most 10,000 characters" in caught.value.message


def test_filter_length_setting_applies(
    sqlite_settings: Settings, start_server: object, tmp_path: Path
) -> None:
    settings = dataclasses.replace(sqlite_settings, max_filter_length=100)
    running: RunningServer = start_server(settings)  # type: ignore[operator]
    assay.init("any", server=running.url, api_key=running.api_key, spool_dir=tmp_path).finish()

    with running.client() as client:
        response = client.get(
            "/api/v1/projects/any/runs", params={"filter": "name = " + "x" * 100}
        )

    assert response.status_code == 400
    assert "at most 100 characters" in response.json()["error"]["message"]


def test_filter_length_setting_is_checked() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"ASSAY_MAX_FILTER_LENGTH": "10"})

    assert "ASSAY_MAX_FILTER_LENGTH must be an integer from 100" in str(caught.value)
