"""``assay login`` with a name and password: sign in, create an API key, sign out.

The password is sent once, to ``POST /api/v1/session``. The API key made
with that session is what the SDK stores and uses from then on, so the
password is never written to disk. The key that the new one replaces in the
credentials file is revoked in the same session, so logging in again does not
leave unused keys behind.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

import httpx

from assay._credentials import Credentials
from assay._errors import ConnectionFailedError, server_error


def key_name() -> str:
    """Name the key after this machine, so the account page shows where it is used."""
    return f"assay login on {socket.gethostname()}"[:128]


@dataclass(frozen=True)
class Login:
    """The credentials to store, and the prefix of the replaced key that was revoked, if any."""

    credentials: Credentials
    revoked_prefix: str | None


def login_with_password(
    server: str, name: str, password: str, timeout: float = 30.0, replaces: str | None = None
) -> Login:
    """Create an API key for ``name`` on ``server``; return the credentials to store.

    ``replaces`` is the API key stored so far for this server. It is revoked
    when it belongs to the same user and the user's key list shows exactly one
    live key with its prefix.

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
                revoked = None
                if replaces is not None and replaces != created["key"]:
                    revoked = _revoke_replaced(client, name, replaces, timeout)
            finally:
                client.delete("/api/v1/session")
    except httpx.HTTPError as exc:
        raise ConnectionFailedError(f"cannot reach {server}: {exc}") from None
    return Login(Credentials(server, created["key"]), revoked)


def _revoke_replaced(client: httpx.Client, name: str, key: str, timeout: float) -> str | None:
    """Revoke ``key`` through the signed-in ``client``; return its prefix, or None if kept."""
    # The key list has prefixes only, so whoami with the key checks its owner first.
    owner = httpx.get(
        client.base_url.join("/api/v1/whoami"),
        headers={"Authorization": f"Bearer {key}"},
        timeout=timeout,
    )
    if not owner.is_success or owner.json().get("name") != name:
        return None
    keys = _check(client.get("/api/v1/me/keys"))["keys"]
    prefix = key[: len(keys[0]["prefix"])] if keys else key
    matching = [
        record for record in keys if record["prefix"] == prefix and record["revoked_at"] is None
    ]
    if len(matching) != 1:
        return None
    _check(client.delete(f"/api/v1/me/keys/{matching[0]['id']}"))
    return prefix


def _check(response: httpx.Response) -> Any:
    if response.is_success:
        return response.json()
    try:
        error = response.json()["error"]
        message, code = error["message"], error["code"]
    except (ValueError, KeyError, TypeError):
        message, code = f"HTTP {response.status_code}", "http_error"
    raise server_error(message, code, response.status_code)
