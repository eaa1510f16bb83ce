"""Run sets through the HTTP API: create, list, update, order, clone, freeze and errors."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import assay
from conftest import RunningServer

PROJECT = "runset-api"
RUNSETS = f"/api/v1/projects/{PROJECT}/runsets"


@pytest.fixture
def client(server: RunningServer, tmp_path: Path) -> Iterator[httpx.Client]:
    assay.init(
        PROJECT, id="first", server=server.url, api_key=server.api_key, spool_dir=tmp_path
    ).finish()
    with server.client() as authorized:
        yield authorized


def create(client: httpx.Client, **fields: Any) -> dict[str, Any]:
    response = client.post(RUNSETS, json=fields)
    assert response.status_code == 201, response.text
    return dict(response.json())


def names(client: httpx.Client) -> list[str]:
    return [runset["name"] for runset in client.get(RUNSETS).json()["runsets"]]


def test_created_runset_has_defaults(client: httpx.Client) -> None:
    created = create(client, name="diverged", filter="summary.loss is nan")

    assert created["name"] == "diverged"
    assert created["filter"] == "summary.loss is nan"
    assert created["grouping"] == {"keys": [], "aggregate": "mean", "band": "std"}
    assert created["sort"] == {"field": "created_at", "direction": "desc"}
    assert created["colour"] == "#1f77b4"
    assert created["active"] is True
    assert created["position"] == 0
    assert client.get(RUNSETS).json()["runsets"] == [created]


def test_update_changes_each_field(client: httpx.Client) -> None:
    created = create(client, name="a")
    changes = {
        "name": "renamed",
        "filter": "config.lr >= 0.5",
        "grouping": {"keys": ["config.lr", "group"], "aggregate": "median", "band": "minmax"},
        "sort": {"field": "summary.loss", "direction": "asc"},
        "colour": "#D62728",
        "active": False,
    }

    response = client.patch(f"{RUNSETS}/{created['id']}", json=changes)

    assert response.status_code == 200
    updated = response.json()
    assert updated == {**changes, "colour": "#d62728", "id": created["id"], "position": 0}
    assert client.get(RUNSETS).json()["runsets"] == [updated]


def test_position_reorders_list(client: httpx.Client) -> None:
    first = create(client, name="one")
    create(client, name="two")
    create(client, name="three")

    client.patch(f"{RUNSETS}/{first['id']}", json={"position": 2})

    assert names(client) == ["two", "three", "one"]
    positions = [runset["position"] for runset in client.get(RUNSETS).json()["runsets"]]
    assert positions == [0, 1, 2]


def test_delete_renumbers(client: httpx.Client) -> None:
    first = create(client, name="one")
    create(client, name="two")

    response = client.delete(f"{RUNSETS}/{first['id']}")

    assert response.status_code == 204
    assert client.get(RUNSETS).json()["runsets"][0]["position"] == 0
    assert names(client) == ["two"]


def test_clone_names_unique_copy(client: httpx.Client) -> None:
    original = create(client, name="diverged", filter="state = failed", colour="#123456")

    first = client.post(f"{RUNSETS}/{original['id']}/clone").json()
    second = client.post(f"{RUNSETS}/{original['id']}/clone").json()

    assert first["name"] == "diverged (copy)"
    assert second["name"] == "diverged (copy 2)"
    assert first["filter"] == "state = failed"
    assert first["colour"] == "#123456"
    assert first["id"] != original["id"]
    assert names(client) == ["diverged", "diverged (copy)", "diverged (copy 2)"]


def test_freeze_adds_created_at_bound(
    server: RunningServer, client: httpx.Client, tmp_path: Path
) -> None:
    runset = create(client, name="all", filter="state = finished or state = running")
    before = time.time()

    frozen = client.post(f"{RUNSETS}/{runset['id']}/freeze").json()
    later = assay.init(
        PROJECT, id="later", server=server.url, api_key=server.api_key, spool_dir=tmp_path
    )
    later.finish()
    selected = client.get(
        f"/api/v1/projects/{PROJECT}/runs", params={"filter": frozen["filter"]}
    ).json()["runs"]

    prefix = "(state = finished or state = running) and created_at <= "
    assert frozen["filter"].startswith(prefix)
    assert frozen["filter"][len(prefix) : len(prefix) + 4] == time.strftime(
        "%Y", time.gmtime(before)
    )
    assert [run["id"] for run in selected] == ["first"]


def test_freeze_of_empty_filter(client: httpx.Client) -> None:
    runset = create(client, name="all")

    frozen = client.post(f"{RUNSETS}/{runset['id']}/freeze").json()

    assert frozen["filter"].startswith("created_at <= ")


def test_name_spaces_trimmed(client: httpx.Client) -> None:
    created = client.post(RUNSETS, json={"name": "  spaced  "})

    assert created.status_code == 201
    assert created.json()["name"] == "spaced"


def test_create_at_position(client: httpx.Client) -> None:
    create(client, name="one")
    create(client, name="two")

    created = client.post(RUNSETS, json={"name": "first", "position": 0})

    assert created.status_code == 201
    assert created.json()["position"] == 0
    assert names(client) == ["first", "one", "two"]
    positions = [runset["position"] for runset in client.get(RUNSETS).json()["runsets"]]
    assert positions == [0, 1, 2]


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ({"name": "x", "filter": "summary.loss is nann"}, "invalid_filter", "at column 17"),
        ({"name": "x", "filter": "state = runing"}, "filter_type_mismatch", "column 1"),
        ({"name": "x", "filter": 3}, "invalid_runset", "'filter' must be a string"),
        ({"name": " "}, "invalid_runset", "non-blank"),
        ({"filter": ""}, "invalid_runset", "needs a 'name'"),
        ({"name": "x", "colour": "red"}, "invalid_runset", "hex colour"),
        ({"name": "x", "active": "yes"}, "invalid_runset", "true or false"),
        ({"name": "x", "owner": "me"}, "invalid_runset", "unknown run-set field 'owner'"),
        (
            {"name": "x", "grouping": {"keys": ["created_at"]}},
            "invalid_runset",
            "cannot group by 'created_at'",
        ),
        (
            {"name": "x", "grouping": {"keys": [], "aggregate": "sum"}},
            "invalid_runset",
            "'aggregate' must be one of mean, median, min, max",
        ),
        (
            {"name": "x", "grouping": {"keys": [], "band": "iqr"}},
            "invalid_runset",
            "'band' must be one of std, stderr, minmax, none",
        ),
        (
            {"name": "x", "sort": {"field": "lr", "direction": "asc"}},
            "invalid_runset",
            "invalid sort field 'lr'",
        ),
        (
            {"name": "x", "sort": {"field": "config.lr exists and name", "direction": "asc"}},
            "invalid_runset",
            "expected one field",
        ),
        (
            {"name": "x", "sort": {"field": "config.lr", "direction": "up"}},
            "invalid_runset",
            "asc or desc",
        ),
        ("not an object", "invalid_runset", "JSON object"),
        ({"name": "x", "position": "x"}, "invalid_runset", "got 'x'"),
        ({"name": "y\n"}, "invalid_runset", "no control characters, got 'y\\n'"),
        ({"name": "\ty"}, "invalid_runset", "no control characters"),
        ({"name": "y\x7f"}, "invalid_runset", "no control characters"),
        ({"name": "x", "position": -5}, "invalid_runset", "non-negative integer, got -5"),
    ],
)
def test_bad_runset_is_400(client: httpx.Client, body: Any, code: str, message: str) -> None:
    response = client.post(RUNSETS, json=body)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == code
    assert message in error["message"]
    assert names(client) == []


def test_invalid_json_is_400(client: httpx.Client) -> None:
    response = client.post(RUNSETS, content=b"{name", headers={"content-type": "application/json"})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


def test_duplicate_name_is_409(client: httpx.Client) -> None:
    create(client, name="healthy")
    other = create(client, name="other")

    created = client.post(RUNSETS, json={"name": "healthy"})
    renamed = client.patch(f"{RUNSETS}/{other['id']}", json={"name": "healthy"})

    assert created.status_code == 409
    assert created.json()["error"]["code"] == "runset_name_taken"
    assert renamed.status_code == 409
    assert "already exists" in renamed.json()["error"]["message"]
    assert names(client) == ["healthy", "other"]


def test_bad_update_stores_nothing(client: httpx.Client) -> None:
    created = create(client, name="keep", filter="state = failed")

    response = client.patch(
        f"{RUNSETS}/{created['id']}", json={"name": "changed", "filter": "state = "}
    )

    assert response.status_code == 400
    assert client.get(RUNSETS).json()["runsets"] == [created]


def test_unknown_runset_is_404(client: httpx.Client) -> None:
    for response in (
        client.patch(f"{RUNSETS}/nope", json={"active": False}),
        client.delete(f"{RUNSETS}/nope"),
        client.post(f"{RUNSETS}/nope/clone"),
        client.post(f"{RUNSETS}/nope/freeze"),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "runset_not_found"


def test_unknown_project_is_404(client: httpx.Client) -> None:
    response = client.get("/api/v1/projects/missing/runsets")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "project_not_found"


def test_runsets_need_api_key(server: RunningServer, client: httpx.Client) -> None:
    response = httpx.get(server.url + RUNSETS)

    assert response.status_code == 401


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", RUNSETS, {"name": "bad", "filter": "config.lr >"}),
        ("POST", f"/api/v1/projects/{PROJECT}/runs/query", {"filter": "config.lr >"}),
    ],
)
def test_filter_error_names_column(
    client: httpx.Client, method: str, path: str, body: dict[str, Any]
) -> None:
    response = client.request(method, path, json=body)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_filter"
    assert response.json()["error"]["column"] == 12


def test_other_errors_have_no_column(client: httpx.Client) -> None:
    response = client.post(RUNSETS, json={"name": ""})

    assert response.status_code == 400
    assert "column" not in response.json()["error"]
