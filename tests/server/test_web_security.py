"""Cross-site request forgery checks, security headers and sign-in rate limits."""

from __future__ import annotations

import asyncio
import dataclasses
import re
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
from conftest import RunningServer, run_in_thread, sign_in_with_key

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


def test_concurrent_sign_ins_stay_within_limit(server: RunningServer) -> None:
    add_user(server, "alice")

    async def guess_together() -> list[int]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            responses = await asyncio.gather(
                *(
                    client.post(
                        "/api/v1/session", json={"name": "alice", "password": "wrong password!"}
                    )
                    for _ in range(LOGIN_FAILURES + 10)
                )
            )
        return [response.status_code for response in responses]

    statuses = run_in_thread(guess_together())

    # All pass the check before the password; the failures' count decides
    # which may tell their outcome, however many arrive together.
    assert sorted(statuses) == [401] * LOGIN_FAILURES + [429] * 10


def test_correct_sign_ins_sent_together_not_limited(server: RunningServer) -> None:
    add_user(server, "alice")

    async def sign_in_together() -> list[int]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            responses = await asyncio.gather(
                *(
                    client.post("/api/v1/session", json={"name": "alice", "password": PASSWORD})
                    for _ in range(LOGIN_FAILURES + 10)
                )
            )
        return [response.status_code for response in responses]

    assert run_in_thread(sign_in_together()) == [200] * (LOGIN_FAILURES + 10)


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


def alice_key(server: RunningServer) -> str:
    """Create the user alice and an API key of hers; return the key."""
    add_user(server, "alice")
    with browser(server) as client:
        assert sign_in(client, "alice").status_code == 200
        created = client.post("/api/v1/me/keys", json={"name": "link"})
    assert created.status_code == 201, created.text
    return created.json()["key"]  # type: ignore[no-any-return]


def test_login_link_asks_to_confirm(server: RunningServer) -> None:
    key = alice_key(server)
    with httpx.Client(base_url=server.url) as client:
        page = client.get("/login", params={"token": key, "next": "/projects/x"})
        whoami = client.get("/api/v1/whoami")
        stylesheet = re.search(r'<link rel="stylesheet" href="([^"]+)">', page.text)
        styles = client.get(stylesheet.group(1)) if stylesheet else None

    assert page.status_code == 200
    # The page uses the app's stylesheet, which the policy's style-src allows.
    assert styles is not None
    assert styles.status_code == 200
    assert styles.headers["content-type"].startswith("text/css")
    assert page.headers["content-type"].startswith("text/html")
    assert "set-cookie" not in page.headers
    assert "Sign in to assay as alice?" in page.text
    assert '<form method="post" action="/login">' in page.text
    assert 'name="next" value="/projects/x"' in page.text
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert page.headers.get_list("referrer-policy") == ["same-origin"]
    assert page.headers["cache-control"] == "no-store"
    assert "<script" not in page.text
    assert whoami.status_code == 401


def test_login_link_names_signed_in_user(server: RunningServer, session_cookie: str) -> None:
    with httpx.Client(base_url=server.url) as client:
        client.cookies.set("assay_session", session_cookie)
        page = client.get("/login", params={"token": server.api_key})
        whoami = client.get("/api/v1/whoami")

    assert "Sign in to assay as admin?" in page.text
    assert "This browser is signed in as <strong>alice</strong>" in page.text
    assert whoami.json()["name"] == "alice"


def test_login_link_of_same_user_redirects(server: RunningServer) -> None:
    with httpx.Client(base_url=server.url) as client:
        assert sign_in_with_key(client, server.api_key).status_code == 303
        again = client.get("/login", params={"token": server.api_key, "next": "/account"})

    assert again.status_code == 303
    assert again.headers["location"] == "/account"


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({"Sec-Fetch-Site": "cross-site"}, "csrf_cross_origin"),
        ({"Sec-Fetch-Site": "same-site"}, "csrf_cross_origin"),
        ({"Origin": "http://evil.example"}, "csrf_cross_origin"),
        ({"Origin": "null"}, "csrf_cross_origin"),
        ({}, "csrf_origin_missing"),
    ],
)
def test_foreign_key_sign_in_rejected(
    server: RunningServer, session_cookie: str, headers: dict[str, str], code: str
) -> None:
    """Another site cannot post the confirmation form to sign a visitor in to its account."""
    with httpx.Client(base_url=server.url) as client:
        client.cookies.set("assay_session", session_cookie)
        response = client.post("/login", data={"token": server.api_key}, headers=headers)
        whoami = client.get("/api/v1/whoami")
    with httpx.Client(base_url=server.url) as anonymous:
        without_cookie = anonymous.post("/login", data={"token": server.api_key}, headers=headers)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == code
    assert "set-cookie" not in response.headers
    assert whoami.json()["name"] == "alice"
    assert without_cookie.status_code == 403
    assert without_cookie.json()["error"]["code"] == code
    assert "set-cookie" not in without_cookie.headers


def test_key_sign_in_replaces_session(server: RunningServer, session_cookie: str) -> None:
    with httpx.Client(base_url=server.url) as client:
        client.cookies.set("assay_session", session_cookie)
        response = sign_in_with_key(client, server.api_key, "//elsewhere.example/")
        whoami = client.get("/api/v1/whoami")
    with httpx.Client(base_url=server.url) as old:
        old.cookies.set("assay_session", session_cookie)
        old_whoami = old.get("/api/v1/whoami")

    assert response.status_code == 303
    assert response.headers["location"] == "/"
    assert "httponly" in response.headers["set-cookie"].lower()
    assert whoami.json()["name"] == "admin"
    assert old_whoami.status_code == 401


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        ("token=wrong", "application/x-www-form-urlencoded", 401, "invalid_api_key"),
        ("next=/", "application/x-www-form-urlencoded", 401, "invalid_api_key"),
        ('{"token": "KEY"}', "application/json", 400, "invalid_form"),
        ("token=KEY&pad=" + "x" * 9000, "application/x-www-form-urlencoded", 400, "invalid_form"),
        (
            "&".join(f"f{i}=1" for i in range(20)),
            "application/x-www-form-urlencoded",
            400,
            "invalid_form",
        ),
        (b"token=\xff", "application/x-www-form-urlencoded", 400, "invalid_form"),
    ],
)
def test_bad_key_sign_in_rejected(
    server: RunningServer, body: str | bytes, content_type: str, status: int, code: str
) -> None:
    content = body.replace("KEY", server.api_key) if isinstance(body, str) else body
    with httpx.Client(base_url=server.url) as client:
        response = client.post(
            "/login",
            content=content,
            headers={"Content-Type": content_type, "Sec-Fetch-Site": "same-origin"},
        )

    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert "set-cookie" not in response.headers
