"""Accounts over HTTP: sign-in, users, password changes and per-user API keys."""

from __future__ import annotations

import concurrent.futures
import secrets
import threading
from collections.abc import Iterator
from typing import Any, Literal

import httpx
import pytest
from argon2 import PasswordHasher
from sqlalchemy import select, update

from account_support import PASSWORD, add_user, browser, sign_in
from assay_server import accounts, schema
from assay_server.database import Database
from conftest import RunningServer, run_in_thread


def read_hash(server: RunningServer, name: str) -> str | None:
    async def read() -> str | None:
        db = Database(server.settings.resolved_database_url)
        try:
            async with db.reading() as connection:
                return await connection.scalar(
                    select(schema.users.c.password_hash).where(schema.users.c.name == name)
                )
        finally:
            await db.close()

    return run_in_thread(read())


def write_hash(server: RunningServer, name: str, password_hash: str) -> None:
    async def write() -> None:
        db = Database(server.settings.resolved_database_url)
        try:
            async with db.transaction() as connection:
                await connection.execute(
                    update(schema.users)
                    .where(schema.users.c.name == name)
                    .values(password_hash=password_hash)
                )
        finally:
            await db.close()

    run_in_thread(write())


@pytest.fixture
def alice(server: RunningServer) -> Iterator[httpx.Client]:
    """A signed-in browser of the user ``alice``."""
    add_user(server, "alice")
    with browser(server) as client:
        assert sign_in(client, "alice").status_code == 200
        yield client


def test_sign_in_sets_session_cookie(server: RunningServer) -> None:
    add_user(server, "alice")
    with browser(server) as client:
        response = sign_in(client, "alice")
        whoami = client.get("/api/v1/whoami")

    cookie = response.headers["set-cookie"].lower()
    assert response.status_code == 200
    assert response.json() == {"name": "alice", "is_admin": False}
    assert cookie.startswith("assay_session=")
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "secure" not in cookie
    assert whoami.json() == {"name": "alice", "is_admin": False}


def test_cookie_is_secure_over_https(server: RunningServer) -> None:
    add_user(server, "alice")
    # uvicorn trusts X-Forwarded-Proto from 127.0.0.1, as from a TLS proxy there.
    with browser(server, **{"X-Forwarded-Proto": "https"}) as client:
        response = sign_in(client, "alice")

    assert response.status_code == 200
    assert "; secure" in response.headers["set-cookie"].lower()


def test_wrong_password_rejected(server: RunningServer) -> None:
    add_user(server, "alice")
    with browser(server) as client:
        response = sign_in(client, "alice", "wrong password!")
        whoami = client.get("/api/v1/whoami")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_credentials"
    assert "set-cookie" not in response.headers
    assert whoami.status_code == 401


def test_unknown_user_rejected_alike(server: RunningServer) -> None:
    add_user(server, "alice")
    with browser(server) as client:
        unknown = sign_in(client, "nobody")
        wrong = sign_in(client, "alice", "wrong password!")

    assert unknown.status_code == 401
    assert unknown.json() == wrong.json()


def test_account_without_password_cannot_sign_in(server: RunningServer) -> None:
    with browser(server) as client:
        response = sign_in(client, "admin", "")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_credentials"


@pytest.mark.parametrize(
    "body",
    [
        {"name": "alice"},
        {"name": 3, "password": PASSWORD},
        {"name": "alice", "password": None},
        ["alice", PASSWORD],
    ],
)
def test_malformed_sign_in_rejected(server: RunningServer, body: Any) -> None:
    with browser(server) as client:
        response = client.post("/api/v1/session", json=body)

    assert response.status_code == 400
    assert response.json()["error"]["code"] in ("invalid_field", "invalid_json")


def test_overlong_sign_in_password_rejected(server: RunningServer) -> None:
    add_user(server, "alice")
    with browser(server) as client:
        response = sign_in(client, "alice", "x" * 1025)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "password_too_long"


def test_sign_out_ends_session(alice: httpx.Client) -> None:
    response = alice.delete("/api/v1/session")
    whoami = alice.get("/api/v1/whoami")

    assert response.status_code == 200
    assert 'assay_session=""' in response.headers["set-cookie"]
    assert whoami.status_code == 401


def test_signed_out_cookie_rejected(server: RunningServer, alice: httpx.Client) -> None:
    token = alice.cookies["assay_session"]
    alice.delete("/api/v1/session")

    with browser(server) as replay:
        replay.cookies.set("assay_session", token)
        whoami = replay.get("/api/v1/whoami")

    assert whoami.status_code == 401


def test_admin_creates_and_lists_users(server: RunningServer) -> None:
    created = add_user(server, "bob@example.org", is_admin=True)
    with server.client() as admin:
        listed = admin.get("/api/v1/users").json()["users"]

    assert created["name"] == "bob@example.org"
    assert created["is_admin"] is True
    assert created["has_password"] is True
    assert [user["name"] for user in listed] == ["admin", "bob@example.org"]
    assert listed[0]["has_password"] is False
    assert all("password_hash" not in user for user in listed)


def test_non_admin_cannot_manage_users(server: RunningServer, alice: httpx.Client) -> None:
    listed = alice.get("/api/v1/users")
    created = alice.post("/api/v1/users", json={"name": "mallory", "password": PASSWORD})

    assert listed.status_code == 403
    assert listed.json()["error"]["code"] == "admin_required"
    assert created.status_code == 403


def test_user_routes_need_authentication(server: RunningServer) -> None:
    with httpx.Client(base_url=server.url) as anonymous:
        responses = [
            anonymous.get("/api/v1/users"),
            anonymous.post("/api/v1/users", json={"name": "x", "password": PASSWORD}),
            anonymous.get("/api/v1/me/keys"),
            anonymous.post("/api/v1/me/keys", json={"name": "x"}),
            anonymous.delete("/api/v1/me/keys/1"),
            anonymous.post("/api/v1/me/password", json={"current": PASSWORD, "new": PASSWORD}),
        ]

    assert [response.status_code for response in responses] == [401] * 6


@pytest.mark.parametrize(
    ("password", "code", "rule"),
    [
        ("x" * 9, "password_too_short", "at least 10 characters"),
        ("x" * 1025, "password_too_long", "at most 1,024 characters"),
        (None, "invalid_password", "must be a string"),
        (1234567890, "invalid_password", "must be a string"),
    ],
)
def test_password_rules_named(server: RunningServer, password: Any, code: str, rule: str) -> None:
    with server.client() as admin:
        response = admin.post("/api/v1/users", json={"name": "carol", "password": password})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert rule in response.json()["error"]["message"]


@pytest.mark.parametrize("length", [10, 1024])
def test_password_at_limits_accepted(server: RunningServer, length: int) -> None:
    password = secrets.token_hex(length)[:length]
    add_user(server, "carol", password)
    with browser(server) as client:
        response = sign_in(client, "carol", password)

    assert response.status_code == 200


@pytest.mark.parametrize("name", ["", " carol", "carol/x", "c" * 129, None])
def test_invalid_user_name_rejected(server: RunningServer, name: Any) -> None:
    with server.client() as admin:
        response = admin.post("/api/v1/users", json={"name": name, "password": PASSWORD})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_user_name"


def test_duplicate_user_conflicts(server: RunningServer) -> None:
    add_user(server, "alice")
    with server.client() as admin:
        response = admin.post("/api/v1/users", json={"name": "alice", "password": PASSWORD})

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "user_exists"


def test_password_change_ends_other_sessions(server: RunningServer, alice: httpx.Client) -> None:
    new_password = "a new and longer password"
    with browser(server) as other:
        assert sign_in(other, "alice").status_code == 200
        changed = alice.post(
            "/api/v1/me/password", json={"current": PASSWORD, "new": new_password}
        )
        other_whoami = other.get("/api/v1/whoami")
        old = sign_in(other, "alice")
        new = sign_in(other, "alice", new_password)
    own_whoami = alice.get("/api/v1/whoami")

    assert changed.status_code == 200
    assert other_whoami.status_code == 401
    assert own_whoami.status_code == 200
    assert old.status_code == 401
    assert new.status_code == 200


def test_password_change_with_wrong_current(alice: httpx.Client) -> None:
    response = alice.post(
        "/api/v1/me/password", json={"current": "not my password", "new": "whatever long one"}
    )

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_credentials"


def test_password_change_checks_rules(alice: httpx.Client) -> None:
    response = alice.post("/api/v1/me/password", json={"current": PASSWORD, "new": "short"})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "password_too_short"


def test_first_password_needs_no_current(server: RunningServer) -> None:
    with server.client() as admin:
        wrong = admin.post(
            "/api/v1/me/password", json={"current": "something", "new": "the admin's password"}
        )
        first = admin.post(
            "/api/v1/me/password", json={"current": None, "new": "the admin's password"}
        )
    with browser(server) as client:
        signed_in = sign_in(client, "admin", "the admin's password")

    assert wrong.status_code == 400
    assert first.status_code == 200
    assert signed_in.status_code == 200


def test_sign_in_rehashes_old_parameters(server: RunningServer) -> None:
    add_user(server, "alice")
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    write_hash(server, "alice", weak)

    with browser(server) as client:
        response = sign_in(client, "alice")
    stored = read_hash(server, "alice")

    assert response.status_code == 200
    assert stored is not None
    assert stored != weak
    assert not accounts.hasher.check_needs_rehash(stored)
    assert stored.startswith("$argon2id$")


def test_key_shown_once_and_listed(alice: httpx.Client) -> None:
    created = alice.post("/api/v1/me/keys", json={"name": "laptop"})
    listed = alice.get("/api/v1/me/keys").json()["keys"]

    body = created.json()
    assert created.status_code == 201
    assert body["key"].startswith("assay_")
    assert body["prefix"] == body["key"][:10]
    assert listed == [
        {
            "id": body["id"],
            "name": "laptop",
            "prefix": body["prefix"],
            "created_at": body["created_at"],
            "revoked_at": None,
        }
    ]
    assert body["key"] not in alice.get("/api/v1/me/keys").text


def test_new_key_authenticates_its_user(server: RunningServer, alice: httpx.Client) -> None:
    key = alice.post("/api/v1/me/keys", json={"name": "job"}).json()["key"]

    with server.client(key) as job:
        whoami = job.get("/api/v1/whoami")

    assert whoami.json() == {"name": "alice", "is_admin": False}


def test_revoked_key_rejected(server: RunningServer, alice: httpx.Client) -> None:
    created = alice.post("/api/v1/me/keys", json={"name": "job"}).json()
    revoked = alice.delete(f"/api/v1/me/keys/{created['id']}")
    again = alice.delete(f"/api/v1/me/keys/{created['id']}")

    with server.client(created["key"]) as job:
        whoami = job.get("/api/v1/whoami")

    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    assert again.json()["revoked_at"] == revoked.json()["revoked_at"]
    assert whoami.status_code == 401
    assert whoami.json()["error"]["code"] == "invalid_api_key"


def test_other_users_key_not_found(server: RunningServer, alice: httpx.Client) -> None:
    created = alice.post("/api/v1/me/keys", json={"name": "job"}).json()

    with server.client() as admin:
        response = admin.delete(f"/api/v1/me/keys/{created['id']}")
        listed = admin.get("/api/v1/me/keys").json()["keys"]

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "key_not_found"
    assert [key["name"] for key in listed] == ["bootstrap"]


@pytest.mark.parametrize("key_id", ["9223372036854775808", "999999999999999999999"])
def test_key_id_past_64_bits_not_found(alice: httpx.Client, key_id: str) -> None:
    response = alice.delete(f"/api/v1/me/keys/{key_id}")
    after = alice.get("/api/v1/me/keys")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "key_not_found"
    assert key_id in response.json()["error"]["message"]
    assert after.status_code == 200


@pytest.mark.parametrize("name", ["", "   ", "k" * 129, 7, None])
def test_invalid_key_name_rejected(alice: httpx.Client, name: Any) -> None:
    response = alice.post("/api/v1/me/keys", json={"name": name})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_key_name"


def test_key_routes_accept_bearer_key(server: RunningServer) -> None:
    with server.client() as admin:
        created = admin.post("/api/v1/me/keys", json={"name": "ci"})
        revoked = admin.delete(f"/api/v1/me/keys/{created.json()['id']}")

    assert created.status_code == 201
    assert revoked.status_code == 200


def test_oversized_sign_in_body_rejected(server: RunningServer) -> None:
    with browser(server) as client:
        response = client.post(
            "/api/v1/session", json={"name": "alice", "password": PASSWORD, "pad": "x" * 20_000}
        )

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_concurrent_sign_ins_succeed(server: RunningServer) -> None:
    add_user(server, "alice")

    def sign_in_once() -> int:
        with browser(server) as client:
            return sign_in(client, "alice").status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: sign_in_once(), range(8)))

    assert statuses == [200] * 8


class RecordingHasher(PasswordHasher):
    """argon2-cffi's hasher, noting the thread of every hash and verification."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[str] = []

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        self.threads.append(threading.current_thread().name)
        return super().hash(password, salt=salt)

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        self.threads.append(threading.current_thread().name)
        return super().verify(hash, password)


async def test_hashing_runs_off_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = RecordingHasher()
    monkeypatch.setattr(accounts, "hasher", recorder)
    monkeypatch.setattr(accounts, "_dummy_hash", None)

    stored = await accounts.hash_password(PASSWORD)
    right = await accounts.verify_password(stored, PASSWORD)
    wrong = await accounts.verify_password(stored, "not the password")
    unknown = await accounts.verify_password(None, PASSWORD)

    assert right is True
    assert wrong is False
    assert unknown is False
    # hash, two verifications, then the throwaway hash and its verification
    assert len(recorder.threads) == 5
    assert all(name.startswith("assay-password") for name in recorder.threads)
