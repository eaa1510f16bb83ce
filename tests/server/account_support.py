"""Helpers for the account tests: users made through the API and browser-like clients."""

from __future__ import annotations

from typing import Any

import httpx

from conftest import RunningServer

PASSWORD = "correct horse battery"


def browser(server: RunningServer, **headers: str) -> httpx.Client:
    """A client that behaves like one of the server's own pages: cookies and its Origin."""
    return httpx.Client(base_url=server.url, headers={"Origin": server.url, **headers}, timeout=30)


def add_user(
    server: RunningServer, name: str, password: str = PASSWORD, is_admin: bool = False
) -> dict[str, Any]:
    with server.client() as admin:
        response = admin.post(
            "/api/v1/users", json={"name": name, "password": password, "is_admin": is_admin}
        )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def sign_in(client: httpx.Client, name: str, password: str = PASSWORD) -> httpx.Response:
    return client.post("/api/v1/session", json={"name": name, "password": password})
