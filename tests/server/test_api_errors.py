"""Bad requests to the HTTP read API, and how its responses carry NaN and infinities."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgpack
import pytest

import assay
from conftest import RunningServer

PROJECT = "api"
RUN_ID = "special"
MSGPACK = "application/msgpack"
RUN_PATH = f"/api/v1/projects/{PROJECT}/runs/{RUN_ID}"
# Without credentials, /api/v1/projects lists the public projects, so it is not here.
PROTECTED_PATHS = [
    "/api/v1/whoami",
    f"/api/v1/projects/{PROJECT}/runs",
    RUN_PATH,
    RUN_PATH + "/metrics",
    RUN_PATH + "/history",
]


@pytest.fixture
def logged_run(server: RunningServer, tmp_path: Path) -> str:
    """Log a run whose history, statistics, config and summary contain NaN and infinities."""
    run = assay.init(
        PROJECT,
        id=RUN_ID,
        config={"eps": math.inf},
        server=server.url,
        api_key=server.api_key,
        spool_dir=tmp_path / "spool",
    )
    for step, value in enumerate([1.0, math.nan, math.inf, -math.inf, None]):
        run.log({"loss": value}, step=step)
    run.summary["best"] = math.nan
    run.finish()
    return run.id


@pytest.fixture
def client(server: RunningServer) -> Iterator[httpx.Client]:
    with server.client() as authorized:
        yield authorized


def reject_constant(token: str) -> float:
    raise AssertionError(f"the response contains the bare JSON token {token}")


def parse_strict_json(response: httpx.Response) -> object:
    """Parse ``response`` as JSON, failing on NaN and Infinity, which JSON does not have."""
    return json.loads(response.text, parse_constant=reject_constant)


def assert_json_error(response: httpx.Response, status: int, code: str) -> str:
    """Check the status and JSON error shape of ``response`` and return the error message."""
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"]["code"] == code
    return str(body["error"]["message"])


# API keys.


@pytest.mark.parametrize("path", PROTECTED_PATHS)
def test_missing_key_gets_401(server: RunningServer, path: str) -> None:
    response = httpx.get(server.url + path)

    message = assert_json_error(response, 401, "unauthorized")
    assert "missing API key" in message
    assert "Authorization: Bearer KEY" in message
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="assay"'


@pytest.mark.parametrize("path", [*PROTECTED_PATHS, "/api/v1/projects"])
def test_wrong_key_gets_401(server: RunningServer, path: str) -> None:
    with server.client(api_key="wrong") as wrong:
        response = wrong.get(path)

    message = assert_json_error(response, 401, "invalid_api_key")
    assert "invalid or revoked API key" in message
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="assay"'


def test_non_bearer_scheme_gets_401(server: RunningServer) -> None:
    response = httpx.get(server.url + "/api/v1/whoami", auth=("admin", server.api_key))

    message = assert_json_error(response, 401, "unauthorized")
    assert "Authorization: Bearer KEY" in message


# Unknown projects and runs.


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/projects/nowhere/runs",
        "/api/v1/projects/nowhere/runs/any",
        "/api/v1/projects/nowhere/runs/any/metrics",
        "/api/v1/projects/nowhere/runs/any/history",
    ],
)
def test_unknown_project_gets_404(client: httpx.Client, logged_run: str, path: str) -> None:
    message = assert_json_error(client.get(path), 404, "project_not_found")

    assert "project 'nowhere' does not exist" in message


@pytest.mark.parametrize("suffix", ["", "/metrics", "/history"])
def test_unknown_run_gets_404(client: httpx.Client, logged_run: str, suffix: str) -> None:
    response = client.get(f"/api/v1/projects/{PROJECT}/runs/ghost{suffix}")

    message = assert_json_error(response, 404, "run_not_found")
    assert f"run 'ghost' does not exist in project '{PROJECT}'" in message


def test_error_follows_accept_msgpack(client: httpx.Client, logged_run: str) -> None:
    response = client.get(f"/api/v1/projects/{PROJECT}/runs/ghost", headers={"Accept": MSGPACK})

    assert response.status_code == 404
    assert response.headers["content-type"] == MSGPACK
    assert msgpack.unpackb(response.content)["error"]["code"] == "run_not_found"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        pytest.param("GET", "/api/v1/nothing-here", 404, id="unknown-path"),
        pytest.param("POST", "/api/v1/projects", 405, id="wrong-method"),
    ],
)
def test_unmatched_route_gets_json_error(
    client: httpx.Client, method: str, path: str, status: int
) -> None:
    response = client.request(method, path)

    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert "code" in response.json()["error"]


# Query parameters.


@pytest.mark.parametrize(
    ("path", "fragments"),
    [
        pytest.param(
            RUN_PATH + "/history?samples=3",
            ["'samples'", "between 8 and 1000000", "got 3"],
            id="samples-3",
        ),
        pytest.param(
            RUN_PATH + "/history?samples=1000001",
            ["'samples'", "between 8 and 1000000", "got 1000001"],
            id="samples-over-max",
        ),
        pytest.param(
            RUN_PATH + "/history?samples=abc",
            ["'samples'", "integer", "'abc'", "between 8 and 1000000"],
            id="samples-abc",
        ),
        pytest.param(
            f"/api/v1/projects/{PROJECT}/runs?limit=0",
            ["'limit'", "between 1 and 10000", "got 0"],
            id="limit-0",
        ),
        pytest.param(
            f"/api/v1/projects/{PROJECT}/runs?limit=10001",
            ["'limit'", "between 1 and 10000", "got 10001"],
            id="limit-over-max",
        ),
        pytest.param(
            f"/api/v1/projects/{PROJECT}/runs?offset=-1",
            ["'offset'", "between 0 and", "got -1"],
            id="offset-negative",
        ),
        pytest.param(
            RUN_PATH + "/history?min_step=-1",
            ["'min_step'", "between 0 and", "got -1"],
            id="min-step-negative",
        ),
        pytest.param(
            RUN_PATH + "/history?max_step=-1",
            ["'max_step'", "between 0 and", "got -1"],
            id="max-step-negative",
        ),
        pytest.param(
            RUN_PATH + "/history?min_step=1.5",
            ["'min_step'", "integer", "'1.5'"],
            id="min-step-float",
        ),
    ],
)
def test_invalid_query_parameter_gets_400(
    client: httpx.Client, logged_run: str, path: str, fragments: list[str]
) -> None:
    message = assert_json_error(client.get(path), 400, "bad_request")

    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize(
    ("path", "name"),
    [
        pytest.param(RUN_PATH + f"/history?min_step={2**64}", "'min_step'", id="min-step"),
        pytest.param(RUN_PATH + f"/history?max_step={2**64}", "'max_step'", id="max-step"),
        pytest.param(f"/api/v1/projects/{PROJECT}/runs?offset={2**64}", "'offset'", id="offset"),
    ],
)
def test_parameter_over_64_bits_gets_400(
    client: httpx.Client, logged_run: str, path: str, name: str
) -> None:
    message = assert_json_error(client.get(path), 400, "bad_request")

    assert name in message


# NaN and infinities.


@pytest.mark.parametrize("suffix", ["", "/metrics", "/history"])
def test_json_has_no_bare_nonfinite_tokens(
    client: httpx.Client, logged_run: str, suffix: str
) -> None:
    response = client.get(RUN_PATH + suffix)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    parse_strict_json(response)


def test_json_history_tags_nonfinite_floats(client: httpx.Client, logged_run: str) -> None:
    body = parse_strict_json(client.get(RUN_PATH + "/history"))

    assert isinstance(body, dict)
    values = [row["loss"] for row in body["history"]]
    assert values == [
        1.0,
        {"$float": "NaN"},
        {"$float": "Infinity"},
        {"$float": "-Infinity"},
        None,
    ]


def test_json_run_and_statistics_tag_nonfinite_floats(
    client: httpx.Client, logged_run: str
) -> None:
    run = parse_strict_json(client.get(RUN_PATH))
    statistics = parse_strict_json(client.get(RUN_PATH + "/metrics"))

    assert isinstance(run, dict)
    assert run["config"] == {"eps": {"$float": "Infinity"}}
    assert run["summary"]["best"] == {"$float": "NaN"}
    assert isinstance(statistics, dict)
    loss = statistics["metrics"]["loss"]
    assert loss["min"] == {"$float": "-Infinity"}
    assert loss["max"] == {"$float": "Infinity"}
    assert loss["has_nan"] is True


def test_msgpack_carries_real_nonfinite_floats(client: httpx.Client, logged_run: str) -> None:
    response = client.get(RUN_PATH + "/history", headers={"Accept": MSGPACK})
    run = msgpack.unpackb(client.get(RUN_PATH, headers={"Accept": MSGPACK}).content)

    assert response.status_code == 200
    assert response.headers["content-type"] == MSGPACK
    values = [row["loss"] for row in msgpack.unpackb(response.content)["history"]]
    assert values[0] == 1.0
    assert math.isnan(values[1])
    assert values[2] == math.inf
    assert values[3] == -math.inf
    assert values[4] is None
    assert run["config"]["eps"] == math.inf
    assert math.isnan(run["summary"]["best"])
