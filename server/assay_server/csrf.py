"""Cross-site request forgery protection for requests that a session cookie authenticates.

A browser attaches the session cookie to requests that other sites make it
send (form posts, ``fetch`` with credentials, websockets). So a write
(POST, PUT, PATCH or DELETE) that carries the session cookie and no
``Authorization: Bearer`` key must show that it comes from one of our own
pages:

1. ``Sec-Fetch-Site``, which browsers set and pages cannot forge, must be
   ``same-origin`` (or ``none``, a request the user started);
2. without it, the ``Origin`` header, and without that the ``Referer``, must
   name this server's host (the ``Host`` header). Ports are not compared,
   because browsers send cookies to every port of a host anyway.

A write with none of the three is rejected too. Requests with a Bearer key
are exempt: other sites cannot make a browser send one. Sign-in
(``POST /api/v1/session``) is rejected when it carries evidence of another
site, so no site can sign a visitor in to the attacker's account. Sign-in
with an API key (``POST /login``, the form of the ``/login?token=`` page)
is accepted only from this server's pages, even without a cookie, because
only that page sends it. A
websocket handshake that carries the cookie and an ``Origin`` of another
host is refused before it is accepted.
"""

from __future__ import annotations

import json
import logging
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import cookie_parser

from assay_server.sessions import COOKIE

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SIGN_IN_PATH = "/api/v1/session"
KEY_SIGN_IN_PATH = "/login"
SAME = "same"
FOREIGN = "foreign"
UNKNOWN = "unknown"


def headers_of(scope: MutableMapping[str, Any]) -> dict[str, str]:
    """Return the request's headers by lower-case name, keeping a repeated header's first value."""
    found: dict[str, str] = {}
    for key, value in scope.get("headers", []):
        found.setdefault(key.decode("latin-1").lower(), value.decode("latin-1"))
    return found


def has_session_cookie(headers: dict[str, str]) -> bool:
    # Starlette's own parser, so this check finds the cookie exactly when
    # ``request.cookies`` does, malformed neighbours included.
    return bool(cookie_parser(headers.get("cookie", "")).get(COOKIE))


def has_bearer_key(headers: dict[str, str]) -> bool:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())


def host_name(netloc_or_url: str, is_url: bool) -> str | None:
    try:
        parts = urlsplit(netloc_or_url if is_url else "//" + netloc_or_url)
        return parts.hostname
    except ValueError:
        return None


def request_origin(headers: dict[str, str]) -> str:
    """Tell whether the request comes from a page of this server: SAME, FOREIGN or UNKNOWN."""
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None:
        return SAME if fetch_site in ("same-origin", "none") else FOREIGN
    own_host = host_name(headers.get("host", ""), is_url=False)
    for name in ("origin", "referer"):
        value = headers.get(name)
        if not value:
            continue
        if value == "null":
            return FOREIGN
        their_host = host_name(value, is_url=True)
        if their_host is None or own_host is None:
            return FOREIGN
        return SAME if their_host == own_host else FOREIGN
    return UNKNOWN


class CsrfMiddleware:
    """ASGI middleware that rejects cross-site writes authenticated by the session cookie."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            problem = self.check_write(scope)
            if problem is not None:
                await reject(send, *problem)
                return
        elif scope["type"] == "websocket" and self.is_foreign_socket(scope):
            log.warning("rejected a cross-site websocket handshake to %s", scope.get("path"))
            await send({"type": "websocket.close", "code": 1008})
            return
        await self.app(scope, receive, send)

    def check_write(self, scope: MutableMapping[str, Any]) -> tuple[str, str] | None:
        """Return an error code and message for a forged write, or None to let it through."""
        headers = headers_of(scope)
        if has_bearer_key(headers):
            return None
        origin = request_origin(headers)
        if scope["path"] == KEY_SIGN_IN_PATH and origin != SAME:
            return (
                "csrf_cross_origin" if origin == FOREIGN else "csrf_origin_missing",
                "sign-in with an API key is accepted only from the confirmation page of "
                "/login?token=KEY on this server",
            )
        if not has_session_cookie(headers):
            if scope["path"] == SIGN_IN_PATH and origin == FOREIGN:
                return "csrf_cross_origin", "sign-in from another site is not allowed"
            return None
        if origin == SAME:
            return None
        if origin == FOREIGN:
            return (
                "csrf_cross_origin",
                "cross-site request rejected: it comes from a page of another origin",
            )
        return (
            "csrf_origin_missing",
            "a write authenticated by the session cookie needs an Origin or Referer header "
            "of this server; programs should send 'Authorization: Bearer KEY' instead",
        )

    def is_foreign_socket(self, scope: MutableMapping[str, Any]) -> bool:
        headers = headers_of(scope)
        if not has_session_cookie(headers) or has_bearer_key(headers):
            return False
        return request_origin(headers) == FOREIGN


async def reject(send: Any, code: str, message: str) -> None:
    log.warning("rejected a write: %s", message)
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
