"""Cross-site request forgery checks, security headers and sign-in rate limits."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from account_support import PASSWORD, add_user, browser, sign_in
from assay_server.ratelimit import LOGIN_FAILURES
from assay_server.security_headers import CONTENT_SECURITY_POLICY
from assay_server.settings import Settings
from conftest import RunningServer

WRITE = ("POST", "/api/v1/me/keys", {"name": "from a page"})


@pytest.fixture
def session_cookie(server: RunningServer) -> str:
    add_user(server, "alice")
    with browser(server) as client:
        assert sign_in(client, "alice").status_code == 200
        return client.cookies["assay_session"]


def cookie_request(
    server: RunningServer, cookie: str, headers: dict[str, str], method: str = "POST"
) -> httpx.Response:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        client.cookies.set("assay_session", cookie)
        return client.request(method, WRITE[1], json=WRITE[2], headers=headers)


def test_cookie_write_without_origin_rejected(server: RunningServer, session_cookie: str) -> None:
    response = cookie_request(server, session_cookie, {})

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "csrf_origin_missing"


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Referer": "http://evil.example/page"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1"},
    ],
)
def test_cross_site_cookie_write_rejected(
    server: RunningServer, session_cookie: str, headers: dict[str, str]
) -> None:
    response = cookie_request(server, session_cookie, headers)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "csrf_cross_origin"


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "same-origin"},
        {"Origin": "ORIGIN"},
        {"Referer": "ORIGIN/account"},
    ],
)
def test_same_origin_cookie_write_accepted(
    server: RunningServer, session_cookie: str, headers: dict[str, str]
) -> None:
    headers = {name: value.replace("ORIGIN", server.url) for name, value in headers.items()}
    response = cookie_request(server, session_cookie, headers)

    assert response.status_code == 201


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_every_write_method_checked(
    server: RunningServer, session_cookie: str, method: str
) -> None:
    response = cookie_request(server, session_cookie, {}, method)

    assert response.status_code == 403


def test_cookie_read_needs_no_origin(server: RunningServer, session_cookie: str) -> None:
    with httpx.Client(base_url=server.url) as client:
        client.cookies.set("assay_session", session_cookie)
        response = client.get("/api/v1/me/keys")

    assert response.status_code == 200


def test_bearer_write_exempt(server: RunningServer, session_cookie: str) -> None:
    with server.client() as client:
        client.cookies.set("assay_session", session_cookie)
        response = client.post(WRITE[1], json=WRITE[2], headers={"Origin": "http://evil.example"})

    assert response.status_code == 201


def test_cross_site_sign_in_rejected(server: RunningServer) -> None:
    add_user(server, "alice")
    with httpx.Client(base_url=server.url) as client:
        foreign = client.post(
            "/api/v1/session",
            json={"name": "alice", "password": PASSWORD},
            headers={"Origin": "http://evil.example"},
        )
        program = client.post("/api/v1/session", json={"name": "alice", "password": PASSWORD})

    assert foreign.status_code == 403
    assert "set-cookie" not in foreign.headers
    assert program.status_code == 200


def test_cross_site_socket_refused(server: RunningServer, session_cookie: str) -> None:
    url = server.url.replace("http://", "ws://") + "/api/v1/projects/demo/live"
    headers = {"Cookie": f"assay_session={session_cookie}"}

    with pytest.raises(InvalidStatus) as refused:
        connect(url, origin="http://evil.example", additional_headers=headers)  # type: ignore[arg-type]

    assert refused.value.response.status_code == 403


def test_html_carries_security_policy(server: RunningServer) -> None:
    with server.client() as client:
        page = client.get("/")
        api = client.get("/api/v1/whoami")

    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    assert page.headers["x-frame-options"] == "DENY"
    for response in (page, api):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
    assert "content-security-policy" not in api.headers


def failed_sign_ins(server: RunningServer, names: list[str]) -> list[httpx.Response]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        return [sign_in(client, name, "wrong password!") for name in names]


def test_sign_in_limited_per_name(server: RunningServer) -> None:
    add_user(server, "alice")
    failures = failed_sign_ins(server, ["alice"] * LOGIN_FAILURES)
    with httpx.Client(base_url=server.url) as client:
        blocked = sign_in(client, "ALICE")
        correct = sign_in(client, "alice")

    assert [response.status_code for response in failures] == [401] * LOGIN_FAILURES
    assert blocked.status_code == 429
    assert blocked.json()["error"]["code"] == "too_many_requests"
    assert "failed sign-ins for this name" in blocked.json()["error"]["message"]
    assert 1 <= int(blocked.headers["retry-after"]) <= 60
    assert correct.status_code == 429


def test_sign_in_limited_per_address(server: RunningServer) -> None:
    names = [f"user{number}" for number in range(LOGIN_FAILURES)]
    failures = failed_sign_ins(server, names)
    with httpx.Client(base_url=server.url) as client:
        blocked = sign_in(client, "someone-else")

    assert [response.status_code for response in failures] == [401] * LOGIN_FAILURES
    assert blocked.status_code == 429
    assert "from this address" in blocked.json()["error"]["message"]


def test_successful_sign_ins_not_counted(server: RunningServer) -> None:
    add_user(server, "alice")
    with browser(server) as client:
        responses = [sign_in(client, "alice") for _ in range(LOGIN_FAILURES + 2)]

    assert [response.status_code for response in responses] == [200] * (LOGIN_FAILURES + 2)


def test_password_change_guesses_limited(server: RunningServer) -> None:
    add_user(server, "alice")
    with browser(server) as client:
        sign_in(client, "alice")
        guesses = [
            client.post("/api/v1/me/password", json={"current": f"guess {n}", "new": PASSWORD})
            for n in range(LOGIN_FAILURES + 1)
        ]

    assert [response.status_code for response in guesses[:-1]] == [401] * LOGIN_FAILURES
    assert guesses[-1].status_code == 429


@pytest.fixture
def two_instances(
    postgres_settings: Settings, start_server: Any
) -> Iterator[tuple[RunningServer, RunningServer]]:
    first = start_server(postgres_settings)
    second = start_server(dataclasses.replace(postgres_settings, port=0))
    yield first, second


def test_limit_shared_across_instances(two_instances: tuple[RunningServer, RunningServer]) -> None:
    first, second = two_instances
    add_user(first, "alice")
    half = LOGIN_FAILURES // 2
    failed_sign_ins(first, ["alice"] * half)
    failed_sign_ins(second, ["alice"] * (LOGIN_FAILURES - half))
    with httpx.Client(base_url=first.url) as client:
        blocked = sign_in(client, "alice")

    assert blocked.status_code == 429


def test_limit_not_shared_between_prefixes(postgres_settings: Settings, start_server: Any) -> None:
    first = start_server(postgres_settings)
    other_prefix = postgres_settings.redis_prefix + secrets.token_hex(3) + ":"
    second = start_server(dataclasses.replace(postgres_settings, redis_prefix=other_prefix))
    add_user(first, "alice")
    failed_sign_ins(first, ["alice"] * LOGIN_FAILURES)
    with httpx.Client(base_url=second.url) as client:
        response = sign_in(client, "alice")

    assert response.status_code == 200


def test_malformed_cookie_header_still_checked(server: RunningServer, session_cookie: str) -> None:
    # Python's SimpleCookie stops at the malformed pair; Starlette reads on.
    header = f'bad"cookie; assay_session={session_cookie}'
    with httpx.Client(base_url=server.url) as client:
        response = client.post(WRITE[1], json=WRITE[2], headers={"Cookie": header})

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "csrf_origin_missing"
