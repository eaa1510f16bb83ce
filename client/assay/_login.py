"""``assay login`` with a name and password: sign in, create an API key, sign out.

The password is sent once, to ``POST /api/v1/session``. The API key made
with that session is what the SDK stores and uses from then on, so the
password is never written to disk.
"""

from __future__ import annotations

import socket
from typing import Any

import httpx

from assay._credentials import Credentials
from assay._errors import ConnectionFailedError, server_error


def key_name() -> str:
    """Name the key after this machine, so the account page shows where it is used."""
    return f"assay login on {socket.gethostname()}"[:128]


def login_with_password(
    server: str, name: str, password: str, timeout: float = 30.0
) -> Credentials:
    """Create an API key for ``name`` on ``server``; return the credentials to store.

    Raises ``AuthenticationError`` for a wrong name or password,
    ``ServerError`` for other rejections (``too_many_requests`` after too many
    failures) and ``ConnectionFailedError`` when the server cannot be reached.
    """
    # The session cookie authenticates the key request, so it carries the
    # server's own Origin, as the server's web pages do.
    headers = {"Origin": server}
    try:
        with httpx.Client(base_url=server, headers=headers, timeout=timeout) as client:
            _check(client.post("/api/v1/session", json={"name": name, "password": password}))
            try:
                created = _check(client.post("/api/v1/me/keys", json={"name": key_name()}))
            finally:
                client.delete("/api/v1/session")
    except httpx.HTTPError as exc:
        raise ConnectionFailedError(f"cannot reach {server}: {exc}") from None
    return Credentials(server, created["key"])


def _check(response: httpx.Response) -> Any:
    if response.is_success:
        return response.json()
    try:
        error = response.json()["error"]
        message, code = error["message"], error["code"]
    except (ValueError, KeyError, TypeError):
        message, code = f"HTTP {response.status_code}", "http_error"
    raise server_error(message, code, response.status_code)
